"""Direction search: top-k selection, directions files, search -> export -> train round trip."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from _tolerance import assert_close_by_rule

from localmamba.ops import SEARCH_CANDIDATES
from localmamba.search import (
    alpha_probabilities,
    alphas_from_state_dict,
    directions_record,
    plot_alpha_heatmap,
    read_directions,
    select_directions,
    write_directions,
)


def test_select_top_k_in_candidate_order():
    probs = torch.tensor([
        [0.05, 0.30, 0.05, 0.20, 0.10, 0.10, 0.15, 0.05],
        [0.125] * 8,  # all tied: the earliest candidates win
    ])
    assert select_directions(probs, 4) == [["h_flip", "v_flip", "w2", "w7"], ["h", "h_flip", "v", "v_flip"]]
    assert select_directions(probs, 1) == [["h_flip"], ["h"]]
    assert select_directions(probs, 8)[0] == list(SEARCH_CANDIDATES)
    with pytest.raises(ValueError, match="top_k"):
        select_directions(probs, 9)


def test_alphas_from_state_dict_shapes_and_errors():
    sd = {
        "layers.0.mixer.multi_scan.weights": torch.arange(8.0).view(8, 1, 1, 1),  # the release's shape
        "layers.0.mixer.in_proj.weight": torch.zeros(4, 4),
        "layers.1.mixer.multi_scan.weights": -torch.arange(8.0),
    }
    alphas = alphas_from_state_dict(sd)
    assert list(alphas) == ["layers.0.mixer.multi_scan.weights", "layers.1.mixer.multi_scan.weights"]
    probs = alpha_probabilities(alphas)
    assert_close_by_rule(probs.sum(1), torch.ones(2), "fp32_sum")
    rec = directions_record(alphas, 4, "x.pth", "local_vim_tiny_search")
    assert rec["model"] == "local_vim_tiny" and rec["directions"] == [["w2", "w2_flip", "w7", "w7_flip"],
                                                                      ["h", "h_flip", "v", "v_flip"]]
    with pytest.raises(ValueError, match="expected 8 direction logits"):
        alphas_from_state_dict({"a.multi_scan.weights": torch.zeros(4)})
    with pytest.raises(ValueError, match="search supernet"):
        alpha_probabilities({})


def test_directions_files(tmp_path):
    rec = {"directions": [["h", "w2"], ["v_flip", "w7_flip"]], "other": 1}
    write_directions(rec, tmp_path / "d.json")
    assert read_directions(tmp_path / "d.json") == rec["directions"]
    (tmp_path / "d.yaml").write_text("- [h, h_flip]\n- h, w2_flip\n")
    assert read_directions(tmp_path / "d.yaml") == [["h", "h_flip"], ["h", "w2_flip"]]
    (tmp_path / "bad.yaml").write_text("directions:\n  - [h, q3]\n")
    with pytest.raises(ValueError, match="layer 0.*unknown scan direction"):
        read_directions(tmp_path / "bad.yaml")
    (tmp_path / "nokey.json").write_text(json.dumps({"layers": []}))
    with pytest.raises(ValueError, match="no 'directions' key"):
        read_directions(tmp_path / "nokey.json")
    with pytest.raises(FileNotFoundError):
        read_directions(tmp_path / "missing.json")
    png = plot_alpha_heatmap(torch.softmax(torch.randn(3, 8), 1), tmp_path / "h.png", top_k=4)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "localmamba", *args], capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("family", ["local_vim_test", "local_vssm_test"])
def test_search_export_train_round_trip(tmp_path, family):
    pytest.importorskip("sklearn")
    from localmamba.train import load_training_checkpoint

    common = ["--img-size", "32", "--batch-size", "8", "--no-progress", "--set", "model.kwargs={}",
              "--set", "sched.warmup_epochs=0", "data.limit_train=32", "data.limit_val=16", "train.threads=1",
              "log.interval=1"]
    search_dir = tmp_path / "search"
    res = _cli("search", "--model", f"{family}_search", "--epochs", "2", "--output", str(search_dir),
               *common, "optim.alpha_lr=0.05")
    assert res.returncode == 0, res.stderr[-3000:]
    assert "searched directions written to" in res.stdout
    for f in ("directions.json", "alpha_heatmap.png", "last.pt", "curves.png"):
        assert (search_dir / f).is_file(), f
    # alpha logged per layer, per epoch, and it moved away from its ~1e-3 initialisation
    epochs = [json.loads(l) for l in (search_dir / "metrics.jsonl").read_text().splitlines() if '"epoch"' in l]
    epochs = [r for r in epochs if r["event"] == "epoch"]
    assert len(epochs) == 2 and all(len(r["alpha"]) == len(r["alpha_prob"]) > 0 for r in epochs)
    assert max(abs(a) for row in epochs[-1]["alpha"] for a in row) > 0.01
    auto = json.loads((search_dir / "directions.json").read_text())

    # export again, from the checkpoint, with another k
    out = tmp_path / "dirs_k2.json"
    res = _cli("export-directions", str(search_dir / "last.pt"), "--top-k", "2", "--output", str(out))
    assert res.returncode == 0, res.stderr
    exported = json.loads(out.read_text())
    assert (tmp_path / "dirs_k2_heatmap.png").is_file()
    ckpt = load_training_checkpoint(search_dir / "last.pt")
    probs = alpha_probabilities(alphas_from_state_dict(ckpt["model"]))
    assert exported["directions"] == select_directions(probs, 2)
    assert auto["directions"] == select_directions(probs, 4)
    assert len(exported["directions"]) == len(auto["directions"]) == len(epochs[-1]["alpha"])

    # train the searched architecture
    train_dir = tmp_path / "train"
    res = _cli("train", "--model", family, "--directions", str(out), "--epochs", "1", "--output", str(train_dir),
               *common)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "final validation accuracy" in res.stdout
    trained = load_training_checkpoint(train_dir / "last.pt")
    assert trained["config"]["model"]["directions"] == exported["directions"]
    import localmamba

    model = localmamba.create_model(family, num_classes=10, in_chans=1, img_size=32,
                                    directions=exported["directions"])
    model.load_state_dict(trained["model"])  # the checkpoint is that architecture
    assert not alphas_from_state_dict(trained["model"])
    # two directions per layer: each layer has half the per-direction parameters of a 4-direction model
    four = localmamba.create_model(family, num_classes=10, in_chans=1, img_size=32)
    assert sum(p.numel() for p in model.parameters()) < sum(p.numel() for p in four.parameters())


def test_export_rejects_non_search_checkpoint(tmp_path):
    torch.save({"model": {"head.weight": torch.zeros(2, 2)}}, tmp_path / "plain.pth")
    res = _cli("export-directions", str(tmp_path / "plain.pth"))
    assert res.returncode == 2 and "search supernet" in res.stderr and "Traceback" not in res.stderr


def test_export_from_release_style_checkpoint(tmp_path):
    g = torch.Generator().manual_seed(0)
    sd = {f"layers.{i}.mixer.multi_scan.weights": torch.randn(8, 1, 1, 1, generator=g) for i in range(3)}
    torch.save({"model": sd}, tmp_path / "release.pth")
    res = _cli("export-directions", str(tmp_path / "release.pth"), "-o", str(tmp_path / "d.json"), "--heatmap", "none")
    assert res.returncode == 0, res.stderr
    rec = json.loads((tmp_path / "d.json").read_text())
    assert rec["directions"] == select_directions(alpha_probabilities(alphas_from_state_dict(sd)), 4)
    assert not (tmp_path / "d_heatmap.png").exists()


def test_search_requires_a_supernet(tmp_path):
    pytest.importorskip("sklearn")
    from localmamba.train import ConfigError, load_config, run_training

    cfg = load_config("digits/local_vim_search", ["model.name=local_vim_test", "model.kwargs={}", "data.img_size=32",
                                                  "data.limit_train=16", "train.batch_size=8",
                                                  f"output.dir={tmp_path}", "log.progress=false"])
    with pytest.raises(ConfigError, match="needs a supernet"):
        run_training(cfg, command="search")
