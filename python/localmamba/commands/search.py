"""`localmamba search`: train a direction-search supernet (all 8 candidate scan directions
per layer, weighted by softmax of learnable logits α), log α per layer every epoch, and
write the top-k directions per layer (directions.json) and a heat map at the end."""
from __future__ import annotations

import argparse

from .train import _add, _main

DEFAULT_CONFIG = "digits/local_vim_search"

EPILOG = """examples:
  localmamba search                                   # tiny LocalVim supernet on the embedded digits
  localmamba search -c search/local_vim_tiny_search --data-dir /data/imagenet
  localmamba export-directions runs/search-.../ --top-k 4 --output my_directions.json
  localmamba train --directions runs/search-.../directions.json
"""


def register(subparsers) -> None:
    p = subparsers.add_parser("search", help="direction search: train a supernet, export top-k directions",
                              description=__doc__, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add(p, DEFAULT_CONFIG)
    p.set_defaults(func=lambda args: _main(args, "search", DEFAULT_CONFIG))
