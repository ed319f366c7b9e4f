# Multi-stage build: compile in the official Rust image (librdkafka from the crate's bundled
# sources, linked against Debian's OpenSSL and libcurl), run in a small Debian image as a
# non-root user given by number (so that Kubernetes' runAsNonRoot can verify it).
FROM rust:1.95-bookworm AS build
# pkg-config finds OpenSSL and libcurl; librdkafka's own configure and make need nothing more
# than the image has. (Cyrus SASL is only for the opt-in `gssapi` feature.)
RUN apt-get update && apt-get install -y --no-install-recommends pkg-config libssl-dev \
    libcurl4-openssl-dev && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Dependencies first, in a layer of their own: a change to the sources alone does not rebuild
# librdkafka and the crates. The stubs stand in for the targets Cargo.toml declares.
COPY Cargo.toml Cargo.lock ./
COPY benches ./benches
COPY examples ./examples
RUN mkdir -p src && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && cargo build --release --locked --bin sessionflow \
    && rm -rf src
COPY src ./src
COPY schemas ./schemas
# The stub's build left newer timestamps than the copied sources: touch them so cargo rebuilds.
RUN touch src/main.rs src/lib.rs && cargo build --release --locked --bin sessionflow

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates libssl3 \
    libcurl4 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --no-create-home sessionflow
COPY --from=build /src/target/release/sessionflow /usr/local/bin/sessionflow
COPY config/sessionflow.toml /etc/sessionflow/sessionflow.toml
# Inside a container the listener must be reachable from outside it (the file's default,
# 127.0.0.1, is right for a process on a host).
ENV SESSIONFLOW__HTTP__LISTEN=0.0.0.0:9464
USER 10001:10001
EXPOSE 9464
# /healthz answers 200 while the processing loop is alive (bash's /dev/tcp: no curl needed).
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/9464 && printf 'GET /healthz HTTP/1.0\\r\\n\\r\\n' >&3 && head -n 1 <&3 | grep -q ' 200 '"]
ENTRYPOINT ["sessionflow"]
CMD ["run", "--config", "/etc/sessionflow/sessionflow.toml"]
