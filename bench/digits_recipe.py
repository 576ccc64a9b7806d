"""Seconds per step of the default `localmamba train` recipe (digits/local_vim), whole epochs as a
user runs them: data pipeline, forward, backward, clipping, AdamW, logging.

    python bench/digits_recipe.py                          # this checkout, 2 rounds of 2 epochs
    python bench/digits_recipe.py --compare /path/to/other/checkout/.venv/bin/python

Each round runs `python -m localmamba train train.stop_after_steps=<2 epochs>` once per
interpreter (this one first, then each --compare one), in turn, so a load that changes during the
run hits every interpreter alike; seconds per step is an epoch's `epoch_time` (metrics.jsonl) over
its steps (validation not included), median over rounds and epochs. Also printed: each run's
epoch lines (losses and accuracies: the same numbers mean the same math) and the ratio to the first
interpreter. Threads: whatever the interpreters default to (--threads sets OMP_NUM_THREADS and
LOCALMAMBA_NUM_THREADS for all).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile

STEPS_PER_EPOCH = 22  # the recipe's 1438 training images in full batches of 64


def run_once(python: str, steps: int, env: dict) -> dict:
    with tempfile.TemporaryDirectory() as out:
        cmd = [python, "-m", "localmamba", "train", f"train.stop_after_steps={steps}", "log.progress=false",
               "output.plots=false", "--output", out]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            raise SystemExit(f"{python} failed:\n{proc.stderr[-3000:]}")
        records = [json.loads(line) for line in open(os.path.join(out, "metrics.jsonl"))]
    epochs = [r for r in records if r.get("event") == "epoch"]
    per_step, last_step = [], 0
    for r in epochs:
        per_step.append(r["epoch_time"] / (r["step"] - last_step))
        last_step = r["step"]
    lines = [line for line in proc.stdout.splitlines() + proc.stderr.splitlines() if line.lstrip().startswith("epoch")]
    return {"per_step": per_step, "lines": lines}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--compare", nargs="*", default=[], help="other interpreters (other checkouts' venvs)")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    env = dict(os.environ)
    if args.threads:
        env["OMP_NUM_THREADS"] = env["LOCALMAMBA_NUM_THREADS"] = str(args.threads)
    pythons = [sys.executable] + args.compare
    for p in args.compare:
        if not (os.path.isfile(p) and os.access(p, os.X_OK)):
            raise SystemExit(f"--compare: {p!r} is not an executable Python interpreter (e.g. OTHER/.venv/bin/python)")
    steps = args.epochs * STEPS_PER_EPOCH
    results = {p: [] for p in pythons}
    loads = []
    for _ in range(args.rounds):
        for p in pythons:
            loads.append(os.getloadavg()[0])
            results[p].append(run_once(p, steps, env))
    print(f"{datetime.date.today()}, {os.cpu_count()} CPUs, load average {min(loads):.1f}-{max(loads):.1f}, "
          f"threads {args.threads or 'default'}; {args.rounds} rounds x {args.epochs} epochs of {STEPS_PER_EPOCH} steps")
    base = None
    for p in pythons:
        samples = [s for r in results[p] for s in r["per_step"]]
        med = statistics.median(samples)
        base = base or med
        print(f"\n{p}\n  s/step median {med:.4f} (min {min(samples):.4f}, max {max(samples):.4f}); "
              f"{base / med:.2f}x the first interpreter's speed")
        for line in results[p][-1]["lines"]:
            print(f"  | {line}")


if __name__ == "__main__":
    main()
