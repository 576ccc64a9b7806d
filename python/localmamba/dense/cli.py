"""Argument parsing and actions shared by `localmamba detect` and `localmamba segment`
(``train``, ``eval``, ``predict``)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Dict, List

__all__ = ["register_task"]

_TRAIN_FLAGS = {
    "--backbone": ("model.backbone", dict(metavar="NAME", help="backbone model name (LocalVMamba or LocalVim)")),
    "--pretrained": ("model.pretrained", dict(metavar="CKPT", help="classification checkpoint for the backbone")),
    "--dataset": ("data.dataset", dict(choices=["embedded", "coco", "ade20k"])),
    "--data-dir": ("data.root", dict(metavar="DIR", help="dataset root (COCO: DIR/train2017, DIR/annotations; "
                                                        "ADE20K: DIR/images, DIR/annotations)")),
    "--iters": ("sched.iters", dict(type=int, metavar="N")),
    "--batch-size": ("train.batch_size", dict(type=int, metavar="N", help="per-process batch size")),
    "--lr": ("optim.lr", dict(type=float, metavar="LR")),
    "--workers": ("data.workers", dict(type=int, metavar="N")),
    "--device": ("train.device", dict(metavar="DEV", help="auto, cpu, cuda or cuda:N")),
    "--amp": ("train.amp", dict(choices=["none", "bf16", "fp16"])),
    "--output": ("output.dir", dict(metavar="DIR")),
}
_EVAL_FLAGS = ("--data-dir", "--workers", "--device", "--amp")


def _add_flags(p: argparse.ArgumentParser, names) -> None:
    for flag in names:
        key, kw = _TRAIN_FLAGS[flag]
        kw = dict(kw)
        kw["help"] = (kw.get("help", "") + f" (sets {key})").strip()
        p.add_argument(flag, dest="flag_" + key.replace(".", "__"), default=None, **kw)
    p.add_argument("--set", dest="set_overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override any recipe key, e.g. --set optim.lr=2e-4 (repeatable)")
    p.add_argument("--no-progress", dest="flag_log__progress", action="store_const", const=False, default=None)


def _overrides(args) -> List[Any]:
    from ..train.cli_common import explicit_overrides

    return explicit_overrides(args)


def register_task(subparsers, command: str, task: str, default_recipe: str, description: str) -> None:
    p = subparsers.add_parser(command, help=description.splitlines()[0], description=description,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])

    t = actions.add_parser("train", help=f"train a {task} model from a recipe")
    t.add_argument("-c", "--config", default=None, metavar="RECIPE",
                   help=f"YAML file or packaged recipe (default {default_recipe}; see --list-configs)")
    t.add_argument("--resume", default=None, metavar="RUN_DIR_OR_CKPT", help="continue a run exactly")
    _add_flags(t, list(_TRAIN_FLAGS))
    t.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    t.add_argument("--list-configs", dest="list_recipes", action="store_true", help="list the packaged recipes and exit")
    t.add_argument("--print-config", action="store_true", help="print the resolved recipe and exit")
    t.set_defaults(func=lambda args: _train(args, task, default_recipe))

    e = actions.add_parser("eval", help="evaluate a trained checkpoint (COCO AP / mIoU)")
    e.add_argument("checkpoint", metavar="RUN_DIR_OR_CKPT")
    _add_flags(e, _EVAL_FLAGS)
    e.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="e.g. data.limit_val=100 eval.mode=slide")
    e.add_argument("--json", default=None, metavar="FILE", help="also write the metrics to FILE")
    e.set_defaults(func=lambda args: _eval(args, task))

    pr = actions.add_parser("predict", help="write PNG overlays of predictions on images")
    pr.add_argument("checkpoint", metavar="RUN_DIR_OR_CKPT")
    pr.add_argument("images", nargs="*", metavar="IMAGE")
    pr.add_argument("--embedded-val", dest="embedded_val", type=int, nargs="+", default=[], metavar="N",
                    help="also predict held-out scene N of the embedded dataset the model was trained on")
    pr.add_argument("-o", "--output", default="predictions", metavar="DIR", help="folder for the PNGs")
    pr.add_argument("--device", default="cpu", metavar="DEV")
    if task == "detection":
        pr.add_argument("--score-threshold", type=float, default=None, metavar="S",
                        help="draw detections scoring at least S (default: the recipe's eval.score_threshold)")
    pr.set_defaults(func=lambda args: _predict(args, task))


def _run(fn, args) -> int:
    from ..train.cli_common import run_cli

    return run_cli(fn, args)


def _train(args, task: str, default_recipe: str) -> int:
    def go() -> int:
        from .config import list_dense_configs, load_dense_config
        from .engine import run_dense_training

        if args.list_recipes:
            print("\n".join(list_dense_configs(task)))
            return 0
        cfg = load_dense_config(args.config or default_recipe, _overrides(args), task=task)
        if args.print_config:
            import yaml

            print(yaml.safe_dump(cfg, sort_keys=False), end="")
            return 0
        run_dense_training(cfg, resume=args.resume)
        return 0

    return _run(go, args)


def _load_for_eval(args, task: str):
    """The checkpoint's own recipe and model; explicit flags / KEY=VALUE override the recipe."""
    from ..train.config import ConfigError
    from .config import load_dense_config
    from .engine import load_dense_checkpoint

    cfg, model, info = load_dense_checkpoint(args.checkpoint)
    if cfg["task"] != task:
        raise ConfigError(f"{args.checkpoint} holds a {cfg['task']} model, not a {task} one")
    return load_dense_config(cfg, _overrides(args), task=task), model, info


