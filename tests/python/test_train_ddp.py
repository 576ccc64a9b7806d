"""DDP: a 2-process gloo run (torchrun, localhost) matches a 1-process run on the same global batch."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from _tolerance import assert_close_by_rule

# The runs use the embedded digits data, which scikit-learn ships: a test extra (pyproject.toml),
# so a missing scikit-learn fails here instead of skipping the DDP test silently.
import sklearn  # noqa: E402,F401

from localmamba.train.checkpoint import load_training_checkpoint  # noqa: E402
from localmamba.train.metrics import read_metrics  # noqa: E402


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _args(out, batch):
    return ["train", "--model", "local_vim_test", "--img-size", "32", "--epochs", "2", "--batch-size", str(batch),
            "--device", "cpu", "--output", str(out), "--no-progress",
            "--set", "model.kwargs={}", "--set", "model.directions=null", "--set", "model.drop_path=0.0",
            "--set", "data.limit_train=64", "--set", "data.limit_val=45", "--set", "sched.warmup_epochs=1",
            "--set", "train.threads=1", "--set", "log.interval=1", "--set", "optim.clip_grad=1.0",
            "--set", "train.ema=true", "--set", "train.ema_decay=0.9"]


def test_two_process_gloo_matches_one_process(tmp_path):
    env = dict(os.environ, GLOO_SOCKET_IFNAME="lo", OMP_NUM_THREADS="1", MASTER_ADDR="127.0.0.1")
    env.pop("WORLD_SIZE", None)
    one = subprocess.run([sys.executable, "-m", "localmamba", *_args(tmp_path / "one", 8)],
                         capture_output=True, text=True, timeout=600, env=env)
    assert one.returncode == 0, one.stderr[-3000:]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", "2",
                          "--master-addr", "127.0.0.1", "--master-port", str(_free_port()),
                          "-m", "localmamba", *_args(tmp_path / "two", 4)],
                         capture_output=True, text=True, timeout=600, env=env)
    assert two.returncode == 0, two.stdout[-2000:] + two.stderr[-3000:]
    assert "2 process(es)" in two.stdout and "global batch 8" in two.stdout
    assert two.stdout.count("final validation accuracy") == 1  # only rank 0 prints

    def steps(run):
        recs = read_metrics(tmp_path / run / "metrics.jsonl")
        return [r for r in recs if r["event"] == "step"], [r for r in recs if r["event"] == "epoch"]

    s1, e1 = steps("one")
    s2, e2 = steps("two")
    assert [r["step"] for r in s1] == [r["step"] for r in s2] == list(range(1, 17))  # each step logged once
    for a, b in zip(s1, s2):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-4, abs=1e-5), (a, b)
        assert b["lr"] == pytest.approx(a["lr"], rel=1e-12)
    for a, b in zip(e1, e2):
        assert b["val_loss"] == pytest.approx(a["val_loss"], rel=1e-4, abs=1e-5)
        assert abs(b["val_acc1"] - a["val_acc1"]) <= 100.0 / 45 + 1e-9  # at most one borderline sample
        assert b["ema_loss"] == pytest.approx(a["ema_loss"], rel=1e-4, abs=1e-5)
    c1 = load_training_checkpoint(tmp_path / "one" / "last.pt")
    c2 = load_training_checkpoint(tmp_path / "two" / "last.pt")
    assert c2["world_size"] == 2 and len(c2["rng"]) == 2
    for k, v in c1["model"].items():
        assert_close_by_rule(c2["model"][k], v, "ddp", k)
    # no stray per-rank files: rank 1 wrote nothing
    names = sorted(p.name for p in (tmp_path / "two").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "one").iterdir())
