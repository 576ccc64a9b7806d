"""The README's digits walkthrough (search -> export-directions -> train -> eval -> predict) runs as
written, in order, in a fresh folder; the training commands are shortened with overrides
appended (one epoch on a subset), everything else is the README's text."""
from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("sklearn")

README = Path(__file__).resolve().parents[2] / "README.md"
MARKER = "On the embedded digits these run as written"
SHORTEN = ["sched.epochs=1", "sched.warmup_epochs=0", "data.limit_train=64", "data.limit_val=40",
           "log.progress=false"]


def walkthrough_commands():
    text = README.read_text(encoding="utf-8")
    assert MARKER in text, "README lost its digits walkthrough"
    block = text[text.index(MARKER):].split("```bash\n", 1)[1].split("```", 1)[0]
    commands = []
    for line in block.splitlines():
        if not line.strip():
            continue
        argv = shlex.split(line, comments=True)
        if argv[0] == "localmamba":
            argv = [sys.executable, "-m", "localmamba", *argv[1:]]
            if argv[3] in ("train", "search"):
                argv += SHORTEN
        elif argv[0] == "python":
            argv[0] = sys.executable
        else:
            raise AssertionError(f"unexpected README command: {line}")
        commands.append(argv)
    return commands


def test_readme_digits_walkthrough_runs_in_order(tmp_path):
    commands = walkthrough_commands()
    assert [c[3] for c in commands if c[1] == "-m"] == ["search", "export-directions", "train", "eval", "eval",
                                                         "predict"]
    for argv in commands:
        res = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=600)
        assert res.returncode == 0, (argv, res.stdout[-1500:], res.stderr[-1500:])
    assert "top-1" in res.stdout or "1. " in res.stdout
    assert (tmp_path / "dirs.json").is_file() and (tmp_path / "runs" / "digits-searched" / "model_ema.safetensors").is_file()
