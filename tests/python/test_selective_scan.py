"""selective_scan: native kernels against the sequential float64 reference.

Tolerance rule (the only one used in this file): for inputs of dtype `dt`, every output
and gradient `a` is compared with the float64 reference `e` computed from the *same*
(already rounded) inputs as

    |a - e| <= ATOL[dt] * max|e| + RTOL[dt] * |e|      (elementwise)

with the table below: fp64 is exact up to summation order, fp32 carries the fp32 state
and accumulation error, fp16/bf16 additionally round y and the gradients once to 16 bits.
"""
from __future__ import annotations

import itertools

import pytest
import torch
from _tolerance import GRADCHECK, assert_close, assert_close_by_rule  # the one tolerance rule (tests/python/_tolerance.py)

import localmamba
from localmamba import _C
from localmamba.ops import reference, selective_scan

NAMES = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias", "initial_state")


def make_inputs(batch, dim, length, dstate, groups, dtype, *, grouped, with_D, with_z, with_bias, with_h0,
                device="cpu"):
    """Inputs as a Mamba model produces them; A, D, delta_bias, initial_state in the state type."""
    sdt = torch.float64 if dtype == torch.float64 else torch.float32
    bc_shape = (batch, groups, dstate, length) if grouped else (batch, dstate, length)
    t = {
        "u": torch.randn(batch, dim, length, dtype=dtype),
        "delta": (0.5 * torch.rand(batch, dim, length)).to(dtype),
        "A": -0.5 * torch.rand(dim, dstate, dtype=sdt) - 0.05,
        "B": torch.randn(bc_shape, dtype=dtype),
        "C": torch.randn(bc_shape, dtype=dtype),
        "D": torch.randn(dim, dtype=sdt) if with_D else None,
        "z": torch.randn(batch, dim, length, dtype=dtype) if with_z else None,
        "delta_bias": (0.5 * torch.rand(dim, dtype=sdt) - 0.25) if with_bias else None,
        "initial_state": torch.randn(batch, dim, dstate, dtype=sdt) if with_h0 else None,
    }
    return {k: (v.to(device) if v is not None else None) for k, v in t.items()}


def run(inputs, softplus, backend, requires_grad, to64=False, return_last_state=True):
    ts = {}
    for k, v in inputs.items():
        if v is None:
            ts[k] = None
            continue
        v = v.detach().clone()
        if to64:
            v = v.double()
        ts[k] = v.requires_grad_(requires_grad)
    y, last = selective_scan(
        ts["u"], ts["delta"], ts["A"], ts["B"], ts["C"], ts["D"], ts["z"], ts["delta_bias"], softplus,
        return_last_state, initial_state=ts["initial_state"], backend=backend,
    ) if return_last_state else (selective_scan(
        ts["u"], ts["delta"], ts["A"], ts["B"], ts["C"], ts["D"], ts["z"], ts["delta_bias"], softplus,
        initial_state=ts["initial_state"], backend=backend), None)
    return y, last, ts


def check_against_reference(inputs, dtype, softplus, what, grads=True):
    y, last, ts = run(inputs, softplus, "native", grads)
    y_ref, last_ref, ts_ref = run(inputs, softplus, "reference", grads, to64=True)
    assert y.dtype == inputs["u"].dtype
    assert_close(y, y_ref, dtype, f"{what} y")
    assert_close(last, last_ref, dtype, f"{what} last_state")
    if not grads:
        return
    gen = torch.Generator().manual_seed(1)
    gy = torch.randn(y_ref.shape, generator=gen, dtype=torch.float64)
    gl = torch.randn(last_ref.shape, generator=gen, dtype=torch.float64)
    torch.autograd.backward([y, last], [gy.to(y.dtype).to(y.device), gl.to(last.dtype).to(y.device)])
    torch.autograd.backward([y_ref, last_ref], [gy.to(y_ref.device), gl.to(y_ref.device)])
    for name in NAMES:
        if ts[name] is not None:
            assert ts[name].grad is not None, f"{what}: no gradient for {name}"
            assert ts[name].grad.dtype == inputs[name].dtype, f"{what}: d{name} dtype"
            assert_close(ts[name].grad, ts_ref[name].grad, dtype, f"{what} d{name}")


