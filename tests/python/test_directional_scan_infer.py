"""directional_scan_channels_last (forward-only, channels-last) against the float64 reference.

Tolerance rule: tests/python/_tolerance.py's KERNEL table -- the result for inputs of dtype ``dt``
against the float64 reference from the same inputs.
"""
from __future__ import annotations

import pytest
import torch
from _channels_last_inputs import random_channels_last_inputs
from _tolerance import assert_close

from localmamba.ops import (directional_scan_channels_last, directional_selective_scan, middle_cls_index_table,
                            reference, scan_index_table)


def make(index, num_tokens, dtype, *, seq, rank, batch=2, dim=19, dstate=5, gen=0):
    """The shared random inputs (z read through the index) plus per-direction merge weights."""
    i = random_channels_last_inputs(index, num_tokens, dtype, seq=seq, rank=rank, batch=batch, dim=dim, dstate=dstate,
                                    gen=gen)
    g = torch.Generator().manual_seed(gen + 1)
    i["weights"] = (1.0 + 0.2 * torch.randn(index.shape[0], generator=g, dtype=torch.float64)).to(dtype)
    return i


def reference_blc(i, index, num_tokens, seq):
    """The same scan through the reference composition, in its (B, K, D, steps) layout."""
    f64 = {k: None if v is None else v.double() for k, v in i.items()}
    u = f64["u"].permute(0, 1, 3, 2) if seq else f64["u"].transpose(1, 2)
    z = f64["z"].transpose(1, 2)  # (B, D, T), read through the index
    zk = z.unsqueeze(1).expand(-1, index.shape[0], -1, -1)
    z = reference.gather_tokens(zk, index) if seq else zk
    return reference.directional_selective_scan(
        u, f64["delta"].transpose(2, 3), f64["A"], f64["B"].transpose(2, 3), f64["C"].transpose(2, 3), index,
        num_tokens, D=f64["D"], delta_bias=f64["delta_bias"], z=z, weights=f64["weights"],
        dt_proj_weight=f64["dt_proj_weight"], layout="BLC")


