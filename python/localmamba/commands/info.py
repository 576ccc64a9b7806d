"""`localmamba info`: build facts, and a picture of the scan orders on a grid."""
from __future__ import annotations

import argparse
import json


def _parse_grid(text: str):
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"grid must look like 8x8 or 7x9, got {text!r}") from None
    if h < 1 or w < 1:
        raise argparse.ArgumentTypeError(f"grid sides must be >= 1, got {text!r}")
    return h, w


def register(subparsers) -> None:
    parser = subparsers.add_parser("info", help="print build info; optionally draw scan orders to a PNG")
    parser.add_argument("--json", action="store_true", help="print build info as JSON only")
    parser.add_argument("--png", default=None, help="write a drawing of the scan orders to this PNG file")
    parser.add_argument("--grid", type=_parse_grid, default=(8, 8), help="token grid for the drawing, e.g. 7x9")
    parser.add_argument(
        "--directions",
        default="h,h_flip,v,v_flip,w2,w2_flip,w3,w3_col",
        help="comma-separated scan directions to draw",
    )
    parser.set_defaults(func=run)


def run(args) -> int:
    import localmamba

    info = localmamba.build_info()
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        import torch

        print(f"localmamba {info['version']}")
        print(f"  compiler        {info['compiler']}")
        print(f"  SIMD            compiled {info['simd_compiled']}, this CPU {info['simd_runtime']}")
        print(f"  CPU threads     {info['num_threads']} ({info['thread_pool']} pool)")
        cuda = f"compiled for sm {info['cuda_architectures']}" if info["cuda_compiled"] else "not compiled"
        print(f"  CUDA            {cuda}; {info['cuda_status']}")
        print(f"  torch           {torch.__version__}")
    if args.png:
        from ..visualize import draw_scan_orders

        directions = [d.strip() for d in args.directions.split(",") if d.strip()]
        draw_scan_orders(directions, *args.grid, path=args.png)
        print(f"wrote {args.png}")
    return 0
