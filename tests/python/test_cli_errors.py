"""The command line with what a user really types: run folders and files written by `train`
feed `eval` / `predict` / `export-directions` (the model rebuilt from the run's record), and
every user error is one line naming the argument, exit code 2 (a traceback only with --debug)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

pytest.importorskip("sklearn")

from localmamba.cli import main  # noqa: E402
from localmamba.train import load_config, run_training  # noqa: E402

DIRECTIONS = [["h", "v_flip", "w2", "w3_col"], ["h_flip", "v", "w2_flip", "w3"]]  # not the model's default


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """One epoch of local_vim_test on 48 digits, trained with its own per-layer directions."""
    out = tmp_path_factory.mktemp("cli") / "run"
    cfg = load_config("digits/local_vim", [
        "model.name=local_vim_test", "model.kwargs={}", f"model.directions={json.dumps(DIRECTIONS)}",
        "data.img_size=32", "data.limit_train=48", "data.limit_val=40", "data.workers=0", "sched.epochs=1",
        "sched.warmup_epochs=0", "train.batch_size=8", "train.threads=1", "log.progress=false",
        f"output.dir={out}"])
    summary = run_training(cfg)
    return out, summary


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    from PIL import Image

    path = tmp_path_factory.mktemp("img") / "digit.png"
    g = torch.Generator().manual_seed(3)
    Image.fromarray((torch.rand(20, 24, 3, generator=g) * 255).byte().numpy()).save(path)
    return str(path)


def one_line_error(capsys, argv, *needles):
    assert main(argv) == 2, argv
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, (needle, err)
    return err


# ----------------------------------------------------------------------------- run folders feed eval / predict

def _predictions(capsys, checkpoint, image):
    assert main(["predict", image, "--checkpoint", str(checkpoint), "--json", "--topk", "3"]) == 0
    return [(t["index"], round(t["prob"], 6)) for t in json.loads(capsys.readouterr().out)[0]["top"]]


def test_predict_takes_any_file_train_wrote(run_dir, image, capsys, tmp_path):
    out, _ = run_dir
    expected = _predictions(capsys, out, image)
    assert len(expected) == 3
    for name in ("last.pt", "best.pt", "model.safetensors"):
        assert _predictions(capsys, out / name, image) == expected, name
    alone = tmp_path / "elsewhere.safetensors"  # the weights alone record their architecture
    alone.write_bytes((out / "model.safetensors").read_bytes())
    assert _predictions(capsys, alone, image) == expected
    one_line_error(capsys, ["predict", image, "--checkpoint", str(out), "--model", "local_vssm_test"],
                   "--model local_vssm_test", "local_vim_test")


def test_eval_rebuilds_directions_from_the_weights(run_dir, capsys, tmp_path):
    out, summary = run_dir
    alone = tmp_path / "w.safetensors"
    alone.write_bytes((out / "model.safetensors").read_bytes())
    assert main(["eval", str(alone), "--no-progress", "--set", "data.limit_val=40", "--json",
                 str(tmp_path / "e.json")]) == 0
    assert json.loads((tmp_path / "e.json").read_text())["acc1"] == pytest.approx(summary["val_acc1"], abs=1e-9)
    capsys.readouterr()
    other = tmp_path / "dirs.json"
    other.write_text(json.dumps({"directions": [["h", "h_flip", "v", "v_flip"]] * 2}))
    one_line_error(capsys, ["eval", str(alone), "--directions", str(other), "--no-progress"],
                   "model.directions", "trained with")
    one_line_error(capsys, ["eval", str(out), "--ema"], "--ema", "no EMA weights")


def test_mismatched_weights_name_a_few_keys(tmp_path, image, capsys):
    import localmamba

    torch.save({"model": localmamba.create_model("local_vssm_test").state_dict()}, tmp_path / "vssm.pth")
    err = one_line_error(capsys, ["predict", image, "--model", "local_vim_test", "--checkpoint",
                                  str(tmp_path / "vssm.pth")], "do not fit model 'local_vim_test'", "missing (")
    assert len(err) < 600


# ----------------------------------------------------------------------------- the 13 user errors (issue 14)

def test_train_output_errors(run_dir, tmp_path, capsys):
    out, _ = run_dir
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    base = ["train", "--model", "local_vim_test", "--epochs", "1", "--no-progress"]
    one_line_error(capsys, [*base, "--output", str(a_file / "sub")], "--output", "choose")
    one_line_error(capsys, [*base, "--output", str(a_file)], "--output", "is a file")
    one_line_error(capsys, [*base, "--output", str(out)], "--output", "already holds a run", "--resume")
    if os.geteuid() == 0:  # root writes anywhere a permission allows; /sys refuses new entries
        unwritable = Path("/sys/localmamba-test-output")
        if not Path("/sys").is_dir():
            pytest.skip("no read-only location to test")
    else:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        unwritable = locked / "run"
    one_line_error(capsys, [*base, "--output", str(unwritable)], "--output", "cannot create or write")


def test_resume_errors(tmp_path, capsys):
    text = tmp_path / "notes.txt"
    text.write_text("not a checkpoint\n")
    weights = tmp_path / "weights.pth"
    torch.save({"head.weight": torch.randn(2, 2)}, weights)
    one_line_error(capsys, ["train", "--resume", str(text)], "--resume", "cannot read")
    one_line_error(capsys, ["train", "--resume", str(weights)], "--resume", "not a localmamba training checkpoint")


def test_search_with_kwargs_the_model_does_not_take(tmp_path, capsys):
    one_line_error(capsys, ["search", "--model", "local_vim_test_search", "--output", str(tmp_path / "s"),
                            "--no-progress", "model.kwargs={not_a_kwarg: 1}"], "model.kwargs")


def test_unreadable_checkpoints(tmp_path, capsys):
    text = tmp_path / "notes.txt"
    text.write_text("this is text, not a checkpoint\n")
    noise = tmp_path / "noise.pt"
    noise.write_bytes(bytes(torch.randint(0, 256, (4096,), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
                            .tolist()))
    weights = tmp_path / "release.pth"
    torch.save({"model": {"head.weight": torch.randn(2, 2)}}, weights)
    one_line_error(capsys, ["eval", str(text)], "CKPT_OR_RUN_DIR", "not a checkpoint this can read")
    one_line_error(capsys, ["export-directions", str(text)], "CKPT_OR_RUN_DIR", "not a checkpoint this can read")
    one_line_error(capsys, ["eval", str(noise)], "CKPT_OR_RUN_DIR", "not a checkpoint this can read")
    one_line_error(capsys, ["eval", str(weights)], "record no architecture", "--model")


def test_unreadable_images(tmp_path, run_dir, capsys):
    out, _ = run_dir
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    noise = tmp_path / "noise.png"
    noise.write_bytes(os.urandom(2048))
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    for path in (text, noise, empty):
        one_line_error(capsys, ["predict", str(path), "--checkpoint", str(out)], f"IMAGE {path}", "Pillow")
    one_line_error(capsys, ["predict", str(empty), "--checkpoint", str(out)], "empty file")


def test_debug_shows_the_traceback(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("x")
    res = subprocess.run([sys.executable, "-m", "localmamba", "eval", str(text), "--debug"], capture_output=True,
                         text=True, timeout=300)
    assert res.returncode != 0 and "Traceback" in res.stderr and "UserError" in res.stderr


# ----------------------------------------------------------------------------- without PyTorch

NO_TORCH = textwrap.dedent("""
    import sys

    class NoTorch:
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, NoTorch())
    what = sys.argv[1]
    if what == "import":
        import localmamba.ops
    else:
        from localmamba.cli import main
        sys.exit(main(sys.argv[2:]))
""")


@pytest.mark.parametrize("argv", [["import"], ["cli", "--help"], ["cli", "info"], ["cli", "train", "--help"]])
def test_without_torch_one_line_says_how_to_install(tmp_path, argv):
    script = tmp_path / "no_torch.py"
    script.write_text(NO_TORCH)
    res = subprocess.run([sys.executable, str(script), *argv], capture_output=True, text=True, timeout=120)
    assert res.returncode != 0
    last = res.stderr.strip().splitlines()[-1]
    assert "PyTorch is required" in last and "pip install torch" in last, res.stderr
    if argv[0] == "cli":
        assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr, res.stderr
