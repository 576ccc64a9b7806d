"""Training loop: configs, optimizer groups, schedule, short runs per model family, exact
resume, crash-safe checkpoints, eval, CLI. Tiny models on the embedded digits, CPU only."""
from __future__ import annotations

import json
import re
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

pytest.importorskip("sklearn")

from localmamba.train import ConfigError, list_configs, load_config, run_training  # noqa: E402
from localmamba.train.checkpoint import load_training_checkpoint  # noqa: E402
from localmamba.train.metrics import read_metrics  # noqa: E402
from localmamba.train.optim import lr_factor, param_groups  # noqa: E402

try:
    import timm  # noqa: F401

    HAVE_TIMM = True
except Exception:
    HAVE_TIMM = False

REPO = Path(__file__).resolve().parents[2]


def tiny_cfg(out_dir, model="local_vim_test", **extra):
    """A few-second run: 48 digits at 32x32, batch 8 (6 steps/epoch), 2 epochs."""
    overrides = [
        {"model": {"name": model, "kwargs": {}, "drop_path": 0.1, "directions": None}},
        {"data": {"dataset": "digits", "img_size": 32, "limit_train": 48, "limit_val": 40, "workers": 0}},
        {"sched": {"epochs": 2, "warmup_epochs": 1}},
        {"train": {"batch_size": 8, "threads": 1}},
        {"log": {"interval": 1, "progress": False}},
        {"output": {"dir": str(out_dir)}},
    ]
    for key, value in extra.items():
        overrides.append(f"{key}={json.dumps(value)}")
    return load_config("digits/local_vim", overrides)


def epoch_losses(run_dir):
    return {r["epoch"]: r["train_loss"] for r in read_metrics(Path(run_dir) / "metrics.jsonl") if r["event"] == "epoch"}


def step_losses(run_dir):
    return {r["step"]: r["loss"] for r in read_metrics(Path(run_dir) / "metrics.jsonl") if r["event"] == "step"}


# ----------------------------------------------------------------------------- config

def test_every_packaged_config_loads():
    names = list_configs()
    for required in ("digits/local_vim", "digits/local_vim_search", "imagenet/local_vim_tiny",
                     "imagenet/local_vim_tiny_middle_cls_token", "imagenet/local_vim_small",
                     "imagenet/local_vssm_tiny", "imagenet/local_vssm_small", "search/local_vim_tiny_search",
                     "search/local_vssm_tiny_search", "search/local_vssm_small_search"):
        assert required in names
    for name in names:
        cfg = load_config(name, ["data.root=/nonexistent"])
        assert cfg["sched"]["epochs"] >= 1
    tiny = load_config("imagenet/local_vim_tiny", ["data.root=/x"])
    # the release recipe (SPEC 1.4)
    assert tiny["optim"]["lr"] == 1e-3 and tiny["optim"]["lr_base_batch"] == 1024
    assert tiny["sched"]["epochs"] == 300 and tiny["sched"]["warmup_epochs"] == 20
    assert tiny["sched"]["warmup_lr"] == 1e-7 and tiny["sched"]["min_lr"] == 1e-6
    assert tiny["aug"]["mixup"] == 0.2 and tiny["aug"]["cutmix"] == 1.0 and tiny["aug"]["reprob"] == 0.25
    assert tiny["aug"]["auto_augment"].startswith("rand-m9-mstd0.5") and tiny["aug"]["color_jitter"] == 0.3
    assert tiny["model"]["drop_path"] == 0.1 and tiny["train"]["seed"] == 42
    assert load_config("imagenet/local_vssm_tiny", ["data.root=/x"])["model"]["drop_path"] == 0.2


