#!/usr/bin/env bash
# The CUDA kernels under the host emulation (tests/cpp/cuda_emulation), rebuilt with
# ThreadSanitizer (a subset sized for CI, plus the planted race TSan must report) and with
# AddressSanitizer + UndefinedBehaviorSanitizer. Any sanitizer report fails. Run by scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR="${BUILD_DIR:-build/ctest}"
JOBS="${JOBS:-2}"
export TSAN_OPTIONS="halt_on_error=1 ${TSAN_OPTIONS:-}"
export ASAN_OPTIONS="halt_on_error=1:detect_leaks=1 ${ASAN_OPTIONS:-}"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1 ${UBSAN_OPTIONS:-}"

# name, -fsanitize value, ctest regex of the emulated tests to run
run_sanitized() {
  local dir="$BUILD_DIR-$1"
  echo "== CUDA emulation under -fsanitize=$2 (build: $dir)"
  cmake -S . -B "$dir" -DLOCALMAMBA_BUILD_TESTS=ON -DLOCALMAMBA_PYTHON=OFF -DLOCALMAMBA_CUDA=OFF \
    -DLOCALMAMBA_SANITIZE="$2" -DCMAKE_BUILD_TYPE=Release >"$dir.configure.log" 2>&1 \
    || { cat "$dir.configure.log"; exit 1; }
  cmake --build "$dir" -j "$JOBS" --target localmamba_cuda_emulated_tests \
    $([ "$1" = tsan ] && echo localmamba_cuda_emulated_planted_race)
  ctest --test-dir "$dir" --output-on-failure -j "$JOBS" -L cuda_emulated -R "$3" -E "DeathTest"
}

# Death tests abort by design. The TSan subset holds every kernel (gather, selective and directional
# scan, forward and backward) in float64 and a 16-bit type, and the planted race.
TSAN_SUBSET='Emulator\.|EmulatedGather.*float32|SelectiveScan.*/(f64_all_options|bf16_bc_f32) '
TSAN_SUBSET+='|DirectionalScan.*/(f64_k4_dtproj_reduce_blc|f16_bc_f32) |planted_race'
run_sanitized tsan thread "$TSAN_SUBSET"
run_sanitized asan address,undefined '.'