# ----------------------------------------------------------------------------- grid
def _grid():
    """(B, D, N, L, G) x options; options and dtypes rotate so every combination of flags
    appears with every dtype, while each shape is run once (keeps the suite fast)."""
    shapes = [
        (b, d, n, l, g)
        for b, d, n, l, g in itertools.product((1, 2), (1, 5, 64), (1, 4, 16, 33), (1, 7, 128), (1, 2))
        if d % g == 0
    ]
    flags = list(itertools.product((False, True), repeat=5))  # grouped, D, z, bias, softplus (+h0 below)
    dtypes = (torch.float32, torch.float16, torch.bfloat16)
    cases = []
    for i, shape in enumerate(shapes):
        grouped, with_D, with_z, with_bias, softplus = flags[(i * 7) % len(flags)]
        with_h0 = i % 3 == 0
        if shape[4] == 2:
            grouped = True
        cases.append((shape, grouped, with_D, with_z, with_bias, softplus, with_h0, dtypes[i % 3]))
    return cases


@pytest.mark.parametrize("case", _grid(), ids=lambda c: "B{}D{}N{}L{}G{}".format(*c[0]) + f"-{str(c[-1])[6:]}")
def test_grid_matches_reference(case):
    (batch, dim, dstate, length, groups), grouped, with_D, with_z, with_bias, softplus, with_h0, dtype = case
    inputs = make_inputs(batch, dim, length, dstate, groups, dtype, grouped=grouped, with_D=with_D, with_z=with_z,
                         with_bias=with_bias, with_h0=with_h0)
    check_against_reference(inputs, dtype, softplus, f"case {case}")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("flags", [(False, False, False, False, False), (True, True, True, True, True)])
def test_all_flags_each_dtype(dtype, flags):
    grouped, with_D, with_z, with_bias, softplus = flags
    inputs = make_inputs(2, 6, 70, 5, 2 if grouped else 1, dtype, grouped=grouped, with_D=with_D, with_z=with_z,
                         with_bias=with_bias, with_h0=with_bias)
    check_against_reference(inputs, dtype, softplus, f"{dtype} {flags}")


@pytest.mark.parametrize(
    "batch,dim,dstate,length,groups,dtype",
    [
        (1, 5, 16, 1000, 1, torch.float32),
        (2, 4, 33, 1000, 2, torch.bfloat16),
        (1, 2, 4, 4099, 1, torch.float32),
        (2, 4, 16, 4099, 2, torch.float16),
        (1, 3, 64, 300, 1, torch.float32),
        (1, 2, 256, 65, 1, torch.float32),
    ],
)
def test_long_sequences_and_large_state(batch, dim, dstate, length, groups, dtype):
    inputs = make_inputs(batch, dim, length, dstate, groups, dtype, grouped=groups > 1, with_D=True, with_z=True,
                         with_bias=True, with_h0=True)
    check_against_reference(inputs, dtype, True, f"long L={length} N={dstate}")


def test_float32_bc_with_half_inputs():
    inputs = make_inputs(2, 4, 50, 8, 1, torch.bfloat16, grouped=False, with_D=True, with_z=True, with_bias=True,
                         with_h0=False)
    inputs["B"] = inputs["B"].float()
    inputs["C"] = inputs["C"].float()
    check_against_reference(inputs, torch.bfloat16, True, "fp32 B/C")


# ----------------------------------------------------------------------------- gradcheck
@pytest.mark.parametrize("grouped,softplus", [(False, True), (True, False)])
def test_gradcheck_float64(grouped, softplus):
    inputs = make_inputs(2, 4, 70, 3, 2, torch.float64, grouped=grouped, with_D=True, with_z=True, with_bias=True,
                         with_h0=True)
    args = [inputs[k].clone().requires_grad_() for k in NAMES]

    def f(u, delta, A, B, C, D, z, delta_bias, h0):
        return selective_scan(u, delta, A, B, C, D, z, delta_bias, softplus, True, initial_state=h0)

    assert torch.autograd.gradcheck(f, args, **GRADCHECK)


