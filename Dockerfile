# Multi-stage build: compile in the official Rust image (librdkafka from the crate's bundled
# sources, linked against Debian's OpenSSL, Cyrus SASL and libcurl), run in a small Debian
# image as a non-root user.
FROM rust:1.95-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends cmake pkg-config libssl-dev \
    libsasl2-dev libcurl4-openssl-dev && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
COPY examples ./examples
RUN cargo build --release --locked --bin sessionflow

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates zlib1g \
    libssl3 libsasl2-2 libsasl2-modules libcurl4 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home sessionflow
COPY --from=build /src/target/release/sessionflow /usr/local/bin/sessionflow
COPY config/sessionflow.toml /etc/sessionflow/sessionflow.toml
USER sessionflow
EXPOSE 9464
ENTRYPOINT ["sessionflow"]
CMD ["run", "--config", "/etc/sessionflow/sessionflow.toml"]
