#!/usr/bin/env bash
# Makes GoogleTest available to the C++ test build and prints the CMake prefix to search for it:
# nothing when CMake finds it already (a system package, or GTest_DIR / GTEST_ROOT set), else the
# private copy in build/deps/googletest, unpacked from Debian's libgtest-dev package (headers,
# static libraries and CMake config) -- fetched by name with `apt-get download`, so it changes
# nothing on the system and needs no root. Usage: prefix="$(bash scripts/find_googletest.sh)";
# with --no-fetch it only looks, and fails when GoogleTest is nowhere.
set -euo pipefail
cd "$(dirname "$0")/.."
DEPS_DIR="$PWD/build/deps/googletest"

have_system_googletest() {
  [ -n "${GTest_DIR:-}" ] || [ -n "${GTEST_ROOT:-}" ] && return 0
  local pattern
  for pattern in /usr/lib/*/cmake/GTest/GTestConfig.cmake /usr/lib*/cmake/GTest/GTestConfig.cmake \
                 /usr/local/lib*/cmake/GTest/GTestConfig.cmake /usr/lib/*/libgtest.a /usr/lib*/libgtest.a \
                 /usr/local/lib*/libgtest.a; do
    compgen -G "$pattern" >/dev/null && return 0
  done
  return 1
}

private_prefix() { compgen -G "$DEPS_DIR/usr/lib/*/cmake/GTest/GTestConfig.cmake" >/dev/null && echo "$DEPS_DIR/usr"; }

if have_system_googletest; then exit 0; fi
if private_prefix; then exit 0; fi
if [ "${1:-}" = "--no-fetch" ]; then exit 1; fi

if ! command -v apt-get >/dev/null || ! command -v dpkg-deb >/dev/null; then
  echo "GoogleTest not found and this is no Debian-like system: install it (libgtest-dev, gtest-devel," \
       "brew install googletest) or set GTest_DIR to its CMake folder" >&2
  exit 1
fi
echo "== fetching GoogleTest (Debian's libgtest-dev) into $DEPS_DIR" >&2
download_dir="$(mktemp -d)"
trap 'rm -rf "$download_dir"' EXIT
chmod 777 "$download_dir"  # apt downloads as its own user (_apt)
fetch() { (cd "$download_dir" && apt-get download -q libgtest-dev >&2); }
if ! fetch; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "apt-get download libgtest-dev failed: the package lists may be missing (run apt-get update as root)" >&2
    exit 1
  fi
  apt-get update -qq >&2
  fetch
fi
mkdir -p "$DEPS_DIR"
dpkg-deb -x "$download_dir"/libgtest-dev_*.deb "$DEPS_DIR"
private_prefix || { echo "the unpacked libgtest-dev has no CMake config under $DEPS_DIR" >&2; exit 1; }