def test_no_grad_for_unused_optionals_and_last_state_only():
    inputs = make_inputs(1, 3, 20, 4, 1, torch.float64, grouped=False, with_D=False, with_z=False, with_bias=False,
                         with_h0=False)
    u = inputs["u"].clone().requires_grad_()
    _, last = selective_scan(u, inputs["delta"], inputs["A"], inputs["B"], inputs["C"], return_last_state=True)
    last.sum().backward()  # gradient reaches u through the last state only
    u_ref = inputs["u"].clone().requires_grad_()
    _, last_ref = reference.selective_scan(u_ref, inputs["delta"], inputs["A"], inputs["B"], inputs["C"],
                                           return_last_state=True)
    last_ref.sum().backward()
    assert_close(u.grad, u_ref.grad, torch.float64, "du via last state")


# ----------------------------------------------------------------------------- layout, determinism
def test_non_contiguous_batch_and_channel_strides():
    dtype = torch.float32
    base = make_inputs(2, 8, 130, 6, 2, dtype, grouped=True, with_D=True, with_z=True, with_bias=True, with_h0=True)
    strided = dict(base)
    for k in ("u", "delta", "z"):  # channel stride 2, batch stride from a bigger buffer
        big = torch.zeros(3, 16, 130, dtype=dtype)
        big[::2][:, ::2] = base[k][:, :]
        strided[k] = big[::2, ::2]
        assert not strided[k].is_contiguous()
    for k in ("B", "C"):  # (B, G, N, L) views with permuted batch/group strides
        strided[k] = base[k].transpose(0, 1).contiguous().transpose(0, 1)
        assert not strided[k].is_contiguous()
    strided["A"] = base["A"].t().contiguous().t()
    strided["D"] = torch.stack([base["D"], base["D"]], 1)[:, 0]
    strided["initial_state"] = base["initial_state"].transpose(0, 1).contiguous().transpose(0, 1)
    y1, l1, _ = run(base, True, "native", False)
    y2, l2, _ = run(strided, True, "native", False)
    assert torch.equal(y1, y2) and torch.equal(l1, l2)
    # Not contiguous along L: copied by the op, same result.
    strided["u"] = base["u"].transpose(1, 2).contiguous().transpose(1, 2)
    y3, _, _ = run(strided, True, "native", False)
    assert torch.equal(y1, y3)
    check_against_reference(strided, dtype, True, "strided")


def test_deterministic_across_thread_counts():
    inputs = make_inputs(2, 64, 200, 16, 2, torch.float32, grouped=True, with_D=True, with_z=True, with_bias=True,
                         with_h0=True)
    results = []
    old = _C.get_num_threads()
    try:
        for threads in (1, 2, 3, 1):
            _C.set_num_threads(threads)
            y, last, ts = run(inputs, True, "native", True)
            (y.square().sum() + last.sum()).backward()
            results.append([y, last] + [ts[k].grad for k in NAMES])
    finally:
        _C.set_num_threads(old)
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert torch.equal(a, b)


def test_matches_mamba_argument_order_and_defaults():
    inputs = make_inputs(1, 4, 10, 4, 1, torch.float32, grouped=False, with_D=True, with_z=True, with_bias=True,
                         with_h0=False)
    i = inputs
    positional = selective_scan(i["u"], i["delta"], i["A"], i["B"], i["C"], i["D"], i["z"], i["delta_bias"], True)
    keywords = selective_scan(u=i["u"], delta=i["delta"], A=i["A"], B=i["B"], C=i["C"], D=i["D"], z=i["z"],
                              delta_bias=i["delta_bias"], delta_softplus=True, return_last_state=False)
    assert isinstance(positional, torch.Tensor) and torch.equal(positional, keywords)
    assert localmamba.ops.selective_scan is selective_scan


def test_reference_backend_is_explicit():
    inputs = make_inputs(1, 2, 5, 3, 1, torch.float32, grouped=False, with_D=False, with_z=False, with_bias=False,
                         with_h0=False)
    i = inputs
    y_ref = selective_scan(i["u"], i["delta"], i["A"], i["B"], i["C"], backend="reference")
    expected = reference.selective_scan(i["u"], i["delta"], i["A"], i["B"], i["C"])
    assert torch.equal(y_ref, expected)