def test_config_overrides_and_errors(tmp_path):
    cfg = load_config(None, ["optim.lr=5e-4", "aug.scale=[0.5, 1.0]", "train.ema=true"])
    assert cfg["optim"]["lr"] == 5e-4 and cfg["aug"]["scale"] == [0.5, 1.0] and cfg["train"]["ema"] is True
    with pytest.raises(ConfigError, match=r"optim\.lrr.*did you mean 'optim\.lr'"):
        load_config(None, ["optim.lrr=1"])
    with pytest.raises(ConfigError, match=r"optim\.lr must be > 0"):
        load_config(None, ["optim.lr=-1"])
    with pytest.raises(ConfigError, match=r"train\.amp must be one of"):
        load_config(None, ["train.amp=fp8"])
    with pytest.raises(ConfigError, match=r"warmup_epochs"):
        load_config(None, ["sched.epochs=2", "sched.warmup_epochs=5"])
    with pytest.raises(ConfigError, match=r"data\.root must be set"):
        load_config(None, ["data.dataset=imagefolder"])
    with pytest.raises(ConfigError, match=r"model\.directions\[1\].*unknown scan direction"):
        load_config(None, ["model.directions=[[h], [q7]]"])
    with pytest.raises(ConfigError, match="section.key=value"):
        load_config(None, ["optim.lr"])
    f = tmp_path / "mine.yaml"
    f.write_text("_base_: digits/local_vim\noptim:\n  lr: 1e-3\n")  # YAML 1.1 reads 1e-3 as a string
    cfg = load_config(str(f))
    assert cfg["optim"]["lr"] == 1e-3 and cfg["model"]["kwargs"]["depth"] == 4
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim:\n  weight_decy: 0.1\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml.*did you mean 'optim\.weight_decay'"):
        load_config(str(bad))


# ----------------------------------------------------------------------------- optimizer / schedule

def test_no_weight_decay_groups():
    import localmamba

    for name in ("local_vim_test_search", "local_vim_test_middle_cls_token", "local_vssm_test_search"):
        model = localmamba.create_model(name)
        groups = {g["name"]: g for g in param_groups(model, 0.05, 1e-3, alpha_lr=5e-3)}
        decay = set(groups["decay"]["param_names"])
        no_decay = set(groups["no_decay"]["param_names"])
        alpha = set(groups.get("alpha", {"param_names": []})["param_names"])
        names = {n for n, _ in model.named_parameters()}
        assert decay | no_decay | alpha == names and not (decay & no_decay)
        for n in names:
            base = n.rsplit(".", 1)[-1]
            if base.startswith("A_log") or base in ("D", "Ds", "pos_embed", "cls_token") or base.startswith("D_") \
                    or ".norm" in n or n.endswith("bias"):
                assert n not in decay, n
        assert all(p.ndim >= 2 for n, p in model.named_parameters() if n in decay)
        assert any(n.endswith(".weight") and "proj" in n for n in decay)
        if name.endswith("search"):
            assert alpha and all(n.endswith("multi_scan.weights") for n in alpha)
            assert groups["alpha"]["lr"] == 5e-3 and groups["alpha"]["weight_decay"] == 0.0
    vim = localmamba.create_model("local_vim_test_middle_cls_token")
    nd = set(param_groups(vim, 0.05, 1e-3)[1]["param_names"])
    assert {"pos_embed", "cls_token"} <= nd
    assert any(".A_log" in n for n in nd) and any(".D" in n for n in nd)


def test_optimizer_updates_equal_the_per_parameter_loop():
    """build_optimizer's multi-tensor AdamW (a speed choice) must not change a single bit of the
    updates against torch's per-parameter loop with the same groups."""
    import localmamba
    from localmamba.train.optim import build_optimizer

    cfg = load_config("digits/local_vim")
    torch.manual_seed(0)
    models = [localmamba.create_model("local_vim_test") for _ in range(2)]
    models[1].load_state_dict(models[0].state_dict())
    opts = [build_optimizer(m, cfg, 1e-2) for m in models]
    assert all(g["foreach"] for g in opts[0].param_groups)
    for g in opts[1].param_groups:
        g["foreach"] = False
    for _ in range(3):
        grads = [torch.randn_like(p) for p in models[0].parameters()]
        for model, opt in zip(models, opts):
            for p, g in zip(model.parameters(), grads):
                p.grad = g.clone()
            opt.step()
    for a, b in zip(models[0].parameters(), models[1].parameters()):
        assert torch.equal(a, b)


