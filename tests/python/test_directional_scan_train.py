"""directional_scan_channels_last_train (the channels-last scan with its native backward) against the
float64 reference's autograd, gradcheck in float64, and thread-count independence.

Tolerance rule: tests/python/_tolerance.py, table KERNEL -- a gradient ``a`` for inputs of dtype
``dt`` against the float64 reference gradient ``e`` from the same inputs,
|a - e| <= ATOL[dt] * max|e| + RTOL[dt] * |e| elementwise.
"""
from __future__ import annotations

import pytest
import torch

from _channels_last_inputs import random_channels_last_inputs as make
from _tolerance import GRADCHECK, assert_close
from localmamba import _C
from localmamba.ops import middle_cls_index_table, reference, scan_index_table
from localmamba.ops.directional_scan_train import directional_scan_channels_last_train

NAMES = ("u", "delta", "dt_proj_weight", "A", "B", "C", "D", "z", "delta_bias")


def run_fast(i, index, T, seq, softplus=True):
    return directional_scan_channels_last_train(
        i["u"], i["delta"], i["A"], i["B"], i["C"], index, T, dt_proj_weight=i["dt_proj_weight"], D=i["D"], z=i["z"],
        delta_bias=i["delta_bias"], delta_softplus=softplus, sequence_inputs=seq)


def run_reference(i, index, T, seq, softplus=True):
    """The same scan through the reference composition (float64 autograd), layout BLC."""
    K = index.shape[0]
    u = i["u"].permute(0, 1, 3, 2) if seq else i["u"].transpose(1, 2)
    z = i["z"]
    if z.dim() == 3:  # (B, T, D) read through the index by every direction
        zk = z.transpose(1, 2).unsqueeze(1).expand(-1, K, -1, -1)
        z = reference.gather_tokens(zk, index) if seq else zk
    else:
        z = z.transpose(2, 3)
    return reference.directional_selective_scan(
        u, i["delta"].transpose(2, 3), i["A"], i["B"].transpose(2, 3), i["C"].transpose(2, 3), index, T, D=i["D"],
        delta_bias=i["delta_bias"], delta_softplus=softplus, z=z, dt_proj_weight=i["dt_proj_weight"], layout="BLC")


def grads(fn, i, dout):
    leaves = {k: v.detach().clone().requires_grad_() for k, v in i.items() if v is not None}
    y = fn({**i, **leaves})
    y.backward(dout)
    return y.detach(), {k: v.grad for k, v in leaves.items()}


CASES = [  # mode, directions, grid, dt rank, z shared by token, class token index
    ("sequence", ("h", "h_flip", "w2", "w2_flip"), (3, 5), 2, True, None),  # LocalVim, w2 pads 3x5 to 4x6
    ("sequence", ("h", "v_flip"), (3, 5), 3, True, 7),  # LocalVim-mid-cls layout
    ("sequence", ("w3_flip",), (4, 5), 0, False, None),
    ("token", ("h", "v_flip", "w2", "w3_flip"), (5, 7), 3, False, None),  # LocalVMamba (u shared)
    ("token", ("h_flip", "w7"), (9, 4), 0, True, None),
    ("token", ("w2",), (1, 1), 1, False, None),
]


def _case(mode, dirs, grid, rank, z_shared, cls, dtype, **kw):
    seq = mode == "sequence"
    T = grid[0] * grid[1] + (cls is not None)
    index = middle_cls_index_table(dirs, *grid, cls) if cls is not None else scan_index_table(dirs, *grid)
    return seq, T, index, make(index, T, dtype, seq=seq, rank=rank, z_shared=z_shared, **kw)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("mode,dirs,grid,rank,z_shared,cls", CASES)
def test_gradients_match_the_float64_reference(mode, dirs, grid, rank, z_shared, cls, dtype):
    seq, T, index, i = _case(mode, dirs, grid, rank, z_shared, cls, dtype)
    dout = torch.randn(i["u"].shape[0], index.shape[0], T, i["u"].shape[-1], generator=torch.Generator().manual_seed(1),
                       dtype=torch.float64)
    y, g = grads(lambda a: run_fast(a, index, T, seq), i, dout.to(dtype))
    i64 = {k: None if v is None else v.double() for k, v in i.items()}
    y_ref, g_ref = grads(lambda a: run_reference(a, index, T, seq), i64, dout)
    assert_close(y, y_ref, dtype, f"{mode} {dirs} y")
    for name in g_ref:
        assert_close(g[name], g_ref[name], dtype, f"{mode} {dirs} d{name}")


