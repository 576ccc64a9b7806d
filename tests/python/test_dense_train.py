"""The dense loop end to end on a tiny embedded dataset: exact resume, COCO AP / mIoU produced,
`localmamba detect|segment train|eval|predict` (PNG written). CPU, a few iterations."""
from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

pytest.importorskip("pycocotools")
pytest.importorskip("sklearn")
pytest.importorskip("torchvision")

from safetensors.torch import load_file  # noqa: E402

from localmamba.cli import main  # noqa: E402
from localmamba.dense.config import load_dense_config  # noqa: E402
from localmamba.dense.engine import run_dense_training  # noqa: E402

EMBEDDED = {"num_train": 8, "num_val": 2, "size": 48, "min_digit": 12, "max_digit": 24, "max_objects": 2}
DET_MODEL = {"backbone": "local_vssm_test", "neck_channels": 16, "representation_size": 32, "min_size": 48,
             "max_size": 48, "anchor_sizes": [8, 16, 32, 64, 128], "box_batch_size_per_image": 16,
             "rpn_post_nms_top_n_train": 32, "mask_head_convs": 1}


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("embedded")


def _det_cfg(cache, out, *overrides):
    base = {"task": "detection", "model": DET_MODEL,
            "data": {"dataset": "embedded", "root": str(cache), "embedded": EMBEDDED, "workers": 0},
            "optim": {"lr": 1e-3, "clip_grad": 5.0}, "sched": {"iters": 4, "warmup_iters": 2, "milestones": [3]},
            "train": {"batch_size": 2, "device": "cpu"}, "output": {"dir": str(out), "plots": False},
            "log": {"interval": 1, "progress": False}}
    return load_dense_config(base, list(overrides), task="detection")


@pytest.fixture(scope="module")
def detection_runs(cache, tmp_path_factory):
    root = tmp_path_factory.mktemp("det")
    straight = run_dense_training(_det_cfg(cache, root / "straight"))
    stopped = run_dense_training(_det_cfg(cache, root / "resumed", "train.stop_after_steps=2"))
    resumed = run_dense_training(_det_cfg(cache, root / "ignored"), resume=str(root / "resumed"))
    return root, straight, stopped, resumed


def test_detection_resume_is_exact_and_reports_coco_ap(detection_runs):
    root, straight, stopped, resumed = detection_runs
    assert stopped["stopped_early"] and stopped["step"] == 2
    assert resumed["step"] == straight["step"] == 4
    a, b = load_file(root / "straight" / "model.safetensors"), load_file(root / "resumed" / "model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    for name in ("bbox_AP", "bbox_AP50", "bbox_AP75", "bbox_APs", "bbox_APm", "bbox_APl", "segm_AP"):
        assert 0.0 <= straight[name] <= 100.0
    records = [json.loads(line) for line in (root / "resumed" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["event"] == "step"] == [1, 2, 3, 4]
    assert any(r["event"] == "eval" for r in records)


def test_detect_eval_and_predict_commands(detection_runs, cache, tmp_path, capsys):
    root = detection_runs[0]
    assert main(["detect", "eval", str(root / "straight"), "--json", str(tmp_path / "m.json"), "--no-progress"]) == 0
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert "bbox_AP" in metrics and "segm_AP" in metrics and metrics["images"] == 2
    assert main(["detect", "predict", str(root / "straight"), "--embedded-val", "1", "-o", str(tmp_path / "out"),
                 "--score-threshold", "0.0"]) == 0  # the run's own held-out scene 1, found through its recipe
    with Image.open(tmp_path / "out" / "00001.png") as png:
        assert png.size == (48, 48) and png.mode == "RGB"
    assert f"{cache}" in capsys.readouterr().out
    assert main(["detect", "predict", str(root / "straight"), "--embedded-val", "2"]) == 2  # 2 held-out scenes
    assert "indices must be in 0..1" in capsys.readouterr().err
    assert main(["detect", "predict", str(root / "straight")]) == 2
    assert "IMAGE paths or --embedded-val" in capsys.readouterr().err


def test_segment_train_eval_predict_commands(cache, tmp_path, capsys):
    out = tmp_path / "seg"
    common = [f"data.root={cache}", f"data.embedded={json.dumps(EMBEDDED)}", "data.scale=[96,48]",
              "data.crop_size=[40,40]", "model.backbone=local_vssm_test", "model.decode_channels=16",
              "model.aux_channels=8", "train.batch_size=2", "sched.warmup_iters=1", "output.plots=false"]
    assert main(["segment", "train", "--iters", "3", "--output", str(out), "--device", "cpu", "--no-progress",
                 *common]) == 0
    assert (out / "last.pt").is_file() and (out / "model.safetensors").is_file()
    summary = json.loads((out / "summary.json").read_text())
    assert 0.0 <= summary["mIoU"] <= 100.0 and 0.0 <= summary["aAcc"] <= 100.0
    assert main(["segment", "eval", str(out), "--json", str(tmp_path / "m.json"), "--set", "eval.mode=slide",
                 "--set", "eval.crop=[32,32]", "--set", "eval.stride=[20,20]", "--no-progress"]) == 0
    assert "mIoU" in json.loads((tmp_path / "m.json").read_text())
    image = next(cache.glob("embedded-*/ade/images/validation/00001.png"))
    assert main(["segment", "predict", str(out), str(image), "-o", str(tmp_path / "png")]) == 0
    with Image.open(tmp_path / "png" / "00001.png") as png:
        assert png.size == (48, 48)
    assert main(["detect", "eval", str(out)]) == 2  # a segmentation checkpoint given to detect
    assert "segmentation model" in capsys.readouterr().err


def test_train_refuses_bad_recipes(tmp_path, capsys):
    assert main(["segment", "train", "--set", "optim.lrr=1"]) == 2
    assert "did you mean 'optim.lr'" in capsys.readouterr().err
    assert main(["detect", "train", "-c", "segmentation/embedded_local_vssm"]) == 2
    assert "not a detection one" in capsys.readouterr().err


def test_checkpoint_from_before_a_new_recipe_key_loads_with_its_default(detection_runs, tmp_path):
    from localmamba.dense.config import DENSE_DEFAULTS
    from localmamba.dense.engine import load_dense_checkpoint
    from localmamba.train.checkpoint import atomic_torch_save, load_training_checkpoint

    ckpt = load_training_checkpoint(detection_runs[0] / "straight" / "last.pt")
    del ckpt["config"]["model"]["rpn_pre_nms_top_n_test"]  # as written before that key existed
    atomic_torch_save(ckpt, tmp_path / "last.pt")
    cfg, model, _ = load_dense_checkpoint(str(tmp_path / "last.pt"))
    assert cfg["model"]["rpn_pre_nms_top_n_test"] == DENSE_DEFAULTS["model"]["rpn_pre_nms_top_n_test"]
    assert model.rpn._pre_nms_top_n["testing"] == DENSE_DEFAULTS["model"]["rpn_pre_nms_top_n_test"]
