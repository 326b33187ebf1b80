#!/usr/bin/env bash
# Package an output folder for the LG Aimers submission: OUT_DIR/model -> OUT_DIR/submit.zip.
# Thin wrapper over `compressor package --target export/targets/lg-aimers.yaml`.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

if [[ $# -lt 1 || "$1" == "-h" || "$1" == "--help" ]]; then
  echo "usage: $0 OUT_DIR [--force] [--json]" >&2
  echo "  checks OUT_DIR/model against export/targets/lg-aimers.yaml and writes OUT_DIR/submit.zip" >&2
  exit 2
fi

if [[ -x "$here/.venv/bin/compressor" ]]; then
  compressor="$here/.venv/bin/compressor"
elif command -v compressor >/dev/null 2>&1; then
  compressor="compressor"
else
  echo "create_submit.sh: no compressor found (run \`make install\` or put compressor on PATH)" >&2
  exit 1
fi

exec "$compressor" package "$@" --target "$here/export/targets/lg-aimers.yaml"
