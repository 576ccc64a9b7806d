#!/usr/bin/env bash
# GPU check for a machine with a CUDA device (e.g. a lent H100/H200): builds with CUDA, runs the
# CUDA unit tests (ctest label "cuda", pytest -m cuda) and the benchmarks' GPU sections. The whole
# script stays within BUDGET_S seconds (default 450, under 8 minutes: every step's timeout is cut to
# the time left) and writes at most 8 files to ${OUT:-gpu_check_out}/: summary.txt and one log per
# step. It ends with one summary table, then the tails of the steps that failed.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-gpu_check_out}"
BUDGET_S="${BUDGET_S:-450}"
START=$(date +%s)
mkdir -p "$OUT" build
PYTHON="${PYTHON:-python3}"
STEPS=()
declare -A STATUS

# nvcc on PATH, else where CUDA images and pip's nvidia-cuda-nvcc package put it.
find_nvcc() {
  command -v nvcc && return 0
  local candidate
  for candidate in /usr/local/cuda/bin/nvcc /usr/local/cuda-*/bin/nvcc /opt/cuda/bin/nvcc /usr/lib/cuda/bin/nvcc \
    $("$PYTHON" -c "import nvidia, os; print(os.path.join(list(nvidia.__path__)[0], 'cuda_nvcc/bin/nvcc'))" 2>/dev/null); do
    [ -x "$candidate" ] && { echo "$candidate"; return 0; }
  done
  return 1
}

step() {  # step NAME TIMEOUT_S COMMAND...
  local name="$1" limit="$2"; shift 2
  local left=$(( BUDGET_S - ($(date +%s) - START) ))
  STEPS+=("$name")
  if (( left < 15 )); then STATUS[$name]="skipped: time budget spent"; return; fi
  (( limit > left )) && limit=$left
  local start=$(date +%s)
  timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
  local rc=$?
  local result="ok"
  (( rc == 124 )) && result="TIMEOUT after ${limit}s" || { (( rc != 0 )) && result="FAILED rc=$rc"; }
  STATUS[$name]="$result $(( $(date +%s) - start ))s | $(grep -E "passed|failed|tests passed|Error" "$OUT/$name.log" | tail -1 | cut -c1-90)"
  echo "[$name] $result"
}

GPU="$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -1)"
ARCH="${LOCALMAMBA_CUDA_ARCHS:-$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d '.')}"
ARCH="${ARCH:-90}"
if NVCC="$(find_nvcc)"; then
  export CUDACXX="$NVCC" PATH="$(dirname "$NVCC"):$PATH"
else
  NVCC="not found"
fi

# --no-deps: the device image already holds the runtime packages and cannot reach an index.
step install 300 env LOCALMAMBA_CUDA=ON CMAKE_ARGS="-DCMAKE_CUDA_ARCHITECTURES=$ARCH" \
  LOCALMAMBA_CUDA_ARCHS="$ARCH" "$PYTHON" -m pip install --no-build-isolation --no-deps -q .
if [[ "${STATUS[install]}" == ok* ]]; then
  BUILD_INFO="$("$PYTHON" -c "import localmamba, json; print(json.dumps(localmamba.build_info()))" 2>&1 | tail -1)"
  # GoogleTest may be missing on a device image (nothing can be installed there): then say so.
  step ctest 200 bash -c "if ! cmake -S . -B build/gpu -DLOCALMAMBA_BUILD_TESTS=ON -DLOCALMAMBA_PYTHON=OFF \
    -DLOCALMAMBA_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=$ARCH >build/gpu.configure.log 2>&1; then \
    grep -q GTest build/gpu.configure.log && { echo 'skipped: GoogleTest not installed on this machine'; exit 0; }; \
    cat build/gpu.configure.log; exit 1; fi; cmake --build build/gpu -j 16 >/dev/null \
    && ctest --test-dir build/gpu -L cuda --output-on-failure"
  step pytest_cuda 200 "$PYTHON" -m pytest tests/python -m cuda -q -p no:cacheprovider
  for bench in bench/local_scan.py bench/selective_scan.py bench/directional_scan.py; do
    [ -f "$bench" ] && step "bench_$(basename "$bench" .py)" 90 "$PYTHON" "$bench" --device cuda
  done
else
  BUILD_INFO="install failed: nothing else was run against a stale build"
fi

{
  echo "GPU check $(date -u +%Y-%m-%dT%H:%MZ), $(( $(date +%s) - START ))s: ${GPU:-no nvidia-smi} | arch $ARCH | nvcc $NVCC"
  echo "build: $BUILD_INFO"
  printf "%-24s %s\n" "step" "result | last summary line of $OUT/<step>.log"
  for name in "${STEPS[@]}"; do printf "%-24s %s\n" "$name" "${STATUS[$name]}"; done
} | tee "$OUT/summary.txt"
for name in "${STEPS[@]}"; do
  [[ "${STATUS[$name]}" == ok* || "${STATUS[$name]}" == skipped* ]] && continue
  echo "---- $name (last 25 lines of $OUT/$name.log)"
  tail -25 "$OUT/$name.log"
done