def test_warmup_cosine_schedule():
    kw = dict(total_steps=100, warmup_steps=10, lr=1e-3, warmup_lr=1e-7, min_lr=1e-6)
    assert math.isclose(lr_factor(0, **kw) * 1e-3, 1e-7)
    assert math.isclose(lr_factor(10, **kw), 1.0)
    assert math.isclose(lr_factor(100, **kw) * 1e-3, 1e-6)
    mid = lr_factor(55, **kw) * 1e-3
    assert math.isclose(mid, 1e-6 + (1e-3 - 1e-6) * 0.5, rel_tol=1e-9)
    vals = [lr_factor(s, **kw) for s in range(10, 101)]
    assert all(a >= b for a, b in zip(vals, vals[1:]))


# ----------------------------------------------------------------------------- short runs

@pytest.mark.parametrize("model", ["local_vim_test", "local_vim_test_middle_cls_token", "local_vssm_test"])
def test_short_run_each_family(tmp_path, model):
    from safetensors.torch import load_file

    out = tmp_path / model
    summary = run_training(tiny_cfg(out, model, **{"sched.epochs": 1}))
    assert summary["epochs_done"] == 1 and summary["global_step"] == 6
    assert 0.0 <= summary["val_acc1"] <= 100.0 and summary["val_acc5"] >= summary["val_acc1"]
    for f in ("config.yaml", "metrics.jsonl", "curves.png", "last.pt", "best.pt", "model.safetensors", "summary.json"):
        assert (out / f).is_file(), f
    ckpt = load_training_checkpoint(out / "last.pt")
    weights = load_file(out / "model.safetensors")
    assert set(weights) == set(ckpt["model"])
    assert all(torch.equal(weights[k], ckpt["model"][k]) for k in weights)
    recs = read_metrics(out / "metrics.jsonl")
    epoch = [r for r in recs if r["event"] == "epoch"]
    assert len(epoch) == 1 and math.isfinite(epoch[0]["val_loss"])
    assert [r["step"] for r in recs if r["event"] == "step"] == list(range(1, 7))


def test_default_recipe_learns_digits(tmp_path):
    """The shipped digits recipe's model (smaller here) must actually learn: well above 10% chance."""
    cfg = load_config("digits/local_vim", [
        "model.kwargs={embed_dim: 32, depth: 2, patch_size: 4}", "model.directions=[[h, h_flip, w2, w2_flip], [h, v, w2, w2_flip]]",
        "data.limit_train=480", "sched.epochs=4", "sched.warmup_epochs=0", "optim.lr=1e-2", "aug.smoothing=0",
        "train.batch_size=32", "log.progress=false", f"output.dir={tmp_path}", "train.threads=1",
    ])
    summary = run_training(cfg)
    assert summary["val_acc1"] > 50.0, summary  # 72% when written; chance is 10%


# ----------------------------------------------------------------------------- resume