# ----------------------------------------------------------------------------- opcheck / compile
def _op_args(dtype=torch.float32):
    i = make_inputs(2, 4, 70, 5, 2, dtype, grouped=True, with_D=True, with_z=True, with_bias=True, with_h0=True)
    return i


def test_opcheck_forward_and_backward():
    from localmamba.ops.selective_scan import _bwd_op, _fwd_op

    i = _op_args()
    args = (i["u"], i["delta"], i["A"].requires_grad_(), i["B"].requires_grad_(), i["C"], i["D"], i["z"],
            i["delta_bias"], i["initial_state"], True)
    torch.library.opcheck(_fwd_op, args)
    args_none = (i["u"], i["delta"], i["A"].detach(), i["B"].detach(), i["C"], None, None, None, None, False)
    torch.library.opcheck(_fwd_op, args_none)
    out, last, saved = _fwd_op(*[a.detach() if isinstance(a, torch.Tensor) else a for a in args])
    bwd_args = (i["u"], i["delta"], i["A"].detach(), i["B"].detach(), i["C"], i["D"], i["z"], i["delta_bias"],
                i["initial_state"], saved, torch.randn_like(out), torch.randn_like(last), True)
    torch.library.opcheck(_bwd_op, bwd_args)


def test_torch_compile_forward_and_backward():
    i = _op_args()
    leaves = {k: v.clone().requires_grad_() for k, v in i.items() if v is not None}

    def f(u, delta, A, B, C, D, z, delta_bias, h0):
        y, last = selective_scan(u, delta, A, B, C, D, z, delta_bias, True, True, initial_state=h0)
        return (y * y).sum() + last.sum()

    compiled = torch.compile(f, backend="aot_eager", fullgraph=True)
    loss = compiled(*[leaves[k] for k in NAMES])
    loss.backward()
    eager = {k: v.clone().requires_grad_() for k, v in i.items() if v is not None}
    loss_e = f(*[eager[k] for k in NAMES])
    loss_e.backward()
    assert_close_by_rule(loss, loss_e, "compile", "loss")
    for k in NAMES:
        assert_close_by_rule(leaves[k].grad, eager[k].grad, "compile", k)


# ----------------------------------------------------------------------------- bad inputs
def _good():
    return make_inputs(2, 4, 9, 3, 2, torch.float32, grouped=True, with_D=True, with_z=True, with_bias=True,
                       with_h0=True)


def _call(**overrides):
    i = _good()
    i.update(overrides)
    return selective_scan(i["u"], i["delta"], i["A"], i["B"], i["C"], i["D"], i["z"], i["delta_bias"],
                          overrides.pop("delta_softplus", True), initial_state=i["initial_state"])


BAD = [
    ("u_not_tensor", dict(u=[[1.0]]), TypeError, "u must be a torch.Tensor"),
    ("u_rank", dict(u=torch.randn(2, 4)), ValueError, "u must have shape"),
    ("u_integer", dict(u=torch.ones(2, 4, 9, dtype=torch.int64)), TypeError, "u must be a real floating-point"),
    ("u_empty", dict(u=torch.randn(2, 4, 0)), ValueError, "u must be non-empty"),
    ("delta_shape", dict(delta=torch.rand(2, 4, 8)), ValueError, "delta must have shape"),
    ("delta_dtype", dict(delta=torch.rand(2, 4, 9, dtype=torch.float64)), TypeError, "delta must have u's dtype"),
    ("A_shape", dict(A=torch.randn(5, 3)), ValueError, "A must have shape (dim, N)"),
    ("A_complex", dict(A=torch.randn(4, 3, dtype=torch.complex64)), TypeError, "A must be a real floating-point"),
    ("B_shape", dict(B=torch.randn(2, 2, 4, 9)), ValueError, "B must have shape"),
    ("B_rank", dict(B=torch.randn(2, 9)), ValueError, "B must have shape (batch, N, L) or"),
    ("C_shape_differs", dict(C=torch.randn(2, 3, 9)), ValueError, "B and C must have the same shape"),
    ("groups_divide", dict(B=torch.randn(2, 3, 3, 9), C=torch.randn(2, 3, 3, 9)), ValueError, "divisible"),
    ("B_dtype", dict(B=torch.randn(2, 2, 3, 9).half(), C=torch.randn(2, 2, 3, 9).half()), TypeError,
     "B and C must have u's dtype"),
    ("BC_dtype_differs", dict(C=torch.randn(2, 2, 3, 9).double()), TypeError, "B and C must have the same dtype"),
    ("N_too_large", dict(A=torch.randn(4, 300), B=torch.randn(2, 2, 300, 9), C=torch.randn(2, 2, 300, 9)),
     ValueError, "must be <= 256"),
    ("D_shape", dict(D=torch.randn(5)), ValueError, "D must have shape (dim,)"),
    ("z_shape", dict(z=torch.randn(2, 4, 10)), ValueError, "z must have shape"),
    ("delta_bias_not_tensor", dict(delta_bias=0.5), TypeError, "delta_bias must be a torch.Tensor or None"),
    ("initial_state_shape", dict(initial_state=torch.randn(2, 4, 4)), ValueError, "initial_state must have shape"),
    ("device_mismatch", dict(A=torch.randn(4, 3, device="meta")), ValueError, "A is on meta but u is on cpu"),
    ("softplus_not_bool", dict(delta_softplus="yes"), TypeError, "delta_softplus must be a bool"),
]