def test_gradcheck_float64_without_softplus():
    seq, T, index, i = _case("sequence", ("h", "w2_flip"), (3, 3), 2, True, None, torch.float64, batch=1, dim=3,
                             dstate=2)
    leaves = [i[k].clone().requires_grad_() for k in NAMES]

    def fn(*args):
        return run_fast(dict(zip(NAMES, args)), index, T, seq, softplus=False)

    assert torch.autograd.gradcheck(fn, leaves, **GRADCHECK)


def test_wide_channels_use_several_segments_and_match():
    """dim = 40 at batch 1: 3 channel blocks, split into segments whose dB / dC partials are summed."""
    seq, T, index, i = _case("token", ("h", "v"), (3, 4), 2, False, None, torch.float64, batch=1, dim=40, dstate=3)
    dout = torch.randn(1, 2, T, 40, dtype=torch.float64)
    _, g = grads(lambda a: run_fast(a, index, T, seq), i, dout)
    _, g_ref = grads(lambda a: run_reference(a, index, T, seq), i, dout)
    for name in g_ref:
        assert_close(g[name], g_ref[name], torch.float64, f"d{name}")


def test_deterministic_across_thread_counts():
    seq, T, index, i = _case("sequence", ("h", "h_flip", "w2", "w2_flip"), (5, 5), 3, True, None, torch.float32,
                             batch=3, dim=37)
    dout = torch.randn(3, 4, T, 37)
    old, old_torch = _C.get_num_threads(), torch.get_num_threads()
    try:
        results = []
        for threads in (1, 2, 3):
            _C.set_num_threads(threads)
            torch.set_num_threads(threads)
            results.append(grads(lambda a: run_fast(a, index, T, seq), i, dout)[1])
    finally:
        _C.set_num_threads(old)
        torch.set_num_threads(old_torch)
    for other in results[1:]:
        for name, g in results[0].items():
            assert torch.equal(g, other[name]), f"d{name} depends on the thread count"


def test_work_units_scale_with_channels_at_small_batch():
    """Units are (batch, direction, channel segment): at batch 8 with K = 4 and 384 channels (LocalVim-T)
    there are 64 (48 at batch 1), enough for 16 cores; at batch 64 (digits) one segment per (batch, direction)."""
    from localmamba.ops.directional_scan_infer import infer_params

    def units(batch, K, dim, L=196):
        index = torch.zeros(K, L, dtype=torch.int64)
        u = torch.empty(batch, K, L, dim)
        params, _ = infer_params(u, u, None, torch.empty(K * dim, 16), torch.empty(batch, K, L, 16),
                                 torch.empty(batch, K, L, 16), None, None, None, None, index, L, True, True, u)
        return _C.directional_scan_train_units(params)

    assert units(8, 4, 384) == 64
    assert units(1, 4, 384) == 48  # 24 blocks in 12 segments of 2
    assert units(64, 4, 96) == 256
    assert units(2, 2, 40) == 12  # 3 blocks of 16 channels: one segment each


def test_bad_arguments_raise_clear_errors():
    seq, T, index, i = _case("token", ("h",), (2, 3), 0, False, None, torch.float32)
    with pytest.raises(ValueError, match="B must have shape"):
        directional_scan_channels_last_train(i["u"], i["delta"], i["A"], i["B"][:, :, :5], i["C"], index, T)
    with pytest.raises(ValueError, match="float32 / float64"):
        directional_scan_channels_last_train(i["u"].half(), i["delta"], i["A"], i["B"], i["C"], index, T)


def test_opcheck_backward_op():
    from localmamba.ops.directional_scan_train import _bwd_op

    seq, T, index, i = _case("sequence", ("h", "w2_flip"), (3, 5), 2, True, None, torch.float32)
    dout = torch.randn(2, 2, T, 19)
    args = (i["u"], i["delta"], i["dt_proj_weight"], i["A"], i["B"], i["C"], i["D"], i["z"], i["delta_bias"], index,
            T, True, seq, dout)
    torch.library.opcheck(_bwd_op, args, test_utils=("test_schema", "test_faketensor"))


