#!/usr/bin/env bash
# The project's test command: builds and runs the C++ unit tests (ctest), then pytest.
# Expects the Python package to be installed already (`pip install ".[test,train]"`).
# CUDA sources are compiled whenever nvcc is found (LOCALMAMBA_CUDA=AUTO|ON|OFF);
# CUDA tests skip themselves where no device exists.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python}"
BUILD_DIR="${BUILD_DIR:-build/ctest}"
JOBS="${JOBS:-2}"

echo "== C++ unit tests (build: $BUILD_DIR, LOCALMAMBA_CUDA=${LOCALMAMBA_CUDA:-AUTO})"
cmake -S . -B "$BUILD_DIR" -DLOCALMAMBA_BUILD_TESTS=ON -DLOCALMAMBA_PYTHON=OFF \
  -DLOCALMAMBA_CUDA="${LOCALMAMBA_CUDA:-AUTO}" -DCMAKE_BUILD_TYPE=Release >"$BUILD_DIR.configure.log" 2>&1 \
  || { cat "$BUILD_DIR.configure.log"; exit 1; }
grep "localmamba:" "$BUILD_DIR.configure.log" || true
cmake --build "$BUILD_DIR" -j "$JOBS"
ctest --test-dir "$BUILD_DIR" --output-on-failure -j "$JOBS"
# CUDA kernels under the host emulation with ThreadSanitizer and ASan+UBSan (SANITIZERS=0 skips).
[ "${SANITIZERS:-1}" = 0 ] || bash scripts/sanitized_emulation.sh

echo "== Python tests"
"$PYTHON" -c "import localmamba, json; print(json.dumps(localmamba.build_info()))" || {
  echo "localmamba is not installed in $PYTHON: run pip install '.[test,train]' first" >&2
  exit 1
}
set +e
"$PYTHON" -m pytest tests/python -q -p no:cacheprovider "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
  echo "pytest collected no tests" >&2
  exit 1
fi
exit "$status"
