"""scan_conv_channels_last_train (ops/scan_conv_train.py): the scan conv + SiLU with its native backward,
against autograd through the float64 reference (gather, pad, shifted multiply-adds), gradcheck in
float64, both output layouts, no bias, thread-count independence, bad arguments, opcheck.

Tolerance rule: tests/python/_tolerance.py, KERNEL[dtype] (a kernel's output or gradient in dtype
against its reference computed in float64 from the same inputs).
"""
from __future__ import annotations

import pytest
import torch

from _tolerance import GRADCHECK, assert_close
from localmamba import _C
from localmamba.ops import middle_cls_index_table, scan_index_table
from localmamba.ops.mixer_infer import scan_conv_channels_last
from localmamba.ops.scan_conv_train import (_bwd_op, _fwd_op, scan_conv_channels_last_reference,
                                            scan_conv_channels_last_train, scan_conv_train_supported)

DTYPES = [torch.float32, torch.float64]


def random_index(K, L, T, gen):
    """Each direction reads a random subset of the T tokens once each, in random order, with padding
    steps (-1) between: some tokens are read by no direction, some by only one."""
    rows = []
    for _ in range(K):
        steps = torch.full((L,), -1, dtype=torch.int64)
        read = torch.randperm(T, generator=gen)[:min(T, L - L // 4)]
        steps[torch.randperm(L, generator=gen)[:read.numel()]] = read
        rows.append(steps)
    return torch.stack(rows)


def inputs(dtype, index, T, taps, *, dim=37, batch=3, bias=True, gen=0):
    """x as the (B, T, D) channel slice of wider rows (like in_proj's xz[..., :D]), weight (K, taps, D),
    bias (K, D) or None; all random, non-zero, requiring gradients."""
    g = torch.Generator().manual_seed(gen)
    K = index.shape[0]

    def r(*shape, scale=1.0):
        return (scale * torch.randn(*shape, generator=g, dtype=torch.float64)).to(dtype)

    xz = r(batch, T, 2 * dim + 3)
    x = xz[..., 1:dim + 1].requires_grad_()  # a non-leaf would do as well; strided rows either way
    w = r(K, taps, dim, scale=0.6).requires_grad_()
    b = r(K, dim).requires_grad_() if bias else None
    return x, w, b


def grads(fn, leaves, dy):
    out = fn(*leaves)
    return out, torch.autograd.grad(out, [t for t in leaves if t is not None], dy)


CASES = [  # (index builder, tokens, taps, batch, dim)
    (lambda g: scan_index_table(("h", "v_flip", "w2", "w3_flip"), 5, 7), 35, 4, 3, 37),  # windows pad
    (lambda g: scan_index_table(("w7",), 9, 4), 36, 3, 1, 19),
    (lambda g: middle_cls_index_table(("h", "v_flip"), 3, 5, 7), 16, 5, 2, 21),  # a class token
    (lambda g: random_index(3, 23, 17, g), 17, 2, 2, 33),  # unread tokens, padding everywhere
    (lambda g: torch.randint(-1, 9, (2, 13), generator=g), 9, 4, 2, 18),  # tokens read twice by a direction
    (lambda g: scan_index_table(("h_flip",), 1, 1), 1, 1, 2, 5),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", range(len(CASES)))
def test_values_and_gradients_match_the_reference(case, dtype):
    build, T, taps, batch, dim = CASES[case]
    index = build(torch.Generator().manual_seed(case))
    for bias in (True, False):
        for silu in (True, False):
            x, w, b = inputs(dtype, index, T, taps, dim=dim, batch=batch, bias=bias, gen=case)
            ref_leaves = [None if t is None else t.detach().double().requires_grad_() for t in (x, w, b)]
            dy = torch.randn(batch, index.shape[0], index.shape[1], dim, dtype=torch.float64)
            ref, ref_grads = grads(lambda *a: scan_conv_channels_last_reference(a[0], index, a[1], a[2], silu=silu),
                                   ref_leaves, dy)
            for major in (True, False):
                what = f"case {case} bias={bias} silu={silu} direction_major={major}"
                out, got = grads(lambda *a: scan_conv_channels_last_train(a[0], index, a[1], a[2], silu=silu,
                                                                          out_direction_major=major),
                                 (x, w, b), dy.to(dtype))
                assert out.shape == ref.shape
                assert out.transpose(0, 1).is_contiguous() if major else out.is_contiguous(), what
                assert_close(out, ref, dtype, f"u, {what}")
                for name, a, e in zip(("dx", "dweight", "dbias"), got, ref_grads):
                    assert_close(a, e, dtype, f"{name}, {what}")


def test_unread_tokens_get_zero_gradient():
    index = torch.tensor([[2, -1, 0, 4], [4, 0, -1, -1]])  # tokens 1 and 3 are read by no direction
    x, w, b = inputs(torch.float64, index, 5, 3)
    out = scan_conv_channels_last_train(x, index, w, b)
    (dx,) = torch.autograd.grad(out, x, torch.randn_like(out))
    assert torch.equal(dx[:, [1, 3]], torch.zeros_like(dx[:, [1, 3]]))
    assert (dx[:, [0, 2, 4]] != 0).all()


@pytest.mark.parametrize("silu,bias,major", [(True, True, True), (True, False, False), (False, True, False)])
def test_gradcheck_float64(silu, bias, major):
    index = scan_index_table(("h", "w2_flip", "v"), 3, 5)  # w2 on 3 x 5 pads
    x, w, b = inputs(torch.float64, index, 15, 4, dim=6, batch=2, bias=bias)
    leaves = [t for t in (x, w, b) if t is not None]

    def fn(*a):
        return scan_conv_channels_last_train(a[0], index, a[1], a[2] if bias else None, silu=silu,
                                             out_direction_major=major)

    assert torch.autograd.gradcheck(fn, leaves, **GRADCHECK)


def test_forward_is_the_inference_kernel():
    """The forward runs scan_conv_infer unchanged: the same values bit for bit, in either layout."""
    index = middle_cls_index_table(("h", "v_flip", "w2"), 4, 6, 12)
    x, w, b = inputs(torch.float32, index, 25, 4)
    with torch.no_grad():
        expected = scan_conv_channels_last(x.detach(), index, w.detach(), b.detach())
    for major in (True, False):
        assert torch.equal(scan_conv_channels_last_train(x, index, w, b, out_direction_major=major), expected)


def test_conv_equals_the_module_path_bit_for_bit():
    """Without SiLU the op equals the gather + causal_depthwise_conv1d_channels_last path the mixer used,
    bit for bit where both fuse each multiply-add into one FMA (kernels at AVX2 / AVX-512, torch's
    vectorised addcmul); otherwise, and with SiLU (the kernels' exp is not torch's), under the KERNEL
    rule."""
    from localmamba.nn.scan import causal_depthwise_conv1d_channels_last

    index = scan_index_table(("h", "v_flip", "w2", "w3_flip"), 5, 7)  # w3 pads: padding steps read zeros
    x, w, b = inputs(torch.float32, index, 35, 4)
    K, L = index.shape
    both_fma = _C.selective_scan_cpu_isa() != "baseline" and torch.backends.cpu.get_cpu_capability() in (
        "AVX2", "AVX512")
    with torch.no_grad():
        gathered = x[:, index.clamp_min(0).reshape(-1)].view(3, K, L, 37) * (index >= 0).float().view(1, K, L, 1)
        for silu in (False, True):
            module = causal_depthwise_conv1d_channels_last(gathered, w.transpose(1, 2), b, silu=silu)
            fused = scan_conv_channels_last_train(x, index, w, b, silu=silu)
            if silu or not both_fma:
                assert_close(fused, module, torch.float32, f"conv (silu={silu}) against the module path")
            else:
                assert torch.equal(fused, module)


def test_results_do_not_depend_on_the_thread_count():
    index = random_index(4, 70, 61, torch.Generator().manual_seed(5))
    x, w, b = inputs(torch.float32, index, 61, 4, batch=5)
    dy = torch.randn(5, 4, 70, 37)
    old, old_torch = _C.get_num_threads(), torch.get_num_threads()
    results = []
    try:
        for threads in (1, 2, 3):
            _C.set_num_threads(threads)
            torch.set_num_threads(threads)
            results.append(grads(lambda *a: scan_conv_channels_last_train(a[0], index, a[1], a[2]), (x, w, b), dy))
    finally:
        _C.set_num_threads(old)
        torch.set_num_threads(old_torch)
    out, gs = results[0]
    for other_out, other_gs in results[1:]:
        assert torch.equal(out, other_out)
        for name, a, e in zip(("dx", "dweight", "dbias"), other_gs, gs):
            assert torch.equal(a, e), f"{name} depends on the thread count"


def test_work_units_depend_on_the_shapes_only():
    """Main pass: (batch, channel segment), aiming at 64 units; reduction: (direction, tap or bias row)."""
    def units(batch, K, dim, L, taps=4):
        return _C.scan_conv_train_units(_C.ScanConvInferParams(batch=batch, num_directions=K, dim=dim, length=L,
                                                                num_tokens=L, taps=taps))

    assert units(64, 4, 96, 64) == (64, 20, 96)  # digits: one segment per batch element
    assert units(8, 4, 384, 197) == (64, 20, 48)  # LocalVim-T at batch 8: 8 segments of 48 channels
    assert units(1, 4, 384, 197) == (24, 20, 16)
    assert units(3, 2, 37, 10, taps=3) == (9, 8, 16)  # a 5-channel tail segment


def test_empty_batch_gives_zero_parameter_gradients():
    index = scan_index_table(("h", "v"), 2, 3)
    x, w, b = inputs(torch.float32, index, 6, 3, batch=0)
    out = scan_conv_channels_last_train(x, index, w, b)
    assert out.shape == (0, 2, 6, 37)
    dw, db = torch.autograd.grad(out, (w, b), torch.zeros_like(out))
    assert torch.equal(dw, torch.zeros_like(dw)) and torch.equal(db, torch.zeros_like(db))


def test_supported_says_cpu_float32_or_float64_of_one_dtype():
    x = torch.zeros(2, 3, 4)
    assert scan_conv_train_supported(x, torch.zeros(1, 2, 4), None)
    assert scan_conv_train_supported(x.double())
    assert not scan_conv_train_supported(x.half())
    assert not scan_conv_train_supported(x, x.double())


def test_bad_arguments_raise_clear_errors():
    index = scan_index_table(("h", "v"), 2, 3)
    x, w, b = inputs(torch.float32, index, 6, 3)
    call = scan_conv_channels_last_train
    with pytest.raises(ValueError, match="x must be"):
        call(x[0], index, w, b)
    with pytest.raises(ValueError, match="index must be"):
        call(x, index.int(), w, b)
    with pytest.raises(ValueError, match="index must be"):
        call(x, index[0], w, b)
    with pytest.raises(ValueError, match="one dtype"):
        call(x, index, w.double(), b)
    with pytest.raises(ValueError, match="float32 or float64"):
        call(x.half(), index, w.half(), b.half())
    with pytest.raises(ValueError, match="weight must be"):
        call(x, index, w[:1], b)
    with pytest.raises(ValueError, match="taps"):
        call(x, index, torch.randn(2, 17, 37), b)
    with pytest.raises(ValueError, match="bias must be"):
        call(x, index, w, b[:, :5])
    with pytest.raises(ValueError, match=r"index values must be in \[-1, 6\)"):
        call(x, index + 1, w, b)


def test_opcheck():
    index = scan_index_table(("h", "w2_flip"), 3, 5)
    x, w, b = inputs(torch.float32, index, 15, 4)
    for bias in (b, None):
        for major in (True, False):
            torch.library.opcheck(_fwd_op, (x, index, w, bias, True, major))
    torch.library.opcheck(_fwd_op, (x._base, index, w, b, True, True))  # x_prefix: the whole wider rows
    dout = torch.randn(3, 2, index.shape[1], 37)
    torch.library.opcheck(_bwd_op, (x.detach(), index, w.detach(), b.detach(), True, dout),
                          test_utils=("test_schema", "test_faketensor"))


@pytest.mark.parametrize("dtype", DTYPES)
def test_x_prefix_reads_the_first_channels_and_gives_a_full_width_gradient(dtype):
    """x_prefix=True with in_proj's whole (B, T, 2D + 3) rows: the same values and weight / bias gradients
    as the (B, T, D) slice, and x's gradient is the slice's in the first D channels, zeros after."""
    index = scan_index_table(("h", "w2_flip", "v"), 3, 5)
    g = torch.Generator().manual_seed(9)
    xz = torch.randn(2, 15, 2 * 37 + 3, generator=g, dtype=torch.float64).to(dtype).requires_grad_()
    w = torch.randn(3, 4, 37, generator=g, dtype=torch.float64).to(dtype).requires_grad_()
    b = torch.randn(3, 37, generator=g, dtype=torch.float64).to(dtype).requires_grad_()
    dy = torch.randn(2, 3, index.shape[1], 37, generator=g, dtype=torch.float64).to(dtype)
    full, full_grads = grads(lambda *a: scan_conv_channels_last_train(a[0], index, a[1], a[2], x_prefix=True),
                             (xz, w, b), dy)
    sliced, sliced_grads = grads(lambda *a: scan_conv_channels_last_train(a[0][..., :37], index, a[1], a[2]),
                                 (xz, w, b), dy)
    assert torch.equal(full, sliced)
    for a, e in zip(full_grads, sliced_grads):
        assert torch.equal(a, e)
    assert torch.equal(full_grads[0][..., 37:], torch.zeros_like(full_grads[0][..., 37:]))
    with pytest.raises(ValueError, match="weight must be"):
        scan_conv_channels_last_train(xz, index, w, b)  # without x_prefix the channels must match
    with pytest.raises(ValueError, match="fewer than"):
        scan_conv_channels_last_train(xz[..., :30], index, w, b, x_prefix=True)


def test_x_prefix_gradcheck_float64():
    index = scan_index_table(("h", "v_flip"), 2, 3)
    g = torch.Generator().manual_seed(4)
    xz = torch.randn(2, 6, 11, generator=g, dtype=torch.float64).requires_grad_()
    w = torch.randn(2, 3, 5, generator=g, dtype=torch.float64).requires_grad_()
    b = torch.randn(2, 5, generator=g, dtype=torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(lambda *a: scan_conv_channels_last_train(*a[:1], index, *a[1:], x_prefix=True),
                                   (xz, w, b), **GRADCHECK)


def test_compiles_in_one_graph():
    """torch.compile (aot_eager, fullgraph): no graph break (the index's values are not read while
    tracing), the same output and gradients as eager."""
    index = scan_index_table(("h", "v_flip"), 3, 5)
    x, w, b = inputs(torch.float32, index, 15, 4, dim=10, batch=2)
    xz = x._base.detach()[..., :20].clone().requires_grad_()

    def f(xz, w, b):
        return scan_conv_channels_last_train(xz, index, w, b, x_prefix=True).square().sum()

    expected = torch.autograd.grad(f(xz, w, b), (xz, w, b))
    got = torch.autograd.grad(torch.compile(f, backend="aot_eager", fullgraph=True)(xz, w, b), (xz, w, b))
    for a, e in zip(got, expected):
        assert torch.equal(a, e)