@pytest.mark.parametrize("mixer_name,cls_index", [("SS2D", None), ("MultiMamba", None), ("MultiMamba", 7)])
def test_mixer_training_path_matches_the_fused_path(mixer_name, cls_index, monkeypatch):
    """A mixer's CPU training path (channels-last scan + native backward) against its fused
    differentiable path (the CUDA path, forced here), float32: output, input and every parameter gradient."""
    import localmamba.nn.mixers as mixers

    torch.manual_seed(0)
    dirs = ("h", "w2_flip", "v", "w3")
    if mixer_name == "SS2D":
        m = mixers.SS2D(13, dirs, d_state=5)
        x = torch.randn(2, 5, 7, 13)
        fn = m
    else:
        m = mixers.MultiMamba(11, dirs, d_state=5)
        x = torch.randn(2, 15 + (cls_index is not None), 11)
        fn = lambda t: m(t, (3, 5), cls_index)  # noqa: E731
    results = []
    for path in ("channels_last", "fused"):
        if path == "fused":
            monkeypatch.setattr(mixers, "channels_last_train_supported", lambda *tensors: False)
        m.zero_grad()
        xl = x.clone().requires_grad_()
        y = fn(xl)
        (y * torch.cos(torch.arange(y.numel(), dtype=y.dtype)).view_as(y)).sum().backward()
        results.append([("y", y.detach()), ("x", xl.grad)] + [(n, p.grad.clone()) for n, p in m.named_parameters()])
    for (name, a), (_, b) in zip(*results):
        assert_close(a, b, torch.float32, f"{mixer_name} {name}")


def _padded_causal_conv(x, weight, bias):
    """The zero-padded formulation (the reference of the channels-last conv)."""
    L, taps = x.shape[2], weight.shape[-1]
    xp = torch.nn.functional.pad(x, (0, 0, taps - 1, 0))
    w = weight.permute(0, 2, 1).unsqueeze(1)
    out = xp[:, :, 0:L] * w[:, :, 0] + (0 if bias is None else bias[:, None])
    for k in range(1, taps):
        out = out + xp[:, :, k:k + L] * w[:, :, k]
    return out


@pytest.mark.parametrize("length,with_bias", [(7, True), (2, True), (5, False)])
def test_causal_conv_silu_matches_the_padded_conv(length, with_bias):
    """The fused conv + SiLU (no padded copy, hand-written backward) against autograd through the padded
    formulation: the conv alone bit for bit, everything within the float64 kernel tolerance, gradcheck."""
    from localmamba.nn.scan import causal_depthwise_conv1d_channels_last

    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 3, length, 5, generator=g, dtype=torch.float64)
    weight = torch.randn(3, 5, 4, generator=g, dtype=torch.float64)
    bias = torch.randn(3, 5, generator=g, dtype=torch.float64) if with_bias else None
    with torch.no_grad():
        conv = causal_depthwise_conv1d_channels_last(x, weight, bias)
        padded = torch.nn.functional.pad(x, (0, 0, 3, 0))
        w = weight.permute(0, 2, 1).unsqueeze(1)
        expected = padded[:, :, 0:length] * w[:, :, 0] if bias is None else torch.addcmul(
            bias[:, None], padded[:, :, 0:length], w[:, :, 0])
        for k in range(1, 4):
            expected.addcmul_(padded[:, :, k:k + length], w[:, :, k])
        assert torch.equal(conv, expected)  # the same multiply-adds in the same order
    leaves = [t.clone().requires_grad_() for t in (x, weight, bias) if t is not None]

    def fused(*args):
        return causal_depthwise_conv1d_channels_last(args[0], args[1], args[2] if with_bias else None, silu=True)

    dy = torch.randn(2, 3, length, 5, generator=g, dtype=torch.float64)
    fused(*leaves).backward(dy)
    got = [t.grad for t in leaves]
    ref_leaves = [t.detach().clone().requires_grad_() for t in leaves]
    torch.nn.functional.silu(_padded_causal_conv(ref_leaves[0], ref_leaves[1],
                                                 ref_leaves[2] if with_bias else None)).backward(dy)
    for a, r, name in zip(got, ref_leaves, ("dx", "dweight", "dbias")):
        assert_close(a, r.grad, torch.float64, name)
    assert torch.autograd.gradcheck(fused, [t.detach().clone().requires_grad_() for t in leaves])
