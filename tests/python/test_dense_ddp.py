"""The dense loop under torchrun: two gloo processes on CPU train a tiny detector and a tiny
segmenter for a few steps and finish with identical parameters (the loop checks it at every
checkpoint and stops the run if the ranks disagree), logging, evaluating and saving once.

A comparison with one process on the doubled batch is not possible here: torchvision's RPN and
RoI samplers draw from each process's own random stream, and on CPU UperNet's BatchNorm
statistics are per process (PyTorch's SyncBatchNorm runs on GPUs only)."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
import torch

pytest.importorskip("pycocotools")
pytest.importorskip("sklearn")
pytest.importorskip("torchvision")

from localmamba.train.checkpoint import load_training_checkpoint  # noqa: E402
from localmamba.train.metrics import read_metrics  # noqa: E402

EMBEDDED = {"num_train": 8, "num_val": 2, "size": 48, "min_digit": 12, "max_digit": 24, "max_objects": 2}
COMMON = ["--device", "cpu", "--no-progress", "--iters", "2", "--batch-size", "2", "train.threads=1",
          "train.checkpoint_every=1", "log.interval=1", "output.plots=false", "model.backbone=local_vssm_test",
          "sched.warmup_iters=1", "model.drop_path=0.0"]
TASKS = {
    "detect": ["model.neck_channels=16", "model.representation_size=32", "model.min_size=48", "model.max_size=48",
               "model.box_batch_size_per_image=16", "model.rpn_post_nms_top_n_train=32", "model.mask_head_convs=1"],
    "segment": ["data.scale=[96,48]", "data.crop_size=[40,40]", "model.decode_channels=16", "model.aux_channels=8"],
}


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("command", sorted(TASKS))
def test_two_gloo_processes_train_in_step(command, tmp_path):
    out = tmp_path / "run"
    env = dict(os.environ, GLOO_SOCKET_IFNAME="lo", OMP_NUM_THREADS="1", MASTER_ADDR="127.0.0.1")
    env.pop("WORLD_SIZE", None)
    args = [command, "train", "--output", str(out), *COMMON, *TASKS[command], f"data.root={tmp_path / 'cache'}",
            f"data.embedded={json.dumps(EMBEDDED)}"]
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", "2",
                          "--master-addr", "127.0.0.1", "--master-port", str(_free_port()), "-m", "localmamba", *args],
                         capture_output=True, text=True, timeout=300, env=env)
    assert run.returncode == 0, "stdout:\n" + run.stdout[-3000:] + "\nstderr:\n" + run.stderr[-3000:]
    assert "2 process(es)" in run.stdout and "iterations x 4 images" in run.stdout, run.stdout
    assert run.stdout.count("done in") == 1, run.stdout  # only rank 0 reports
    records = read_metrics(out / "metrics.jsonl")
    assert [r["step"] for r in records if r["event"] == "step"] == [1, 2]  # each step logged once
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in records if r["event"] == "step")
    assert sum(r["event"] == "eval" for r in records) == 1
    ckpt = load_training_checkpoint(out / "last.pt")
    assert ckpt["world_size"] == 2 and len(ckpt["rng"]) == 2 and ckpt["step"] == 2
    assert not torch.equal(ckpt["rng"][0]["torch"], ckpt["rng"][1]["torch"])  # one random stream per rank
