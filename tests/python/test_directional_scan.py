"""directional_selective_scan: the fused K-direction scan against the reference composition.

The reference is ``local_scan -> selective_scan -> local_reverse`` (pure PyTorch, in
``localmamba.ops.reference.directional_selective_scan``; checked below to *be* that composition
of the public ops). Tolerance rule -- the selective scan's (tests/python/test_selective_scan.py):
the native result ``a`` for inputs of dtype ``dt`` is compared with the float64 reference ``e``
computed from the same (already rounded) inputs,

    |a - e| <= ATOL[dt] * max|e| + RTOL[dt] * |e|      (elementwise),

for y and every gradient; float64 agrees to rounding (1e-10).
"""
from __future__ import annotations

import pytest
import torch
from _tolerance import GRADCHECK, assert_close, assert_close_by_rule  # the one tolerance rule (tests/python/_tolerance.py)

from localmamba import _C
from localmamba.ops import (directional_selective_scan, local_reverse, local_scan, middle_cls_index_table, reference,
                            scan_index_table, selective_scan)

NAMES = ("u", "delta", "A", "B", "C", "D", "delta_bias", "z", "weights", "dt_proj_weight")
ALL8 = ("h", "h_flip", "v", "v_flip", "w2", "w2_flip", "w7", "w7_flip")
RELEASED4 = ("h", "v_flip", "w2", "w2_flip")  # a released LocalVMamba-T layer's directions


def make_inputs(index, dtype, *, seq=False, dt_rank=0, batch=2, dim=4, dstate=5, z=False, weights=False,
                device="cpu"):
    K, lmax = index.shape
    tokens = int(index.max()) + 1
    steps = lmax if seq else tokens
    sdt = torch.float64 if dtype == torch.float64 else torch.float32
    t = {
        "u": torch.randn(*((batch, K, dim, lmax) if seq else (batch, dim, tokens)), dtype=dtype),
        "delta": (0.5 * torch.randn(batch, K, dt_rank, steps)).to(dtype) if dt_rank
        else (0.5 * torch.rand(batch, K, dim, steps)).to(dtype),
        "A": -0.5 * torch.rand(K * dim, dstate, dtype=sdt) - 0.05,
        "B": torch.randn(batch, K, dstate, steps, dtype=dtype),
        "C": torch.randn(batch, K, dstate, steps, dtype=dtype),
        "D": torch.randn(K * dim, dtype=sdt),
        "delta_bias": 0.5 * torch.rand(K * dim, dtype=sdt) - 0.25,
        "z": torch.randn(batch, K, dim, steps, dtype=dtype) if z else None,
        "weights": torch.rand(K, dtype=sdt) + 0.5 if weights else None,
        "dt_proj_weight": 0.5 * torch.randn(K, dim, dt_rank, dtype=sdt) if dt_rank else None,
    }
    return {k: (v.to(device) if v is not None else None) for k, v in t.items()}


def run(inputs, index, backend, to64=False, grad=True, **kw):
    leaves = {}
    for k, v in inputs.items():
        if v is None:
            leaves[k] = None
            continue
        v = v.detach().double() if to64 else v.detach()
        leaves[k] = v.requires_grad_(grad)
    y = directional_selective_scan(index=index, backend=backend, **leaves, **kw)
    grads = {}
    if grad:
        g = torch.randn(y.shape, generator=torch.Generator().manual_seed(7), dtype=torch.float64).to(y)
        (y * g).sum().backward()
        grads = {k: v.grad for k, v in leaves.items() if v is not None}
    return y, grads


def check(inputs, index, dtype, what, **kw):
    y, g = run(inputs, index, "native", **kw)
    ye, ge = run(inputs, index, "reference", to64=True, **kw)
    assert y.dtype == inputs["u"].dtype
    assert_close(y, ye, dtype, f"{what} y")
    for k in ge:
        assert_close(g[k], ge[k], dtype, f"{what} d{k}")


# ----------------------------------------------------------------------------- against the composition
GRIDS = [(7, 7), (9, 13), (1, 1)]