CASES = [
    ("token", ("h", "v_flip", "w2", "w3_flip"), (5, 7), 3),
    ("token", ("h_flip", "w7"), (9, 4), 0),
    ("sequence", ("h", "h_flip", "w2_flip"), (3, 5), 2),
    ("token", ("w2",), (1, 1), 1),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("mode,dirs,grid,rank", CASES)
def test_matches_reference(mode, dirs, grid, rank, dtype):
    seq = mode == "sequence"
    index = scan_index_table(dirs, *grid)
    T = grid[0] * grid[1]
    i = make(index, T, dtype, seq=seq, rank=rank)
    y = directional_scan_channels_last(i["u"], i["delta"], i["A"], i["B"], i["C"], index, T, sequence_inputs=seq,
                                       dt_proj_weight=i["dt_proj_weight"], D=i["D"], z=i["z"],
                                       delta_bias=i["delta_bias"], weights=i["weights"])
    assert_close(y, reference_blc(i, index, T, seq), dtype, f"{mode} {dirs}")


def test_middle_class_token_layout_matches_the_training_op():
    """LocalVim with a class token in the middle: the same y as the differentiable native op."""
    index = middle_cls_index_table(("h", "v_flip"), 3, 5, 7)
    T = 16
    i = make(index, T, torch.float32, seq=True, rank=3)
    y = directional_scan_channels_last(i["u"], i["delta"], i["A"], i["B"], i["C"], index, T, sequence_inputs=True,
                                       dt_proj_weight=i["dt_proj_weight"], D=i["D"], z=i["z"],
                                       delta_bias=i["delta_bias"])
    zk = i["z"].transpose(1, 2).unsqueeze(1).expand(-1, 2, -1, -1)
    expected = directional_selective_scan(
        i["u"].permute(0, 1, 3, 2), i["delta"].transpose(2, 3), i["A"], i["B"].transpose(2, 3),
        i["C"].transpose(2, 3), index=index, D=i["D"], delta_bias=i["delta_bias"],
        z=reference.gather_tokens(zk, index), dt_proj_weight=i["dt_proj_weight"], layout="BLC", backend="native")
    assert_close(y, expected, torch.float32, "middle class token")


def test_strided_views_as_the_mixer_passes_them():
    """dt / B / C as views of one (B, T, K, R + 2N) projection; u a (B, T, D) view."""
    index = scan_index_table(("h", "w2_flip", "v"), 5, 6)
    K, T, R, N, dim = 3, 30, 2, 4, 17
    i = make(index, T, torch.float32, seq=False, rank=R, dim=dim, dstate=N)
    proj = torch.cat([i["delta"], i["B"], i["C"]], -1).transpose(1, 2).contiguous()  # (B, T, K, R + 2N)
    dt, Bs, Cs = (proj[..., a:b].transpose(1, 2) for a, b in ((0, R), (R, R + N), (R + N, R + 2 * N)))
    big = torch.randn(2, T, dim + 5)
    big[..., :dim] = i["u"]
    kw = dict(dt_proj_weight=i["dt_proj_weight"], D=i["D"], delta_bias=i["delta_bias"])
    y = directional_scan_channels_last(big[..., :dim], dt, i["A"], Bs, Cs, index, T, **kw)
    y_dense = directional_scan_channels_last(i["u"], i["delta"], i["A"], i["B"], i["C"], index, T, **kw)
    assert torch.equal(y, y_dense)


def test_bad_arguments_raise_clear_errors():
    index = scan_index_table(("h",), 2, 3)
    i = make(index, 6, torch.float32, seq=False, rank=0)
    args = (i["u"], i["delta"], i["A"], i["B"], i["C"], index, 6)
    with pytest.raises(ValueError, match="B must have shape"):
        directional_scan_channels_last(*args[:3], i["B"][:, :, :5], *args[4:])
    with pytest.raises(ValueError, match="no gradient"):
        directional_scan_channels_last(i["u"].clone().requires_grad_(), *args[1:])
    with pytest.raises(ValueError, match="index must be"):
        directional_scan_channels_last(*args[:5], index.int(), 6)
    with pytest.raises(ValueError, match="sequence_inputs"):
        directional_scan_channels_last(*args, sequence_inputs=True)


def test_opcheck():
    from localmamba.ops.directional_scan_infer import _infer_op

    index = scan_index_table(("h", "w2_flip"), 3, 5)
    i = make(index, 15, torch.float32, seq=False, rank=2)
    args = (i["u"], i["delta"], i["dt_proj_weight"], i["A"], i["B"], i["C"], i["D"], i["z"], i["delta_bias"],
            i["weights"], index, 15, True, False)
    torch.library.opcheck(_infer_op, args, test_utils=("test_schema", "test_faketensor"))


def test_ss2d_inference_path_matches_the_training_path():
    """SS2D under no_grad (channels-last scan, one x_proj GEMM) gives the differentiable path's output."""
    from localmamba.nn.mixers import SS2D

    torch.manual_seed(0)
    mixer = SS2D(13, ("h", "w2_flip", "v"), d_state=5).eval()
    x = torch.randn(2, 5, 7, 13)
    y_train = mixer(x)  # grad enabled: the differentiable op
    with torch.no_grad():
        assert mixer._channels_last_scan(x)
        y_infer = mixer(x)
    assert_close(y_infer, y_train.detach(), torch.float32, "SS2D")


def test_training_after_inference_mode_reuses_the_cached_scan_table():
    """A scan table first built under inference_mode is cached; training must still save it for backward."""
    from localmamba.nn.mixers import SS2D

    mixer = SS2D(8, ("h", "w2"), d_state=3)
    x = torch.randn(1, 3, 4, 8)
    with torch.inference_mode():
        mixer(x)
    mixer(x).sum().backward()
    assert mixer.x_proj_weight.grad is not None


@pytest.mark.parametrize("cls_index", [None, 7])
def test_multimamba_inference_path_matches_the_training_path(cls_index):
    """MultiMamba under no_grad (x-only channels-last gather, z read by token) gives the differentiable output."""
    from localmamba.nn.mixers import MultiMamba

    torch.manual_seed(0)
    mixer = MultiMamba(11, ("h", "w2_flip", "v_flip"), d_state=5).eval()
    grid = (3, 5)
    x = torch.randn(2, 15 + (cls_index is not None), 11)
    y_train = mixer(x, grid, cls_index)
    with torch.no_grad():
        y_infer = mixer(x, grid, cls_index)
    assert_close(y_infer, y_train.detach(), torch.float32, "MultiMamba")
