"""`localmamba export-directions`: read the per-layer direction logits α of a search
supernet checkpoint (a search run directory, last.pt / best.pt, an official *_search
checkpoint, or a .safetensors file), keep the top-k directions per layer, and write a
directions file for `localmamba train --directions FILE`, plus a PNG heat map."""
from __future__ import annotations

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser("export-directions", help="top-k directions per layer from a search checkpoint",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", metavar="CKPT_OR_RUN_DIR")
    p.add_argument("-k", "--top-k", type=int, default=None, help="directions kept per layer (default: the search "
                   "run's search.top_k, else 4)")
    p.add_argument("-o", "--output", default=None, metavar="FILE",
                   help="directions file to write (default: directions.json next to the checkpoint)")
    p.add_argument("--heatmap", default=None, metavar="PNG",
                   help="heat map of per-layer probabilities (default: <output stem>_heatmap.png; 'none' to skip)")
    p.add_argument("--ema", action="store_true", help="read α from the checkpoint's EMA weights")
    p.set_defaults(func=_main)


def _main(args) -> int:
    from pathlib import Path

    import torch

    from ..errors import UserError
    from ..search import alphas_from_state_dict, directions_record, plot_alpha_heatmap, write_directions
    from ..train.artifacts import open_checkpoint

    ck = open_checkpoint(args.checkpoint, "CKPT_OR_RUN_DIR", prefer_ema=args.ema)
    src, sd = ck.path, ck.state_dict
    model_name, top_k = None, 4
    if ck.config is not None:
        model_name = ck.config["model"]["name"]
        top_k = ck.config.get("search", {}).get("top_k", top_k)
    if args.top_k is not None:
        top_k = args.top_k
    alphas = alphas_from_state_dict(sd)
    if not alphas:
        raise UserError(f"CKPT_OR_RUN_DIR {src}: has no direction logits (parameters named '*multi_scan.weights'); "
                        "export-directions needs a search supernet checkpoint")
    if not 1 <= top_k <= 8:
        raise UserError(f"--top-k {top_k}: must be between 1 and 8")
    record = directions_record(alphas, top_k, str(src), model_name)
    out = Path(args.output) if args.output else src.parent / "directions.json"
    write_directions(record, out)
    heat = args.heatmap or str(out.with_name(out.stem + "_heatmap.png"))
    if heat.lower() != "none":
        plot_alpha_heatmap(torch.tensor(record["probabilities"]), heat, f"softmax(α) — {src.name}", top_k=top_k)
    width = max(len(n) for n in record["layers"])
    for name, dirs, probs in zip(record["layers"], record["directions"], record["probabilities"]):
        top = ", ".join(f"{d} {probs[record['candidates'].index(d)]:.3f}" for d in dirs)
        print(f"{name:<{width}}  {top}")
    print(f"wrote {out}" + ("" if heat.lower() == "none" else f" and {heat}") + f" ({len(alphas)} layers, top-{top_k})")
    return 0