@pytest.mark.parametrize("stop", [4, 6])  # mid-epoch, and exactly at an epoch end
def test_resume_is_bit_identical(tmp_path, stop):
    extra = {"train.ema": True, "train.ema_decay": 0.9, "optim.clip_grad": 1.0}
    if HAVE_TIMM:
        extra.update({"aug.mixup": 0.8, "aug.cutmix": 1.0, "aug.reprob": 0.25})
    full = run_training(tiny_cfg(tmp_path / "full", **extra))
    part = run_training(tiny_cfg(tmp_path / "part", **extra, **{"train.stop_after_steps": stop}))
    assert part["stopped_early"] and part["global_step"] == stop
    assert not (tmp_path / "part" / "model.safetensors").exists()
    # log.* come from the run's config (interval 1), not from this command line (interval 5)
    resumed = run_training(tiny_cfg(tmp_path / "ignored", **{"train.device": "cpu", "log.interval": 5}),
                           resume=str(tmp_path / "part"))
    assert resumed["global_step"] == full["global_step"] == 12
    a, b = step_losses(tmp_path / "full"), step_losses(tmp_path / "part")
    assert sorted(b) == list(range(1, 13))  # records of the stopped run kept, resumed appended
    assert a == b  # bit-identical, including the first step after the resume
    # the epoch's train_loss averages the whole epoch, also the one resumed mid-way
    assert epoch_losses(tmp_path / "full") == epoch_losses(tmp_path / "part")
    ca = load_training_checkpoint(tmp_path / "full" / "last.pt")
    cb = load_training_checkpoint(tmp_path / "part" / "last.pt")
    for k in ca["model"]:
        assert torch.equal(ca["model"][k], cb["model"][k]), k
    for k in ca["model_ema"]:
        assert torch.equal(ca["model_ema"][k], cb["model_ema"][k]), k
    assert full["val_acc1"] == resumed["val_acc1"] and full.get("ema_acc1") == resumed.get("ema_acc1")
    assert not (tmp_path / "ignored").exists()


def test_new_run_refuses_to_overwrite(tmp_path):
    run_training(tiny_cfg(tmp_path, **{"train.stop_after_steps": 1}))
    with pytest.raises(ConfigError, match="already holds a run"):
        run_training(tiny_cfg(tmp_path))


KILLER = textwrap.dedent("""
    import os, signal, sys, torch
    from localmamba.train import load_config, run_training
    real_save = torch.save

    def dying_save(obj, f, *a, **k):
        if isinstance(obj, dict) and obj.get("epoch") == 2:
            real_save(obj, f, *a, **k)
            f.flush()
            f.truncate(f.tell() // 2)   # half the bytes are on disk...
            os.kill(os.getpid(), signal.SIGKILL)  # ...and the process dies mid-write
        return real_save(obj, f, *a, **k)

    torch.save = dying_save
    cfg = load_config("digits/local_vim", sys.argv[2:])
    run_training(cfg)
""")


def test_kill_during_checkpoint_write_keeps_previous(tmp_path):
    script = tmp_path / "killer.py"
    script.write_text(KILLER)
    out = tmp_path / "run"
    args = ["model.name=local_vim_test", "model.kwargs={}", "model.directions=null", "data.img_size=32",
            "data.limit_train=48", "data.limit_val=40", "sched.epochs=3", "sched.warmup_epochs=1",
            "train.batch_size=8", "train.threads=1", "log.progress=false", "log.interval=1", f"output.dir={out}"]
    proc = subprocess.run([sys.executable, str(script), "--", *args], capture_output=True, text=True, timeout=300)
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert list(out.glob(".last.pt.*.tmp")), "the interrupted write should have left its temporary file"
    ckpt = load_training_checkpoint(out / "last.pt")  # the previous checkpoint is intact
    assert ckpt["epoch"] == 1 and ckpt["global_step"] == 6
    summary = run_training(load_config("digits/local_vim", [*args, "train.device=cpu"]), resume=str(out))
    assert summary["global_step"] == 18 and summary["epochs_done"] == 3
    assert not list(out.glob(".*.tmp"))
    steps = sorted(step_losses(out))
    assert steps == list(range(1, 19))


