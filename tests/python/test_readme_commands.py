"""README.md's shell commands run as written, in order, in a copy of the repository.

Every line of README's ```bash blocks is a command (a trailing backslash continues it; blank and
comment-only lines are ignored; a trailing `# comment` is part of the line, as in a shell). They
run one after another in one scratch copy of the repository, with this Python's environment
first on PATH, so later commands see what earlier ones wrote. Each runs as written except:

- SKIP: commands that install packages, need a GPU, need a dataset the repository does not ship,
  or are this test command itself -- each listed with the reason, and left out at collection
  (no skipped test cases: a plain `pytest` skips only CUDA-device tests);
- SHORTEN: long commands run with the listed overrides appended (fewer epochs, data subsets):
  the same command, only smaller;
- the digits walkthrough block (search -> export-directions -> train -> eval -> predict) is run,
  in order and shortened the same way, by test_readme_training.py, so it is left out here too;
- KNOWN_BROKEN: commands that fail today for a reason tracked in an issue; they must keep failing
  (strict xfail), so fixing one means moving it out of this list.

A listed command that no longer appears in README fails the test (the lists follow the README),
and so does an unlisted one that installs packages or names a GPU. When you add a README command:
make it cheap, or add it to SHORTEN, or to SKIP with a reason. Run this file alone with
`pytest -m readme` (about 3-5 minutes on 2 cores).
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
README = REPO_ROOT / "README.md"

# Appended to training commands: one short epoch on a subset of the digits.
SHORT_TRAIN = "sched.epochs=1 sched.warmup_epochs=0 data.limit_train=96 data.limit_val=48 log.progress=false"

SKIP = {
    "pip install .": "installs packages (the tests run against the installed package)",
    'pip install ".[train]" && localmamba train': "installs packages; its `localmamba train` runs below",
    'pip install ".[train]"': "installs packages",
    "bash scripts/test.sh": "the test command itself (it runs this test)",
    "bash scripts/test.sh --install": "installs packages; the test command itself",
    "localmamba train -c imagenet/local_vim_tiny --data-dir /data/imagenet": "needs ImageNet",
    "torchrun --nproc_per_node 8 -m localmamba train -c imagenet/local_vssm_tiny --data-dir /data/imagenet":
        "needs ImageNet and 8 processes",
    "localmamba train --dataset cifar10 --data-dir ~/data --img-size 32 --epochs 100": "needs the CIFAR-10 folders",
    "PYTHON=/path/to/venv/bin/python scripts/dev_install.sh": "installs packages (editable rebuild)",
    "localmamba detect train -c detection/mask_rcnn_local_vssm_tiny_fpn_coco_1x --data-dir data/coco "
    "--pretrained local_vssm_tiny.ckpt": "needs COCO 2017 and a classification checkpoint",
}
# Appended to the dense training commands: two iterations, two validation scenes.
SHORT_DENSE = "sched.iters=2 sched.warmup_iters=1 train.batch_size=2 data.limit_val=2 log.progress=false"
SHORTEN = {
    "localmamba detect train -c detection/embedded_local_vssm --output runs/det": SHORT_DENSE,
    "localmamba segment train -c segmentation/embedded_local_vssm --output runs/seg": SHORT_DENSE,
    "localmamba train": SHORT_TRAIN,
    "localmamba train optim.lr=5e-4 aug.mixup=0.8 train.ema=true train.amp=bf16": SHORT_TRAIN,
    'python bench/ablation.py --epochs 6 "model.kwargs={embed_dim: 32, depth: 2, patch_size: 2}"':
        SHORT_TRAIN.replace("sched.epochs=1 ", "") + " --seeds 0",
}
KNOWN_BROKEN: dict = {}
INSTALLS = re.compile(r"\b(pip3?|conda|apt-get|apt|brew)\s+install\b|dev_install")
NEEDS_GPU = re.compile(r"\bcuda\b|nvidia-smi|gpu_check|--device\s+cuda", re.IGNORECASE)


def readme_commands(text: str) -> list[str]:
    """The commands of every ```bash block, continuation lines joined, trailing comments dropped."""
    commands, in_block, pending = [], False, ""
    for line in text.splitlines():
        if line.strip().startswith("```"):
            in_block = line.strip() == "```bash" and not in_block
            pending = ""
            continue
        if not in_block:
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        command = _strip_comment(pending + line).strip()
        pending = ""
        if command:
            commands.append(command)
    return commands