@pytest.mark.parametrize("name,overrides,exc,message", BAD, ids=[b[0] for b in BAD])
def test_bad_inputs_raise_clear_errors(name, overrides, exc, message):
    with pytest.raises(exc, match=_escape(message)):
        _call(**overrides)


def _escape(text):
    import re

    return re.escape(text)


def test_bad_backend_and_native_layer_errors():
    i = _good()
    with pytest.raises(ValueError, match="backend must be one of"):
        selective_scan(i["u"], i["delta"], i["A"], i["B"], i["C"], backend="triton")
    # The native layer names the argument too (stride along L must be 1 there).
    u = i["u"].transpose(1, 2).contiguous().transpose(1, 2)
    with pytest.raises(ValueError, match="u must have stride 1 along its last dimension"):
        _C.SelectiveScanParams(u=_C.TensorArg(u.data_ptr(), list(u.stride())))
    with pytest.raises(ValueError, match="u needs 3 strides, got 2"):
        _C.SelectiveScanParams(u=_C.TensorArg(u.data_ptr(), [36, 1]))
    with pytest.raises(AttributeError):
        _C.SelectiveScanParams(not_a_field=1)
    contiguous = _C.TensorArg(1, [36, 9, 1])
    params = _C.SelectiveScanParams(dtype="float32", bc_dtype="float32", batch=2, dim=4, length=9, dstate=0,
                                    n_groups=1, u=contiguous, delta=contiguous, A=_C.TensorArg(1, [0, 0]),
                                    B=_C.TensorArg(1, [0, 0, 0, 1]), C=_C.TensorArg(1, [0, 0, 0, 1]), out=contiguous)
    assert params.u.strides == [36, 9, 1] and params.D is None and params.batch == 2
    with pytest.raises(ValueError, match="dstate"):
        _C.selective_scan_fwd("cpu", params)


@pytest.mark.parametrize("softplus", [False, True])
def test_infinite_delta_gives_non_finite_outputs_from_that_step(softplus):
    """The documented contract for +Inf in delta (README, Reliability): y is exact before the Inf step and
    non-finite from it on, as in the reference -- the native kernels may give NaN where the reference gives
    +-Inf (0 * Inf in the state's padded SIMD lanes), never a finite value."""
    torch.manual_seed(0)
    i = make_inputs(2, 3, 9, 5, 1, torch.float32, grouped=False, with_D=True, with_z=False, with_bias=True,
                    with_h0=False)
    i["delta"][:, :, 4] = float("inf")
    args = (i["u"], i["delta"], i["A"], i["B"], i["C"], i["D"], None, i["delta_bias"], softplus)
    y = selective_scan(*args)
    expected = selective_scan(*args, backend="reference")
    assert_close(y[..., :4], expected[..., :4].double(), torch.float32, "steps before the Inf")
    assert not expected[..., 4:].isfinite().any()
    assert not y[..., 4:].isfinite().any()


