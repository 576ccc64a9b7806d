#!/usr/bin/env bash
# GPU check for a machine with a CUDA device (e.g. the lent H100/H200): builds with CUDA,
# runs the CUDA unit tests (ctest label "cuda" and pytest -m cuda) and the benchmarks' GPU
# sections, then prints a short summary table. Designed to finish in under 8 minutes.
# Outputs land in ${OUT:-gpu_check_out}/ (logs + summary.txt).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-gpu_check_out}"
mkdir -p "$OUT" build
PYTHON="${PYTHON:-python3}"
ARCH="${LOCALMAMBA_CUDA_ARCHS:-$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d '.')}"
ARCH="${ARCH:-90}"
declare -A STATUS

step() {  # step NAME TIMEOUT_S COMMAND...
  local name="$1" limit="$2"; shift 2
  local start=$(date +%s)
  timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
  local rc=$?
  STATUS[$name]="rc=$rc $(( $(date +%s) - start ))s"
  echo "[$name] rc=$rc ($(( $(date +%s) - start ))s)"; tail -5 "$OUT/$name.log"
}

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
# --no-deps: the device image already holds the runtime packages and cannot reach an index.
step install 300 env LOCALMAMBA_CUDA=ON CMAKE_ARGS="-DCMAKE_CUDA_ARCHITECTURES=$ARCH" \
  LOCALMAMBA_CUDA_ARCHS="$ARCH" "$PYTHON" -m pip install --no-build-isolation --no-deps -q .
if [[ "${STATUS[install]}" != rc=0* ]]; then
  echo "install failed: see $OUT/install.log (nothing else was run against a stale build)"
  exit 1
fi
step build_info 30 "$PYTHON" -c "import localmamba, json; print(json.dumps(localmamba.build_info()))"
# GoogleTest may be missing on a device image (nothing can be installed there): then say so.
step ctest 240 bash -c "if ! cmake -S . -B build/gpu -DLOCALMAMBA_BUILD_TESTS=ON -DLOCALMAMBA_PYTHON=OFF -DLOCALMAMBA_CUDA=ON \
  -DCMAKE_CUDA_ARCHITECTURES=$ARCH >build/gpu.configure.log 2>&1; then grep -q GTest build/gpu.configure.log \
  && { echo 'skipped: GoogleTest not installed on this machine'; exit 0; }; cat build/gpu.configure.log; exit 1; fi; \
  cmake --build build/gpu -j 16 >/dev/null && ctest --test-dir build/gpu -L cuda --output-on-failure"
step pytest_cuda 240 "$PYTHON" -m pytest tests/python -m cuda -q -p no:cacheprovider
for bench in bench/local_scan.py bench/selective_scan.py bench/directional_scan.py; do
  [ -f "$bench" ] || continue
  name="bench_$(basename "$bench" .py)"
  step "$name" 120 "$PYTHON" "$bench" --device cuda
done

{
  echo "GPU check $(date -u +%Y-%m-%dT%H:%MZ) on $(cat "$OUT/gpu.txt")"
  printf "%-28s %s\n" "step" "result"
  for key in "${!STATUS[@]}"; do printf "%-28s %s\n" "$key" "${STATUS[$key]}"; done | sort
} | tee "$OUT/summary.txt"
