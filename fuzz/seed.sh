#!/usr/bin/env bash
# Seeds fuzz/corpus/ from the project's test data (fuzz/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
corpus=fuzz/corpus
mkdir -p "$corpus/parse" "$corpus/replay" "$corpus/lifecycle" "$corpus/restore" "$corpus/changelog"
cp tests/fixtures/*.json "$corpus/parse/"
for example in tests/data/examples/* tests/data/scenarios/*; do
  [[ -f $example/input.ndjson ]] || continue
  name=$(basename "$example")
  split -l 1 -d -a 3 "$example/input.ndjson" "$corpus/parse/$name-"
  { printf '\x10\x00\x00\x00'; cat "$example/input.ndjson"; } >"$corpus/replay/$name"
done
echo "seeded $(find "$corpus" -type f | wc -l) files under $corpus"
