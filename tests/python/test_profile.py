"""localmamba.profile: parameter counts and FLOPs of the released models (SPEC 1.6)."""
import pytest
import torch

import localmamba
from localmamba.models import create_model

# name: (params, honest GFLOPs at 224 (fvcore convention), paper GFLOPs)
RELEASED = {
    "local_vim_tiny": (7_994_152, 2.16, 1.48),
    "local_vim_small": (27_783_784, 6.36, 4.77),
    "local_vssm_tiny": (25_527_160, 5.73, 5.73),
    "local_vssm_small": (49_748_536, 11.37, 11.37),
}


def _meta(name, **kwargs):
    with torch.device("meta"):
        return create_model(name, **kwargs)


@pytest.mark.parametrize("name", sorted(RELEASED))
def test_released_model_profile(name):
    params, honest, paper = RELEASED[name]
    model = _meta(name)
    r = localmamba.profile(model, 224)
    assert r.params == params
    assert r.gflops == pytest.approx(honest, rel=0.02)
    p = localmamba.profile(model, (3, 224, 224), convention="paper")
    assert p.params == params
    assert p.gflops == pytest.approx(paper, rel=0.01)


def test_mid_cls_params_exact():
    assert localmamba.profile(_meta("local_vim_tiny_middle_cls_token"), 224).params == 7_994_536


def test_scan_term_is_counted_per_direction_and_padding():
    """Honest convention: one 9·B·L·D·N + B·D·L per scanned channel block, at the padded length."""
    model = create_model("local_vim_test", depth=1, directions=[["h", "w7"]], backend="reference")
    r = localmamba.profile(model, 32)  # 4x4 grid: h scans 16 tokens, w7 pads to 7x7 = 49 -> Lmax 49
    d_inner, n = model.layers[0].mixer.d_inner, model.layers[0].mixer.d_state
    assert r.scan_flops == 9 * 49 * 2 * d_inner * n + 2 * d_inner * 49


def test_profile_counts_matmuls_like_fvcore():
    lin = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 4, stride=4), torch.nn.Flatten(1), torch.nn.Linear(8 * 8 * 8, 10))
    r = localmamba.profile(lin, (3, 32, 32))
    assert r.flops == 8 * 8 * 8 * 3 * 16 + 512 * 10
    assert r.params == sum(p.numel() for p in lin.parameters())


def test_profile_does_not_change_the_model_and_works_on_cpu():
    model = create_model("local_vssm_test", backend="reference").train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    r = localmamba.profile(model, (48, 64))
    assert model.training and r.input_size == (3, 48, 64) and r.flops > 0
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert "GFLOPs" not in str(r) and "params" in str(r)


def test_profile_bad_arguments():
    with pytest.raises(ValueError, match="convention"):
        localmamba.profile(create_model("local_vssm_test"), 32, convention="thop")
    with pytest.raises(ValueError, match="input_size"):
        localmamba.profile(create_model("local_vssm_test"), (1, 2, 3, 4, 5))