DIE_WRITING = textwrap.dedent("""
    import os, signal, sys, tempfile
    from pathlib import Path
    import localmamba.atomic_files as af
    from localmamba.train import load_config, run_training

    target, epochs = sys.argv[1], sys.argv[2]
    real = af._atomic_write

    def dying(path, write_fn):
        path = Path(path)
        if path.name == target:  # half the bytes reach the temporary file, then the process dies
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            with os.fdopen(fd, "wb") as f:
                write_fn(f)
                f.flush()
                f.truncate(f.tell() // 2)
            os.kill(os.getpid(), signal.SIGKILL)
        return real(path, write_fn)

    af._atomic_write = dying
    run_training(load_config("digits/local_vim", sys.argv[3:] + [f"sched.epochs={epochs}"]))
""")


@pytest.mark.parametrize("target,epochs", [("model_best.safetensors", 1), ("best.pt", 2)])
def test_kill_during_best_writes_is_repaired_on_resume(tmp_path, target, epochs):
    """A kill while writing the best weights must not leave them missing or stale, nor a .tmp."""
    from safetensors import safe_open

    script = tmp_path / "die.py"
    script.write_text(DIE_WRITING)
    out = tmp_path / "run"
    args = ["model.name=local_vim_test", "model.kwargs={}", "model.directions=null", "data.img_size=32",
            "data.limit_train=48", "data.limit_val=40", "sched.warmup_epochs=0", "train.batch_size=8",
            "train.threads=1", "log.progress=false", f"output.dir={out}"]
    proc = subprocess.run([sys.executable, str(script), target, str(epochs), *args], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert list(out.glob(f".{target}.*.tmp")) and not (out / target).exists()
    summary = run_training(load_config("digits/local_vim", [*args, f"sched.epochs={epochs}"]), resume=str(out))
    assert not list(out.glob(".*.tmp"))
    best_epoch = summary["best"]["epoch"]
    best = load_training_checkpoint(out / "best.pt")
    assert best["epoch"] == best_epoch and best["global_step"] == 6 * best_epoch
    with safe_open(str(out / "model_best.safetensors"), framework="pt") as f:
        assert f.metadata()["epoch"] == str(best_epoch)
        assert all(torch.equal(f.get_tensor(k), best["model"][k]) for k in f.keys())


# ----------------------------------------------------------------------------- eval / CLI

def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "localmamba", *args], capture_output=True, text=True, timeout=600,
                          cwd=cwd)


def test_eval_matches_training_and_cli(tmp_path):
    out = tmp_path / "run"
    summary = run_training(tiny_cfg(out, **{"train.ema": True, "sched.epochs": 1}))
    res = _cli("eval", str(out), "--no-progress", "--json", str(tmp_path / "ev.json"))
    assert res.returncode == 0, res.stderr
    ev = json.loads((tmp_path / "ev.json").read_text())
    assert abs(ev["acc1"] - summary["val_acc1"]) < 1e-9 and ev["count"] == 40
    assert f"top-1 {summary['val_acc1']:.2f}%" in res.stdout
    res = _cli("eval", str(out), "--ema", "--no-progress", "--json", str(tmp_path / "ema.json"))
    assert res.returncode == 0, res.stderr
    assert abs(json.loads((tmp_path / "ema.json").read_text())["acc1"] - summary["ema_acc1"]) < 1e-9
    # safetensors weights + explicit model/data config
    res = _cli("eval", str(out / "model.safetensors"), "--model", "local_vim_test", "--img-size", "32",
               "--set", "model.kwargs={}", "--set", "model.directions=null", "--set", "data.limit_val=40",
               "--no-progress")
    assert res.returncode == 0, res.stderr
    assert f"top-1 {summary['val_acc1']:.2f}%" in res.stdout


