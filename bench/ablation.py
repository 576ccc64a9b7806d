"""Ablation: plain scan directions vs local (windowed) directions in a small LocalVim.

Trains the digits recipe (`localmamba train -c digits/local_vim`: embedded scikit-learn
handwritten digits at 16x16, 2x2 patches -> 8x8 tokens) twice per seed — once with the
plain directions (h, h_flip, v, v_flip) in every layer, once with local ones
(h, h_flip, w2, w2_flip, the release's LocalVim-S choice) — and prints the final validation
top-1 accuracy as mean ± std over seeds. A script, not a test:

    python bench/ablation.py                       # 3 seeds, the recipe as shipped
    python bench/ablation.py --seeds 0 1 2 3 4 --epochs 20 --json ablation.json
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

VARIANTS = {
    "plain (h, h_flip, v, v_flip)": ["h", "h_flip", "v", "v_flip"],
    "local (h, h_flip, w2, w2_flip)": ["h", "h_flip", "w2", "w2_flip"],
}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--config", default="digits/local_vim", help="base recipe (default: digits/local_vim)")
    p.add_argument("--epochs", type=int, default=None, help="override sched.epochs")
    p.add_argument("--output", default=None, help="run directory root (default runs/ablation-<time>)")
    p.add_argument("--json", default=None, help="write the results here as JSON")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="more config overrides for both variants")
    args = p.parse_args(argv)

    import torch

    from localmamba.train import load_config, run_training

    root = Path(args.output or f"runs/ablation-{time.strftime('%Y%m%d-%H%M%S')}")
    base = load_config(args.config, args.overrides)
    depth = base["model"]["kwargs"].get("depth")
    if depth is None:
        print("the base config must set model.kwargs.depth", file=sys.stderr)
        return 2
    results = {name: [] for name in VARIANTS}
    t0 = time.time()
    for seed in args.seeds:
        for name, dirs in VARIANTS.items():
            tag = name.split()[0]
            extra = [
                {"model": {"directions": [list(dirs) for _ in range(depth)]}},
                {"train": {"seed": seed}},
                {"log": {"progress": False}},
                {"output": {"dir": str(root / f"{tag}-seed{seed}")}},
            ]
            if args.epochs:
                extra.append({"sched": {"epochs": args.epochs}})
            if args.threads:
                extra.append({"train": {"threads": args.threads}})
            cfg = load_config(args.config, [*args.overrides, *extra])
            t = time.time()
            summary = run_training(cfg, command="ablation")
            results[name].append({"seed": seed, "acc1": summary["val_acc1"], "best_acc1": summary["best"]["acc1"],
                                  "seconds": round(time.time() - t, 1)})
            print(f"  {name:32s} seed {seed}: top-1 {summary['val_acc1']:.2f}%  ({time.time() - t:.0f}s)", flush=True)

    print()
    print(f"{base['model']['name']} {base['model']['kwargs']} on {base['data']['dataset']} "
          f"({base['data']['img_size']}px), {args.epochs or base['sched']['epochs']} epochs, seeds {args.seeds}; "
          f"torch {torch.__version__}, {platform.machine()}, {torch.get_num_threads()} threads, "
          f"{time.time() - t0:.0f}s total")
    print(f"| directions | final val top-1 (mean ± std) | per seed |")
    print(f"|---|---|---|")
    table = {}
    for name, runs in results.items():
        accs = [r["acc1"] for r in runs]
        mean = statistics.mean(accs)
        std = statistics.stdev(accs) if len(accs) > 1 else 0.0
        table[name] = {"mean": mean, "std": std, "runs": runs}
        print(f"| {name} | {mean:.2f} ± {std:.2f} % | {', '.join(f'{a:.2f}' for a in accs)} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"config": args.config, "seeds": args.seeds, "results": table}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
