"""Command-line options shared by `localmamba train`, `search` and `eval`."""
from __future__ import annotations

import argparse
from typing import Any, Dict, List

from ..data import dataset_names
from .config import ConfigError, list_configs, load_config

__all__ = ["add_config_arguments", "config_from_args", "explicit_overrides", "print_config", "run_cli"]

# flag -> (dotted key, argparse kwargs)
_FLAGS = {
    "--model": ("model.name", dict(metavar="NAME", help="model name (see localmamba.list_models()) or module:callable")),
    "--dataset": ("data.dataset", dict(metavar="NAME", help="a registered dataset")),
    "--data-dir": ("data.root", dict(metavar="DIR", help="dataset root (ImageFolder: DIR/train, DIR/val)")),
    "--img-size": ("data.img_size", dict(type=int, metavar="N")),
    "--workers": ("data.workers", dict(type=int, metavar="N", help="data-loading worker processes")),
    "--epochs": ("sched.epochs", dict(type=int, metavar="N")),
    "--batch-size": ("train.batch_size", dict(type=int, metavar="N", help="per-process batch size")),
    "--lr": ("optim.lr", dict(type=float, metavar="LR")),
    "--seed": ("train.seed", dict(type=int, metavar="N")),
    "--device": ("train.device", dict(metavar="DEV", help="auto, cpu, cuda or cuda:N")),
    "--amp": ("train.amp", dict(choices=["none", "bf16", "fp16"])),
    "--directions": ("model.directions", dict(metavar="FILE", help="per-layer directions file (from export-directions)")),
    "--pretrained": ("model.pretrained", dict(metavar="CKPT", help="initialise weights from a checkpoint")),
    "--output": ("output.dir", dict(metavar="DIR", help="output directory (default runs/<command>-<model>-<dataset>-<YYYYmmdd-HHMMSS>)")),
}


def add_config_arguments(p: argparse.ArgumentParser, default_config: str, training: bool = True) -> None:
    p.add_argument("-c", "--config", default=None, metavar="FILE",
                   help=f"YAML config file or packaged recipe name (default: {default_config}; see --list-configs)")
    for flag, (key, kw) in _FLAGS.items():
        if not training and key in ("sched.epochs", "optim.lr", "model.pretrained"):
            continue
        kw = dict(kw)
        if key == "data.dataset":
            kw["choices"] = dataset_names()  # the registry, read when the parser is built
            kw["help"] = f"one of {', '.join(kw['choices'])}"
        kw.setdefault("help", "")
        kw["help"] = (kw["help"] + f" (sets {key})").strip()
        p.add_argument(flag, dest="flag_" + key.replace(".", "__"), default=None, **kw)
    if training:
        p.add_argument("--ema", dest="flag_train__ema", action="store_const", const=True, default=None,
                       help="keep and evaluate a model EMA (sets train.ema)")
    p.add_argument("--no-progress", dest="flag_log__progress", action="store_const", const=False, default=None,
                   help="no progress bars (sets log.progress=false)")
    p.add_argument("--set", dest="set_overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config key, e.g. --set optim.weight_decay=0.04 (repeatable)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="more overrides, e.g. aug.mixup=0.8")
    p.add_argument("--list-configs", action="store_true", help="list the packaged recipes and exit")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")


def explicit_overrides(args: argparse.Namespace) -> List[Any]:
    """The overrides the user gave: convenience flags (as nested dicts), then KEY=VALUE."""
    overrides: List[Any] = []
    for name, value in sorted(vars(args).items()):
        if name.startswith("flag_") and value is not None:
            node: Dict[str, Any] = {}
            parts = name[len("flag_"):].split("__")
            cur = node
            for part in parts[:-1]:
                cur = cur.setdefault(part, {})
            cur[parts[-1]] = value
            overrides.append(node)
    # explicit KEY=VALUE overrides win over the convenience flags
    return [*overrides, *getattr(args, "set_overrides", []), *getattr(args, "overrides", [])]


def config_from_args(args: argparse.Namespace, default_config: str) -> Dict[str, Any]:
    return load_config(args.config or default_config, explicit_overrides(args))


def run_cli(fn, args) -> int:
    """Runs fn() unless --list-configs was asked for. Errors go up to `localmamba.cli.main`, which
    prints user errors as one line (exit code 2)."""
    if getattr(args, "list_configs", False):
        print("\n".join(list_configs()))
        return 0
    return fn()


def print_config(cfg: Dict[str, Any]) -> None:
    """The resolved config as YAML, with the data.* values a run fills from its dataset
    (num_classes, in_chans, mean, std) filled the same way when the dataset is readable here."""
    import copy

    import yaml

    from ..data import build_datasets, record_dataset_fields
    from ..errors import UserError

    cfg = copy.deepcopy(cfg)
    note = ""
    try:
        _, _, info = build_datasets(cfg)
        record_dataset_fields(cfg["data"], info)
    except UserError as e:
        note = (f"# data.num_classes / in_chans / mean / std: null here (the dataset cannot be read: {e}); "
                "a run fills them from its dataset\n")
    print(yaml.safe_dump(cfg, sort_keys=False) + note, end="")
