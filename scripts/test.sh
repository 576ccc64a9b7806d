#!/usr/bin/env bash
# The project's test command: builds and runs the C++ unit tests (ctest), then pytest.
#   bash scripts/test.sh --install   first installs what the tests need -- the package with its
#                                    `test` and `train` extras into $PYTHON's environment (pip)
#                                    and GoogleTest where CMake cannot find it (a private copy of
#                                    Debian's libgtest-dev under build/deps, see find_googletest.sh)
#   bash scripts/test.sh             tests the package installed already
# Further arguments go to pytest (e.g. -m "not readme", -k NAME). CUDA sources are compiled
# whenever nvcc is found (LOCALMAMBA_CUDA=AUTO|ON|OFF); CUDA tests skip themselves without a device.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-$(command -v python3 || command -v python)}"
BUILD_DIR="${BUILD_DIR:-build/ctest}"
JOBS="${JOBS:-2}"
INSTALL=0
if [ "${1:-}" = "--install" ]; then
  INSTALL=1
  shift
fi

# pip prints one warning per missing local index folder on some machines; keep the log readable
# while still failing when pip fails (pipefail carries pip's status through the filter).
quiet_pip() { "$PYTHON" -m pip install -q "$@" 2>&1 | { grep -v "^WARNING: Location" || true; }; }

if [ "$INSTALL" -eq 1 ]; then
  echo "== installing the package with its test and train extras ($PYTHON)"
  command -v nvcc >/dev/null && echo "nvcc found: the CUDA kernels are compiled too" || echo "no nvcc: CPU-only build"
  quiet_pip ".[test,train]"
fi

echo "== C++ unit tests (build: $BUILD_DIR, LOCALMAMBA_CUDA=${LOCALMAMBA_CUDA:-AUTO})"
if [ "$INSTALL" -eq 1 ]; then
  GTEST_PREFIX="$(bash scripts/find_googletest.sh)"
else
  GTEST_PREFIX="$(bash scripts/find_googletest.sh --no-fetch)" || {
    echo "GoogleTest not found: 'bash scripts/test.sh --install' fetches a private copy (no root needed)," \
         "or install libgtest-dev" >&2
    exit 1
  }
fi
# Through the environment, so every CMake build below (the sanitizer ones too) finds it.
[ -z "$GTEST_PREFIX" ] || export CMAKE_PREFIX_PATH="$GTEST_PREFIX${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
mkdir -p "$(dirname "$BUILD_DIR")"
cmake -S . -B "$BUILD_DIR" -DLOCALMAMBA_BUILD_TESTS=ON -DLOCALMAMBA_PYTHON=OFF \
  -DLOCALMAMBA_CUDA="${LOCALMAMBA_CUDA:-AUTO}" -DCMAKE_BUILD_TYPE=Release \
  >"$BUILD_DIR.configure.log" 2>&1 || { cat "$BUILD_DIR.configure.log"; exit 1; }
grep "localmamba:" "$BUILD_DIR.configure.log" || true
cmake --build "$BUILD_DIR" -j "$JOBS"
ctest --test-dir "$BUILD_DIR" --output-on-failure -j "$JOBS"
# CUDA kernels under the host emulation with ThreadSanitizer and ASan+UBSan (SANITIZERS=0 skips).
[ "${SANITIZERS:-1}" = 0 ] || bash scripts/sanitized_emulation.sh

echo "== Python tests"
"$PYTHON" -c "import localmamba, json; print(json.dumps(localmamba.build_info()))" || {
  echo "localmamba is not installed in $PYTHON: run 'bash scripts/test.sh --install'" >&2
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