def _strip_comment(line: str) -> str:
    """Drops a `# comment` outside quotes (what the shell would ignore), keeping the command."""
    quote = None
    for i, char in enumerate(line):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip()
    return line


def _key(command: str) -> str:
    return re.sub(r"\s+", " ", command).strip()


COMMANDS = readme_commands(README.read_text())


def _walkthrough_commands() -> set[str]:
    from test_readme_training import MARKER

    text = README.read_text()
    assert MARKER in text, "README lost its digits walkthrough (test_readme_training.py)"
    block = text[text.index(MARKER):].split("```bash\n", 1)[1].split("```", 1)[0]
    return {_key(c) for c in readme_commands("```bash\n" + block + "```\n")}


WALKTHROUGH = _walkthrough_commands()


def test_lists_match_the_readme():
    present = {_key(c) for c in COMMANDS}
    stale = [c for c in [*SKIP, *SHORTEN, *KNOWN_BROKEN] if _key(c) not in present]
    assert not stale, f"listed in {__file__} but not (or no longer) in README.md: {stale}"
    unlisted = [c for c in COMMANDS if _key(c) not in {_key(s) for s in SKIP} and (INSTALLS.search(c) or NEEDS_GPU.search(c))]
    assert not unlisted, f"README commands that install packages or need a GPU must be listed in SKIP: {unlisted}"


def test_extraction_joins_lines_and_drops_comments():
    text = "```bash\nlocalmamba train \\\n  --epochs 2   # two\n# only a comment\necho '#kept'\n```\n```python\nx = 1\n```\n"
    assert [_key(c) for c in readme_commands(text)] == ["localmamba train --epochs 2", "echo '#kept'"]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A scratch copy of the repository (sources only), where the commands run in order."""
    root = tmp_path_factory.mktemp("readme") / "localmamba"
    ignore = shutil.ignore_patterns(".git", "build", ".venv*", "runs", "__pycache__", "*.so", ".pytest_cache")
    shutil.copytree(REPO_ROOT, root, ignore=ignore)
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return root, env


def _excluded(command: str) -> bool:
    """Listed in SKIP or run by test_readme_training.py: not a test case here (a plain run shows no
    skip for them; test_exclusions_are_listed_with_reasons checks the list against the README)."""
    key = _key(command)
    return key in {_key(c) for c in SKIP} or key in WALKTHROUGH


def test_exclusions_are_listed_with_reasons():
    assert all(isinstance(reason, str) and len(reason) > 5 for reason in SKIP.values()), "every SKIP entry needs a reason"
    present = {_key(c) for c in COMMANDS}
    assert WALKTHROUGH <= present and WALKTHROUGH, "the digits walkthrough commands come from the README"
    overlap = [c for c in SHORTEN if _excluded(c)] + [c for c in KNOWN_BROKEN if _excluded(c)]
    assert not overlap, f"listed to run (SHORTEN / KNOWN_BROKEN) and excluded at once: {overlap}"
    assert any(not _excluded(c) for c in COMMANDS)


def _params():
    params = []
    for i, command in enumerate(COMMANDS):
        if _excluded(command):
            continue
        marks = [pytest.mark.readme]
        key = _key(command)
        if key in {_key(c) for c in KNOWN_BROKEN}:
            reason = next(v for c, v in KNOWN_BROKEN.items() if _key(c) == key)
            marks.append(pytest.mark.xfail(strict=True, reason=reason))
        params.append(pytest.param(i, command, id=f"{i:02d}-{command[:60]}", marks=marks))
    return params


@pytest.mark.parametrize("index, command", _params())
def test_readme_command(workspace, index, command):
    root, env = workspace
    key = _key(command)
    extra = {_key(c): suffix for c, suffix in SHORTEN.items()}.get(key)
    to_run = f"{command} {extra}" if extra else command
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", to_run], cwd=root, env=env, capture_output=True,
                            text=True, timeout=900)
    assert result.returncode == 0, (
        f"README command #{index} failed ({result.returncode}): {to_run}\n--- stdout\n{result.stdout[-4000:]}"
        f"\n--- stderr\n{result.stderr[-4000:]}")