def _eval(args, task: str) -> int:
    def go() -> int:
        from ..train import distributed as D
        from ..train.checkpoint import atomic_write_bytes
        from .builders import build_dense_datasets
        from .engine import _headline, evaluate_dense

        cfg, model, info = _load_for_eval(args, task)
        device = D.resolve_device(cfg["train"]["device"])
        _, val_ds, _ = build_dense_datasets(cfg, train=False)
        metrics = evaluate_dense(model.to(device), val_ds, cfg, device, info, cfg["log"]["progress"])
        print(f"{args.checkpoint}: {_headline(task, metrics)} ({metrics['images']} images, {cfg['data']['dataset']})",
              flush=True)
        if args.json:
            atomic_write_bytes(args.json, (json.dumps(metrics, indent=2) + "\n").encode())
        return 0

    return _run(go, args)


def _predict(args, task: str) -> int:
    def go() -> int:
        import torch

        from .engine import load_dense_checkpoint
        from .predict import predict_detection, predict_segmentation

        from ..train.config import ConfigError
        from .builders import embedded_val_images

        if not args.images and not args.embedded_val:
            raise ConfigError("predict needs IMAGE paths or --embedded-val N")
        cfg, model, info = load_dense_checkpoint(args.checkpoint)
        images = [*args.images, *embedded_val_images(cfg, args.embedded_val)] if args.embedded_val else args.images
        device = torch.device(args.device)
        model.to(device)
        out_dir = Path(args.output)
        for image in images:
            out = out_dir / (Path(image).stem + ".png")
            if task == "detection":
                threshold = args.score_threshold if args.score_threshold is not None else cfg["eval"]["score_threshold"]
                result = predict_detection(model, image, out, info["class_names"], threshold, device)
                found = ", ".join(f"{d['class']} {d['score']:.2f}" for d in result["detections"]) or "nothing"
                print(f"{image}: {found} -> {out}", flush=True)
            else:
                result = predict_segmentation(model, image, out, info["class_names"], cfg, device)
                top = sorted(result["classes"].items(), key=lambda kv: -kv[1])[:5]
                print(f"{image}: " + ", ".join(f"{k} {100 * v:.1f}%" for k, v in top) + f" -> {out}", flush=True)
        return 0

    return _run(go, args)