@pytest.mark.parametrize("grid", GRIDS, ids=lambda g: f"{g[0]}x{g[1]}")
@pytest.mark.parametrize("dirs", [ALL8, RELEASED4], ids=["K8", "K4"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
def test_token_order_matches_composition(grid, dirs, dtype):
    """LocalVMamba mode: shared u, per-direction delta / B / C, every padding case of SPEC 1.1."""
    index = scan_index_table(dirs, *grid)
    check(make_inputs(index, dtype), index, dtype, f"{dirs} {grid}")


@pytest.mark.parametrize("direction", ALL8 + ("w2_col", "w3_col_flip"))
def test_each_direction_alone(direction):
    index = scan_index_table([direction], 9, 13)
    check(make_inputs(index, torch.float32), index, torch.float32, direction)


@pytest.mark.parametrize("reduce", [None, "sum"])
@pytest.mark.parametrize("layout", ["BCL", "BLC"])
@pytest.mark.parametrize("seq", [False, True], ids=["token", "sequence"])
def test_options(reduce, layout, seq):
    """In-kernel dt projection, z gate, per-direction weights, sum over directions, both layouts."""
    index = scan_index_table(("w2_flip", "v", "w7", "h_flip"), 7, 9)
    inputs = make_inputs(index, torch.float32, seq=seq, dt_rank=3, z=True, weights=True)
    check(inputs, index, torch.float32, f"{reduce} {layout} seq={seq}", reduce=reduce, layout=layout)


def test_float64_to_rounding_with_all_options():
    index = scan_index_table(ALL8, 9, 13)
    inputs = make_inputs(index, torch.float64, dt_rank=2, z=True, weights=True)
    check(inputs, index, torch.float64, "fp64", reduce="sum")


def test_reference_is_local_scan_selective_scan_local_reverse():
    """The reference composition is literally the public ops chained (native and reference backends)."""
    dirs, H, W = ("h", "w7_flip", "v", "w2"), 9, 13
    index = scan_index_table(dirs, H, W)
    i = make_inputs(index, torch.float64)
    K, lmax = index.shape
    bsz, dim = i["u"].shape[:2]
    ref = reference.directional_selective_scan(i["u"], i["delta"], i["A"], i["B"], i["C"], index, H * W, D=i["D"],
                                               delta_bias=i["delta_bias"])
    for backend in ("native", "reference"):
        us = local_scan(i["u"], dirs, H, W, layout="BCL", backend=backend)  # (B, K, D, Lmax)
        per_dir = [local_scan(i[name][:, k], [d], H, W, layout="BCL", backend=backend)[:, 0]
                   for name in ("delta", "B", "C") for k, d in enumerate(dirs)]
        pad = [torch.nn.functional.pad(t, (0, lmax - t.shape[-1])) for t in per_dir]
        delta, Bs, Cs = (torch.stack(pad[j * K:(j + 1) * K], 1) for j in range(3))
        ys = selective_scan(us.reshape(bsz, K * dim, lmax), delta.reshape(bsz, K * dim, lmax), i["A"], Bs, Cs,
                            D=i["D"], delta_bias=i["delta_bias"], delta_softplus=True, backend=backend)
        y = local_reverse(ys.view(bsz, K, dim, lmax), dirs, H, W, layout="BCL", backend=backend)
        assert_close(y, ref, torch.float64, f"composition ({backend})")
    fused = directional_selective_scan(i["u"], i["delta"], i["A"], i["B"], i["C"], dirs, H, W, D=i["D"],
                                       delta_bias=i["delta_bias"])
    assert_close(fused, ref, torch.float64, "fused")


def test_padding_state_decays_like_the_release():
    """A padding step is a real step with u = B = C = 0 and delta = softplus(delta_bias): the state of a
    w2 scan over a 1x1 grid decays three times before it is read again -- nothing is cropped."""
    index = scan_index_table(["w2_flip"], 1, 1)  # visits pad, pad, pad, token 0
    assert index.tolist() == [[-1, -1, -1, 0]]
    i = make_inputs(index, torch.float64, batch=1, dim=1, dstate=1)
    y = directional_selective_scan(index=index, **i)
    x = {k: v for k, v in i.items() if k in ("A", "D", "delta_bias")}
    dl = torch.nn.functional.softplus(i["delta"][0, 0, 0, 0] + x["delta_bias"][0])
    expected = i["C"][0, 0, 0, 0] * dl * i["B"][0, 0, 0, 0] * i["u"][0, 0, 0] + x["D"][0] * i["u"][0, 0, 0]
    assert_close(y.reshape(()), expected, torch.float64, "one step after padding")  # h starts at 0, so the decay multiplies 0


# ----------------------------------------------------------------------------- gradcheck
@pytest.mark.parametrize("seq", [False, True], ids=["token", "sequence"])
@pytest.mark.parametrize("dt_rank", [0, 2])
def test_gradcheck_float64(seq, dt_rank):
    index = scan_index_table(("w2_flip", "v"), 3, 3)
    i = make_inputs(index, torch.float64, seq=seq, dt_rank=dt_rank, batch=1, dim=2, dstate=2, z=True, weights=True)
    names = [k for k in NAMES if i[k] is not None]
    args = tuple(i[k].clone().requires_grad_() for k in names)

    def f(*xs):
        return directional_selective_scan(index=index, **dict(zip(names, xs)))

    assert torch.autograd.gradcheck(f, args, **GRADCHECK)


# ----------------------------------------------------------------------------- middle class token
def test_middle_cls_token_table_matches_insertion():
    """SPEC 1.3: the class token is taken out, re-inserted at the middle of every scanned sequence, taken
    out of every output and put back -- one index table over H*W + 1 tokens."""
    dirs, H, W = ("h", "v_flip", "w2", "w7_flip"), 5, 4
    cls = H * W // 2
    table = middle_cls_index_table(dirs, H, W, cls)
    base = scan_index_table(dirs, H, W)
    K, lmax = base.shape
    assert table.shape == (K, lmax + 1) and (table[:, cls] == cls).all()
    # Gathering through the table == take out, gather, re-insert at cls.
    x = torch.randn(2, 3, H * W + 1, dtype=torch.float64)
    spatial = torch.cat([x[..., :cls], x[..., cls + 1:]], -1)
    seqs = reference.gather_tokens(spatial, base)
    expected = torch.cat([seqs[..., :cls], x[:, None, :, cls:cls + 1].expand(2, K, 3, 1), seqs[..., cls:]], -1)
    assert_close_by_rule(reference.gather_tokens(x, table), expected, "exact")
    # Sequence-order scan with the table == scan, take the cls step out, reverse, put it back.
    i = make_inputs(table, torch.float64, seq=True, dt_rank=2, z=True)
    y = directional_selective_scan(index=table, layout="BLC", **i)  # (B, K, HW+1, D)
    delta = torch.einsum("bkrl,kdr->bkdl", i["delta"], i["dt_proj_weight"])
    bsz, _, dim, L = i["u"].shape
    ys = selective_scan(i["u"].reshape(bsz, K * dim, L), delta.reshape(bsz, K * dim, L), i["A"], i["B"], i["C"],
                        D=i["D"], z=i["z"].reshape(bsz, K * dim, L), delta_bias=i["delta_bias"], delta_softplus=True,
                        backend="reference").view(bsz, K, dim, L)
    cls_y = ys[..., cls]
    rest = torch.cat([ys[..., :cls], ys[..., cls + 1:]], -1)
    rev = local_reverse(rest, dirs, H, W, layout="BLC", backend="reference")
    expected = torch.cat([rev[:, :, :cls], cls_y.unsqueeze(2), rev[:, :, cls:]], 2)
    assert_close(y, expected, torch.float64, "mid-cls")
    check(i, table, torch.float64, "mid-cls", layout="BLC")
    check(make_inputs(table, torch.float32, seq=True, dt_rank=2, z=True), table, torch.float32, "mid-cls fp32")


# ----------------------------------------------------------------------------- properties
def test_deterministic_across_thread_counts():
    index = scan_index_table(RELEASED4, 9, 13)
    inputs = make_inputs(index, torch.float32, batch=3, dim=8, dt_rank=2, z=True)
    results = []
    old = _C.get_num_threads()
    try:
        for threads in (1, 2, 3):
            _C.set_num_threads(threads)
            y, g = run(inputs, index, "native")
            results.append([y] + [g[k] for k in sorted(g)])
    finally:
        _C.set_num_threads(old)
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert torch.equal(a, b)


def test_strided_inputs_and_directions_by_name():
    """x_dbl slices (LocalVMamba passes dt, B, C as views of one tensor) and names == table."""
    dirs, H, W = ("w7", "h_flip"), 6, 5
    index = scan_index_table(dirs, H, W)
    i = make_inputs(index, torch.float32, dt_rank=3)
    x_dbl = torch.cat([i["delta"], i["B"], i["C"]], 2)
    dt, Bs, Cs = torch.split(x_dbl, [3, 5, 5], dim=2)
    kw = dict(D=i["D"], delta_bias=i["delta_bias"], dt_proj_weight=i["dt_proj_weight"])
    y1 = directional_selective_scan(i["u"], dt, i["A"], Bs, Cs, dirs, H, W, **kw)
    y2 = directional_selective_scan(i["u"], i["delta"], i["A"], i["B"], i["C"], index=index, **kw)
    assert torch.equal(y1, y2)


def test_opcheck_and_compile():
    from localmamba.ops.directional_scan import _fwd_op

    index = scan_index_table(("w2", "v_flip"), 3, 5)
    i = make_inputs(index, torch.float32, dt_rank=2, z=True, weights=True)
    dtw = i["dt_proj_weight"].reshape(-1, 2)
    args = (i["u"], i["delta"].requires_grad_(), dtw, i["A"], i["B"], i["C"], i["D"], i["z"], i["delta_bias"],
            i["weights"], index, 15, True, False, True)
    torch.library.opcheck(_fwd_op, args)

    def f(u, delta, B):
        return directional_selective_scan(u, delta, i["A"], B, i["C"], ("w2", "v_flip"), 3, 5, D=i["D"],
                                          dt_proj_weight=i["dt_proj_weight"], layout="BLC").square().sum()

    leaves = [t.detach().clone().requires_grad_() for t in (i["u"], i["delta"], i["B"])]
    loss = torch.compile(f, backend="aot_eager", fullgraph=True)(*leaves)
    loss.backward()
    eager = [t.detach().clone().requires_grad_() for t in (i["u"], i["delta"], i["B"])]
    f(*eager).backward()
    assert_close_by_rule(loss, f(*[t.detach() for t in eager]), "compile", "loss")
    for a, b in zip(leaves, eager):
        assert_close_by_rule(a.grad, b.grad, "compile", "grad")


# ----------------------------------------------------------------------------- bad inputs
def _call(**over):
    index = scan_index_table(("h", "w2"), 3, 3)
    i = make_inputs(index, torch.float32)
    kw = dict(directions=("h", "w2"), H=3, W=3)
    kw.update(i)
    kw.update(over)
    return directional_selective_scan(**kw)


BAD = [
    ("u not a tensor", dict(u=[1.0]), TypeError, "u must be a torch.Tensor"),
    ("u integer", dict(u=torch.ones(2, 4, 9, dtype=torch.int64)), TypeError, "real floating-point"),
    ("u rank", dict(u=torch.randn(4, 9)), ValueError, "token order or"),
    ("tokens vs grid", dict(H=2), ValueError, "tokens along its last axis"),
    ("both orders", dict(index=torch.zeros(2, 9, dtype=torch.int64)), ValueError, "exactly one"),
    ("no order", dict(directions=None), ValueError, "exactly one"),
    ("bad direction", dict(directions=("h", "diag")), ValueError, "unknown scan direction"),
    ("delta shape", dict(delta=torch.rand(2, 2, 4, 8)), ValueError, "delta must have shape"),
    ("B shape", dict(B=torch.randn(2, 1, 5, 9)), ValueError, "B must have shape"),
    ("A shape", dict(A=-torch.rand(4, 5)), ValueError, r"A must have shape \(K\*D, N\)"),
    ("D shape", dict(D=torch.randn(7)), ValueError, "D must have shape"),
    ("dt weight", dict(dt_proj_weight=torch.randn(2, 3, 2)), ValueError, "dt_proj_weight must have shape"),
    ("reduce", dict(reduce="mean"), ValueError, "reduce must be None or 'sum'"),
    ("layout", dict(layout="BHWC"), ValueError, "layout must be one of"),
    ("weights", dict(weights=torch.ones(3)), ValueError, r"weights must have shape \(K,\)"),
    ("dtype mix", dict(delta=torch.rand(2, 2, 4, 9, dtype=torch.float64)), TypeError, "u's dtype"),
    ("B dtype", dict(B=torch.randn(2, 2, 5, 9, dtype=torch.float64)), TypeError, "B and C must have the same dtype"),
    ("dstate", dict(A=-torch.rand(8, 300), B=torch.randn(2, 2, 300, 9), C=torch.randn(2, 2, 300, 9)), ValueError,
     "N = A.shape"),
    ("softplus flag", dict(delta_softplus="yes"), TypeError, "delta_softplus must be a bool"),
    ("backend", dict(backend="triton"), ValueError, "backend must be one of"),
]


@pytest.mark.parametrize("name,over,exc,message", BAD, ids=[b[0] for b in BAD])
def test_bad_inputs_raise_clear_errors(name, over, exc, message):
    with pytest.raises(exc, match=message):
        _call(**over)


def test_bad_index_tables():
    i = make_inputs(scan_index_table(("h",), 2, 2), torch.float32)
    kw = {k: v for k, v in i.items()}
    for table, message in (
        (torch.tensor([[0, 1, 1, 3]]), "exactly once"),
        (torch.tensor([[0, 1, 2, 7, -1]]), "exactly once"),
        (torch.tensor([[0, 1, 2, -3]]), r"\[-1, 3\)"),
        (torch.tensor([[0.0, 1, 2, 3]]), "int64 tensor"),
    ):
        with pytest.raises(ValueError, match=message):
            directional_selective_scan(index=table, **kw)
    with pytest.raises(ValueError, match="cls_index"):
        middle_cls_index_table(("h",), 2, 2, 9)


@pytest.mark.parametrize("batch,dim", [(0, 4), (2, 0)], ids=["batch0", "dim0"])
@pytest.mark.parametrize("dt_rank", [0, 3], ids=["delta", "low_rank_dt"])
def test_empty_batch_or_dim_gives_zero_gradients(batch, dim, dt_rank):
    """Nothing reaches the output, so every gradient is zero, as the reference's (#14: the native backward
    raised "dout must not be null")."""
    index = scan_index_table(RELEASED4, 3, 5)
    inputs = make_inputs(index, torch.float32, batch=batch, dim=dim, dt_rank=dt_rank, z=True, weights=True)
    y, g = run(inputs, index, "native")
    ye, ge = run(inputs, index, "reference", to64=True)
    assert y.shape == ye.shape and y.numel() == 0
    assert g.keys() == ge.keys()
    for k in ge:
        assert g[k].shape == ge[k].shape and not g[k].any() and not ge[k].any(), k


def test_sequence_order_u_expanded_over_directions():
    """A sequence-order u (B, K, D, Lmax) that is one tensor expanded over K (direction stride 0) is
    accepted and scanned per direction like its copy; its gradient sums the K directions (#14)."""
    index = scan_index_table(RELEASED4, 3, 5)
    inputs = make_inputs(index, torch.float32, seq=True)
    base = inputs["u"][:, :1].clone()
    results = {}
    for backend in ("native", "reference"):
        u = base.clone().requires_grad_(True)
        rest = {k: v.detach().clone().requires_grad_(True) for k, v in inputs.items() if k != "u" and v is not None}
        y = directional_selective_scan(u.expand(-1, len(RELEASED4), -1, -1), index=index, backend=backend, **rest)
        (y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum().backward()
        results[backend] = (y.detach(), u.grad)
    assert_close(results["native"][0], results["reference"][0].double(), torch.float32, "expanded u: y")
    assert_close(results["native"][1], results["reference"][1].double(), torch.float32, "expanded u: du")


def test_native_checks_back_the_python_ones():
    row = _C.TensorArg(8, [4, 4, 4, 1])
    params = _C.DirectionalScanParams(
        dtype="float32", bc_dtype="float32", batch=1, num_directions=1, dim=1, length=4, num_tokens=4, dstate=1,
        delta_softplus=True, index=0, u=_C.TensorArg(8, [4, 0, 4, 1]), delta=row, A=_C.TensorArg(8, [1, 1]), B=row,
        C=row, out=row,
    )
    with pytest.raises(ValueError, match="index"):
        _C.directional_scan_fwd("cpu", params)
    with pytest.raises(ValueError, match="out needs 4 strides, got 3"):
        params.out = _C.TensorArg(8, [4, 4, 1])
    infer = _C.DirectionalScanInferParams(u=_C.TensorArg(8, [4, 0, 4, 1]), u_by_token=False)
    assert infer.u.strides == [4, 0, 4, 1] and not infer.u_by_token and infer.B_by_token
    with pytest.raises(ValueError, match="directional_scan_infer: B must have stride 1 along its last dimension"):
        infer.B = _C.TensorArg(8, [4, 4, 1, 2])


# ----------------------------------------------------------------------------- CUDA
@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("seq", [False, True], ids=["token", "sequence"])
def test_cuda_matches_reference(dtype, seq):
    index = scan_index_table(ALL8, 9, 13)
    i = make_inputs(index, dtype, seq=seq, dt_rank=3, z=True, weights=True)
    y, g = run({k: (v.cuda() if v is not None else None) for k, v in i.items()}, index.cuda(), "native")
    ye, ge = run(i, index, "reference", to64=True)
    assert_close(y, ye, dtype, "cuda y")
    for k in ge:
        assert_close(g[k], ge[k], dtype, f"cuda d{k}")


@pytest.mark.cuda
def test_cuda_large_grid_and_reduce():
    index = scan_index_table(RELEASED4, 56, 56)
    i = make_inputs(index, torch.float32, batch=2, dim=16, dstate=16, dt_rank=4)
    y, g = run({k: (v.cuda() if v is not None else None) for k, v in i.items()}, index.cuda(), "native",
               reduce="sum", layout="BLC")
    yc, gc = run(i, index, "native", reduce="sum", layout="BLC")
    assert_close(y, yc.double(), torch.float32, "cuda vs cpu y")
    for k in gc:
        assert_close(g[k], gc[k].double(), torch.float32, f"cuda vs cpu d{k}")


@pytest.mark.parametrize("backend", ["native", "reference"])
@pytest.mark.parametrize("bad, message", [
    (torch.tensor([[0, 1, 2]], dtype=torch.int32), "int64 tensor"),
    (torch.tensor([0, 1, 2]), r"int64 tensor \(K, L\)"),
    (torch.tensor([[0, 1, 6]]), r"\[-1, 6\)"),
    (torch.tensor([[0, -2, 1]]), r"\[-1, 6\)"),
    (torch.tensor([[0, 1, 2], [3, 1, 3]]), "row 1 visits a token more than once"),
])
def test_gather_sequences_rejects_bad_index_tables(backend, bad, message):
    from localmamba.ops import gather_sequences

    with pytest.raises(ValueError, match=message):
        gather_sequences(torch.randn(2, 6, 3), bad, backend=backend)


def test_gather_sequences_reads_a_non_contiguous_table_as_its_values():
    from localmamba.ops import gather_sequences

    table = torch.tensor([[0, 3], [1, 4], [2, -1]]).t()  # (2, 3), not contiguous
    x = torch.randn(1, 5, 2, dtype=torch.float64)
    y = gather_sequences(x, table)
    assert_close_by_rule(y, gather_sequences(x, table.contiguous(), backend="reference"), "exact")


@pytest.mark.cuda
def test_gather_sequences_moves_a_host_table_to_the_device():
    from localmamba.ops import gather_sequences

    table = scan_index_table(ALL8, 5, 7)
    x = torch.randn(2, 35, 4, dtype=torch.float64)
    xc = x.cuda().requires_grad_()
    y = gather_sequences(xc, table.clone())  # host table, no trust marker: validated and moved
    y.sum().backward()
    assert_close_by_rule(y.cpu(), gather_sequences(x, table), "exact")
    assert_close_by_rule(xc.grad.cpu(), torch.full_like(x, float(table.shape[0])), "exact")


# ----------------------------------------------------------------------------- the two mixers
def test_gather_sequences_native_equals_reference_with_gradients():
    from localmamba.ops import gather_sequences

    for table in (scan_index_table(ALL8, 9, 13), middle_cls_index_table(RELEASED4, 5, 4, 10)):
        tokens = int(table.max()) + 1
        x = torch.randn(2, tokens, 6, dtype=torch.float64)
        outs = []
        for backend in ("native", "reference"):
            xl = x.clone().requires_grad_()
            y = gather_sequences(xl, table, backend=backend)
            (y * torch.arange(y.numel(), dtype=y.dtype).view_as(y).sin()).sum().backward()
            outs.append((y, xl.grad))
        assert_close_by_rule(outs[0][0], outs[1][0], "exact")
        assert_close(outs[0][1], outs[1][1], torch.float64, "gather grad")


def _old_multimamba_forward(m, hidden_states, grid_size, cls_index=None, state_cast=lambda t: t.float()):
    """The LocalVim mixer as composed before the fused op: local_scan, class-token cat, grouped conv,
    one selective scan, class-token cut, local_reverse (reference backend throughout). state_cast:
    applied to A, D and delta_bias, as the fused op's caller does (float32); the channels-last path
    keeps them in the model's dtype."""
    import torch.nn.functional as F

    from localmamba.nn.scan import causal_depthwise_conv1d

    H, W = grid_size
    B = hidden_states.shape[0]
    K, Di, N, R = m.num_directions, m.d_inner, m.d_state, m.dt_rank
    dirs = m.directions
    xz = m.in_proj(hidden_states)
    if cls_index is not None:
        cls_xz = xz[:, cls_index]
        xz = torch.cat([xz[:, :cls_index], xz[:, cls_index + 1:]], dim=1)
    seqs = local_scan(xz, dirs, H, W, layout="BLC", backend="reference")
    if cls_index is not None:
        cls_col = cls_xz[:, None, :, None].expand(B, K, 2 * Di, 1)
        seqs = torch.cat([seqs[..., :cls_index], cls_col, seqs[..., cls_index:]], dim=-1)
    L = seqs.shape[-1]
    x, z = seqs[:, :, :Di], seqs[:, :, Di:]
    conv_w = m._stacked_module("conv1d", "weight").reshape(K * Di, m.d_conv)
    conv_b = m._stacked_module("conv1d", "bias").reshape(K * Di)
    x = F.silu(causal_depthwise_conv1d(x.reshape(B, K * Di, L), conv_w, conv_b)).view(B, K, Di, L)
    x_dbl = torch.einsum("bkdl,kcd->bkcl", x, m._stacked_module("x_proj", "weight"))
    dt, Bs, Cs = torch.split(x_dbl, [R, N, N], dim=2)
    delta = torch.einsum("bkrl,kdr->bkdl", dt, m._stacked_module("dt_proj", "weight"))
    A = -torch.exp(state_cast(m._stacked("A_log"))).reshape(K * Di, N)
    y = selective_scan(x.reshape(B, K * Di, L), delta.reshape(B, K * Di, L), A, Bs.contiguous(), Cs.contiguous(),
                       D=state_cast(m._stacked("D").reshape(K * Di)), z=z.reshape(B, K * Di, L),
                       delta_bias=state_cast(m._stacked_module("dt_proj", "bias").reshape(K * Di)), delta_softplus=True,
                       backend="reference").view(B, K, Di, L)
    if cls_index is not None:
        cls_y = y[..., cls_index]
        y = torch.cat([y[..., :cls_index], y[..., cls_index + 1:]], dim=-1)
    ys = local_reverse(y.contiguous(), dirs, H, W, layout="BLC", backend="reference")
    if cls_index is not None:
        ys = torch.cat([ys[:, :, :cls_index], cls_y.unsqueeze(2), ys[:, :, cls_index:]], dim=2)
    return m.out_proj(m.multi_scan.merge(m.attn(ys)))


def _force_fused_path(monkeypatch):
    """The mixers' fused differentiable op (the CUDA path) on the CPU, instead of the channels-last scan."""
    import localmamba.nn.mixers as mixers

    monkeypatch.setattr(mixers, "channels_last_train_supported", lambda *tensors: False)


@pytest.mark.parametrize("path", ["fused", "channels_last"])
@pytest.mark.parametrize("cls_index", [None, 10], ids=["plain", "mid-cls"])
@pytest.mark.parametrize("grid", [(5, 4), (9, 13)], ids=["5x4", "9x13"])
def test_local_vim_mixer_fused_matches_old_composition(cls_index, grid, path, monkeypatch):
    """SPEC 1.3 LocalVim path: one gather of xz (class token included), conv1d for all K, one scan for
    all K with the reverse fused into its store -- equal to the old composition, gradients included.
    Also the CPU channels-last path (x-only gather, the scan with its channels-last backward)."""
    from localmamba.nn.mixers import MultiMamba

    if path == "fused":
        _force_fused_path(monkeypatch)
    cast = (lambda t: t.float()) if path == "fused" else (lambda t: t)
    H, W = grid
    cls_index = None if cls_index is None else H * W // 2
    m = MultiMamba(16, ("h", "v_flip", "w2", "w7_flip"), d_state=4, backend="native").double()
    x = torch.randn(2, H * W + (cls_index is not None), 16, dtype=torch.float64)
    grads = []
    for fn in (lambda t: m(t, (H, W), cls_index),
               lambda t: _old_multimamba_forward(m, t, (H, W), cls_index, state_cast=cast)):
        m.zero_grad()
        xl = x.clone().requires_grad_()
        y = fn(xl)
        (y * torch.cos(torch.arange(y.numel(), dtype=y.dtype)).view_as(y)).sum().backward()
        grads.append([y, xl.grad] + [p.grad.clone() for p in m.parameters()])
    for a, b in zip(*grads):
        assert_close(a, b, torch.float64, "fused against the composition")


def test_ss2d_fused_matches_old_composition_and_saves_less(monkeypatch):
    """LocalVMamba SS2D: fused forward_core == local_scan -> selective_scan -> local_reverse (7x7 with w2
    pads every direction to 64 steps), and autograd keeps no (B, K, D, Lmax) reordered copy."""
    import importlib.util
    import os

    _force_fused_path(monkeypatch)

    spec = importlib.util.spec_from_file_location(
        "bench_directional_scan", os.path.join(os.path.dirname(__file__), "..", "..", "bench", "directional_scan.py"))
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    from localmamba.nn.mixers import SS2D

    dirs = ("h_flip", "v_flip", "w2_flip", "w7")
    torch.manual_seed(0)
    fused = SS2D(12, dirs, d_state=4, backend="native").double()
    old = bench.CompositionSS2D(12, dirs, d_state=4, backend="native").double()
    old.load_state_dict(fused.state_dict())
    x = torch.randn(2, 7, 7, 12, dtype=torch.float64)
    results, saved = [], []
    for m in (fused, old):
        xl = x.clone().requires_grad_()
        sizes = []

        def pack(t):
            sizes.append(t.numel() * t.element_size())
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            y = m(xl)
        (y * torch.sin(torch.arange(y.numel(), dtype=y.dtype)).view_as(y)).sum().backward()
        results.append([y, xl.grad] + [p.grad for p in m.parameters()])
        saved.append(sizes)
    for a, b in zip(*results):
        assert_close(a, b, torch.float64, "fused against the composition")
    copy = 2 * 4 * (2 * 12) * 64 * 8  # one (B, K, D, Lmax) float64 tensor
    assert copy not in saved[0] and copy in saved[1]


def test_gated_sum_equals_scattn_then_sum():
    """SS2D's memory-lean channel gate + sum == SCAttn module then sum over directions, all gradients."""
    from localmamba.nn.layers import SCAttn
    from localmamba.nn.mixers import _gated_sum

    attn = SCAttn(16).double()
    for p in attn.parameters():
        p.data.normal_()
    y = torch.randn(2, 4, 9, 16, dtype=torch.float64)
    g = torch.randn(2, 9, 16, dtype=torch.float64)
    results = []
    for fn in (lambda t: attn(t).sum(1), lambda t: _gated_sum(t, attn)):
        attn.zero_grad()
        yl = y.clone().requires_grad_()
        out = fn(yl)
        (out * g).sum().backward()
        results.append([out, yl.grad] + [p.grad.clone() for p in attn.parameters()])
    for a, b in zip(*results):
        assert_close(a, b, torch.float64, "fused gated sum")
