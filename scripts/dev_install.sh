#!/usr/bin/env bash
# Rebuilds the editable development install (CPU-only by default). Serialised with a lock
# so that several people working in one tree never run two builds into one build folder.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python}"
exec flock /tmp/localmamba-build.lock env LOCALMAMBA_CUDA="${LOCALMAMBA_CUDA:-OFF}" \
  "$PYTHON" -m pip install --no-build-isolation -e . -q
