"""Fidelity: small configurations run through the official release (tests/data/goldens).

Each golden holds the release's weights (official key names), an input, the logits and the input
gradient. Our equivalent model must load the weights with strict=True and reproduce the logits
(<= 1e-4 relative) and input gradients (<= 1e-3 relative) in fp32 on CPU, on every backend.
"""
import pytest
import torch
from _tolerance import RULES, assert_close_by_rule

from localmamba.models import LocalVim, LocalVMamba

from test_data_files import GOLDEN_CASES as CASES
from test_data_files import golden


def _backends():
    return ["reference", "native"]


def _load(case):
    return golden(case)


def build_equivalent(blob):
    kwargs = blob["config"]["kwargs"]
    cls = LocalVim if blob["family"] == "local_vim" else LocalVMamba
    return cls.from_release_kwargs(**kwargs).float().eval()


def _rel(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


@pytest.mark.parametrize("backend", _backends())
@pytest.mark.parametrize("case", CASES)
def test_golden(case, backend):
    blob = _load(case)
    model = build_equivalent(blob).set_backend(backend)
    assert list(model.state_dict().keys()) == list(blob["state_dict"].keys())
    model.load_state_dict(blob["state_dict"], strict=True)
    x = blob["input"].clone().requires_grad_(True)
    y = model(x)
    (y * blob["grad_output"]).sum().backward()
    assert y.shape == blob["logits"].shape
    assert_close_by_rule(y, blob["logits"], "golden_logits", "logits")
    assert_close_by_rule(x.grad, blob["input_grad"], "golden_grad", "input gradient")


@pytest.mark.parametrize("case", ["vim_plain", "vssm_small_grid"])
def test_golden_detects_tied_a_log(case):
    """Guards the test itself: the release's CPU defect (all A_log of a layer equal) must be caught."""
    blob = _load(case)
    model = build_equivalent(blob).set_backend("reference")
    state = dict(blob["state_dict"])
    for key in [k for k in state if k.endswith("A_log_0")]:
        for i in range(1, 4):
            state[key[:-1] + str(i)] = state[key].clone()
    for key in [k for k in state if k.endswith("A_logs")]:
        n = state[key].shape[0] // 4
        state[key] = state[key][:n].repeat(4, 1)
    model.load_state_dict(state, strict=True)
    with torch.no_grad():
        y = model(blob["input"])
    assert _rel(y, blob["logits"]) > RULES["golden_logits"][1]