def test_cli_errors_and_listing(tmp_path):
    res = _cli("train", "--list-configs")
    assert res.returncode == 0 and "imagenet/local_vim_tiny" in res.stdout
    res = _cli("train", "optim.lr=-3")
    assert res.returncode == 2 and "optim.lr must be > 0" in res.stderr and "Traceback" not in res.stderr
    res = _cli("train", "--model", "local_vim_tiniest", "--epochs", "1", "--output", str(tmp_path / "x"))
    assert res.returncode == 2 and "unknown model 'local_vim_tiniest'" in res.stderr
    res = _cli("train", "--dataset", "cifar10", "--data-dir", str(tmp_path / "none"), "--output", str(tmp_path / "y"))
    assert res.returncode == 2 and "CIFAR-10" in res.stderr and "Traceback" not in res.stderr
    res = _cli("train", "--print-config", "--lr", "0.01", "--epochs", "3")
    assert res.returncode == 0 and "lr: 0.01" in res.stdout and "epochs: 3" in res.stdout
    res = _cli("train", "--amp", "fp16", "--device", "cpu", "--output", str(tmp_path / "z"))
    assert res.returncode == 2 and "fp16 needs a CUDA device" in res.stderr


def test_bf16_autocast_on_cpu(tmp_path):
    summary = run_training(tiny_cfg(tmp_path, **{"train.amp": "bf16", "sched.epochs": 1}))
    assert math.isfinite(summary["val_loss"])


def test_pretrained_initialisation_skips_mismatched_head(tmp_path, capsys):
    import localmamba
    from safetensors.torch import save_file

    from localmamba.train.engine import load_pretrained

    src = localmamba.create_model("local_vim_test", num_classes=10, in_chans=1)
    save_file({k: v.contiguous() for k, v in src.state_dict().items()}, str(tmp_path / "w.safetensors"))
    torch.save({"model": src.state_dict()}, tmp_path / "w.pth")  # the release's layout
    for f in ("w.safetensors", "w.pth"):
        dst = localmamba.create_model("local_vim_test", num_classes=7, in_chans=1)
        load_pretrained(dst, str(tmp_path / f))
        sd_src, sd_dst = src.state_dict(), dst.state_dict()
        for k, v in sd_dst.items():
            if k.startswith("head."):
                assert v.shape[0] == 7
            else:
                assert torch.equal(v, sd_src[k]), k
        assert "skipped (shape mismatch): head.bias, head.weight" in capsys.readouterr().out


def test_mid_epoch_checkpoints(tmp_path, monkeypatch):
    import localmamba.train.engine as engine

    saved = []
    real = engine.atomic_torch_save

    def recording(obj, path):
        saved.append((Path(path).name, obj["epoch"], obj["batch_in_epoch"], obj["global_step"]))
        return real(obj, path)

    monkeypatch.setattr(engine, "atomic_torch_save", recording)
    run_training(tiny_cfg(tmp_path, **{"sched.epochs": 1, "train.checkpoint_every_steps": 2}))
    last = [s for s in saved if s[0] == "last.pt"]
    assert last == [("last.pt", 0, 2, 2), ("last.pt", 0, 4, 4), ("last.pt", 1, 0, 6)]
    assert ("best.pt", 1, 0, 6) in saved


def test_typed_config_and_did_you_mean_across_sections():
    from localmamba.train.config import typed_config

    cfg = typed_config(load_config(None, ["optim.lr=2e-3", "sched.epochs=70"]))
    assert cfg.optim.lr == 2e-3 and cfg.sched.epochs == 70 and cfg.data.dataset == "digits"
    for given, meant in (("train.epochs=3", "sched.epochs"), ("optim.lrr=1", "optim.lr"),
                         ("sched.epoch=3", "sched.epochs"), ("trian.ema=true", "train"),
                         ("data.batch_size=8", "train.batch_size"), ("optim.warmup_lr=0", "sched.warmup_lr")):
        with pytest.raises(ConfigError, match=rf"did you mean '{re.escape(meant)}'"):
            load_config(None, [given])
    with pytest.raises(ConfigError, match=r"train\.batch_size must be an integer"):
        load_config(None, ["train.batch_size=2.5"])
    with pytest.raises(ConfigError, match=r"log\.progress must be true or false"):
        load_config(None, ["log.progress=maybe"])