# ----------------------------------------------------------------------------- CUDA
@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("shape", [(2, 5, 16, 7, 1), (2, 64, 16, 1000, 2), (1, 4, 33, 4099, 1), (1, 3, 4, 1, 1)])
def test_cuda_matches_reference(dtype, shape):
    batch, dim, dstate, length, groups = shape
    inputs = make_inputs(batch, dim, length, dstate, groups, dtype, grouped=groups > 1, with_D=True, with_z=True,
                         with_bias=True, with_h0=True, device="cuda")
    check_against_reference(inputs, dtype, True, f"cuda {shape}")


@pytest.mark.cuda
def test_cuda_matches_cpu_and_is_deterministic():
    inputs = make_inputs(2, 64, 16, 600, 2, torch.float32, grouped=True, with_D=True, with_z=True, with_bias=True,
                         with_h0=True)
    y_cpu, l_cpu, _ = run(inputs, True, "native", False)
    cuda_inputs = {k: (v.cuda() if v is not None else None) for k, v in inputs.items()}
    y1, l1, _ = run(cuda_inputs, True, "native", False)
    y2, l2, _ = run(cuda_inputs, True, "native", False)
    assert torch.equal(y1, y2) and torch.equal(l1, l2)
    assert_close(y1, y_cpu.double(), torch.float32, "cuda vs cpu y")


# ----------------------------------------------------------------------------- integration regressions
def test_length_one_accepts_a_size1_time_axis_of_any_stride():
    """(B, 1, D).transpose(1, 2) has a size-1 time axis with stride D: its stride is never used, so
    u and the incoming gradient must be accepted as they are (they used to raise 'must have stride 1')."""
    batch, dim, dstate = 2, 5, 3
    u_src = torch.randn(batch, 1, dim, dtype=torch.float64)
    inputs = make_inputs(batch, dim, 1, dstate, 1, torch.float64, grouped=False, with_D=True, with_z=True,
                         with_bias=True, with_h0=True)
    weight = torch.randn(batch, 1, dim, dtype=torch.float64).transpose(1, 2)  # dout with stride (D, 1, D)
    results = []
    for u in (u_src.transpose(1, 2), u_src.transpose(1, 2).clone(memory_format=torch.contiguous_format)):
        u_in = u.detach().requires_grad_()
        y = selective_scan(u_in, inputs["delta"], inputs["A"], inputs["B"], inputs["C"], inputs["D"], inputs["z"],
                           inputs["delta_bias"], True, initial_state=inputs["initial_state"])
        (y * weight).sum().backward()
        results.append((y.detach(), u_in.grad))
    assert results[0][1].shape == (batch, dim, 1)
    assert_close(results[0][0], results[1][0], torch.float64, "y")
    assert_close(results[0][1], results[1][1], torch.float64, "u grad")


def test_backward_workspace_size_counts_every_buffer():
    """The CUDA backward's scratch memory is allocated by PyTorch from this size: dB, dC (state type,
    (B, G, N, L) each) and the per-(batch, channel) partials of dA, dD, ddelta_bias."""
    batch, dim, length, dstate, groups = 3, 4, 7, 5, 2
    for dtype, size in (("float32", 4), ("bfloat16", 4), ("float64", 8)):
        expected = (2 * batch * groups * dstate * length + batch * dim * (dstate + 2)) * size
        params = _C.SelectiveScanParams(dtype=dtype, batch=batch, dim=dim, length=length, dstate=dstate,
                                        n_groups=groups)
        assert params.bwd_workspace_bytes == expected


@pytest.mark.cuda
def test_cuda_backward_workspace_is_torch_memory():
    batch, dim, length, dstate = 4, 64, 1000, 16
    inputs = make_inputs(batch, dim, length, dstate, 1, torch.float32, grouped=False, with_D=True, with_z=True,
                         with_bias=True, with_h0=False, device="cuda")
    y, _, _ = run(inputs, True, "native", True)
    workspace = _C.SelectiveScanParams(dtype="float32", batch=batch, dim=dim, length=length, dstate=dstate,
                                       n_groups=1).bwd_workspace_bytes
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    y.sum().backward()
    torch.cuda.synchronize()
    assert torch.cuda.max_memory_allocated() - before >= workspace
