"""gated_sum_channels_last_train (ops/gated_sum_train.py): SCAttn's gated sum over the directions with
native forward / backward passes, against autograd through the float64 module-path reference,
gradcheck in float64, thread-count independence, both mixers' training paths, bad arguments, opcheck.

Tolerance rule: tests/python/_tolerance.py, KERNEL[dtype] (a kernel's output or gradient in dtype
against its reference computed in float64 from the same inputs).
"""
from __future__ import annotations

import pytest
import torch

from _tolerance import GRADCHECK, assert_close
from localmamba import _C
from localmamba.nn.layers import SCAttn
from localmamba.ops.gated_sum_train import (_bwd_y_op, _gate_grad_op, gated_sum_channels_last_train,
                                            gated_sum_reference)

NAMES = ("y", "norm_weight", "norm_bias", "reduce_weight", "reduce_bias", "select_weight", "select_bias")


def inputs(dtype, B, K, T, C, R, gen=0, y_offset=0.3):
    """y with a per-row offset and scale (so the LayerNorm matters) and random gate parameters."""
    g = torch.Generator().manual_seed(gen)

    def r(*shape, scale=1.0):
        return (scale * torch.randn(*shape, generator=g, dtype=torch.float64)).to(dtype)

    y = r(B, K, T, C) * (1 + r(B, K, T, 1).abs()) + y_offset
    params = [1 + r(C, scale=0.3), r(C, scale=0.3), r(R, C, scale=0.5), r(R, scale=0.3), r(C, R, scale=0.5),
              r(C, scale=0.3)]
    return [t.requires_grad_() for t in [y] + params]


def grads(fn, leaves, dout):
    out = fn(*leaves)
    return [out] + list(torch.autograd.grad(out, leaves, dout))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(3, 4, 23, 37, 4), (1, 1, 1, 16, 2), (2, 2, 65, 96, 12), (2, 3, 40, 5, 1)])
def test_values_and_gradients_match_the_float64_reference(dtype, shape):
    B, K, T, C, R = shape
    leaves = inputs(dtype, B, K, T, C, R)
    dout = torch.randn(B, T, C, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    got = grads(gated_sum_channels_last_train, leaves, dout.to(dtype))
    ref = grads(gated_sum_reference, [t.detach().double().requires_grad_() for t in leaves], dout)
    for name, a, e in zip(("out",) + NAMES, got, ref):
        assert a.dtype == dtype
        assert_close(a, e, dtype, name)


def test_gradcheck_float64():
    leaves = inputs(torch.float64, 2, 2, 5, 7, 3)
    assert torch.autograd.gradcheck(gated_sum_channels_last_train, leaves, **GRADCHECK)


def test_matches_the_module_path_of_scattn():
    attn = SCAttn(40)
    y = torch.randn(2, 3, 17, 40, dtype=torch.float64)
    attn = attn.double()
    with torch.no_grad():
        for p in attn.parameters():
            p.normal_(0, 0.4)
    params = [attn.norm.weight, attn.norm.bias, attn.global_reduce.weight, attn.global_reduce.bias,
              attn.channel_select.weight, attn.channel_select.bias]
    assert_close(gated_sum_channels_last_train(y, *params, eps=attn.norm.eps), attn(y).sum(1), torch.float64, "out")


def test_results_do_not_depend_on_the_thread_count():
    """The native passes' thread count (the gate MLP's small GEMMs are PyTorch's, on its own threads)."""
    leaves = inputs(torch.float32, 5, 4, 70, 37, 4)
    dout = torch.randn(5, 70, 37)
    old = _C.get_num_threads()
    results = []
    try:
        for threads in (1, 2, 3):
            _C.set_num_threads(threads)
            results.append(grads(gated_sum_channels_last_train, leaves, dout))
    finally:
        _C.set_num_threads(old)
    for other in results[1:]:
        for name, a, e in zip(("out",) + NAMES, other, results[0]):
            assert torch.equal(a, e), f"{name} depends on the thread count"


def test_work_units_depend_on_the_shapes_only():
    params = _C.GatedSumTrainParams(batch=64, num_directions=4, dim=96, num_tokens=64)
    assert _C.gated_sum_train_units(params) == 64 * 4 * 2
    assert _C.gated_sum_train_workspace_elements(params) == 64 * 4 * 2 * 96


@pytest.mark.parametrize("bad, match", [
    (lambda a: [a[0][0]] + a[1:], r"y must be \(B, K, T, C\)"),
    (lambda a: [a[0][:, :, :0]] + a[1:], "at least one token"),
    (lambda a: a[:1] + [a[1][:-1]] + a[2:], "norm_weight must have shape"),
    (lambda a: a[:3] + [a[3].t()] + a[4:], "reduce_weight must have shape"),
    (lambda a: a[:5] + [a[5][:, :1]] + a[6:], "select_weight must have shape"),
    (lambda a: [a[0].double()] + a[1:], "one dtype"),
    (lambda a: [a[0].half()] + [t.half() for t in a[1:]], "float32 or float64"),
    (lambda a: a[:1] + ["w"] + a[2:], "must be a tensor"),
])
def test_bad_arguments_raise_clear_errors(bad, match):
    args = [t.detach() for t in inputs(torch.float32, 2, 2, 5, 8, 2)]
    with pytest.raises(ValueError, match=match):
        gated_sum_channels_last_train(*bad(args))
    with pytest.raises(ValueError, match="eps must be >= 0"):
        gated_sum_channels_last_train(*args, eps=-1.0)


def test_opcheck_backward_ops():
    y = torch.randn(2, 3, 9, 20)
    dout = torch.randn(2, 9, 20)
    torch.library.opcheck(_gate_grad_op, (y, dout))
    torch.library.opcheck(_bwd_y_op, (y, dout, torch.rand(2, 3, 20), torch.randn(2, 3, 20), 1e-5))


def test_both_mixers_train_through_it_and_match_the_module_path():
    """A fixed-architecture mixer's CPU training path uses the native gated sum; its gradients equal
    the reference backend's (module path) within the whole-model rule."""
    from localmamba.nn.mixers import SS2D, MultiMamba

    torch.manual_seed(0)
    for mixer, x in ((MultiMamba(24, ["h", "w2_flip"]), torch.randn(2, 16, 24)),
                     (SS2D(16, ["h", "v_flip"]), torch.randn(2, 4, 4, 16))):
        args = (x, (4, 4)) if isinstance(mixer, MultiMamba) else (x,)
        outs = []
        for backend in ("native", "reference"):
            mixer.backend = backend
            mixer.zero_grad()
            out = mixer(*args)
            out.square().sum().backward()
            outs.append([out.detach()] + [p.grad.clone() for p in mixer.parameters()])
        for a, e in zip(*outs):
            assert torch.allclose(a, e, rtol=1e-4, atol=1e-5)
