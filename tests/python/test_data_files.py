"""The reference data the tests need lives in tests/data (see its README): loaders that fail,
never skip, when a file is missing, and a check that every file is present and readable."""
import functools
import gzip
import json
import os

import pytest
import torch

DATA_DIR = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "data"))
GOLDEN_CASES = ["vim_plain", "vim_mid_cls", "vim_search", "vssm_small_grid", "vssm_odd", "vssm_search"]
MANIFEST_FILE = os.path.join(DATA_DIR, "official_state_dicts.json.gz")


def _require(path: str) -> str:
    if not os.path.isfile(path):
        pytest.fail(f"test data {path} is missing: it is part of the repository (see tests/data/README.md)")
    return path


def golden(case: str) -> dict:
    """One golden of the official release (tests/data/goldens/<case>.pt)."""
    return torch.load(_require(os.path.join(DATA_DIR, "goldens", f"{case}.pt")), weights_only=True)


@functools.lru_cache(maxsize=1)
def _manifests() -> dict:
    with gzip.open(_require(MANIFEST_FILE), "rt") as f:
        return json.load(f)


def official_manifest(name: str) -> dict:
    """The release's state-dict manifest of model `name`."""
    manifests = _manifests()
    if name not in manifests:
        pytest.fail(f"no manifest for {name!r} in {MANIFEST_FILE}; it has {sorted(manifests)}")
    return manifests[name]


def test_every_data_file_is_present_and_readable():
    for case in GOLDEN_CASES:
        blob = golden(case)
        assert blob["case"] == case and blob["logits"].shape == (2, 10)
    assert len(_manifests()) == 9
    for name, manifest in _manifests().items():
        assert manifest["model"] == name and manifest["state_dict"]


def test_a_missing_file_fails_instead_of_skipping():
    with pytest.raises(pytest.fail.Exception, match="is missing"):
        _require(os.path.join(DATA_DIR, "no_such_file.pt"))
