"""local_scan / local_reverse: native ops against the pure-PyTorch reference (exact: data movement)."""
import itertools

import pytest
import torch
from _tolerance import assert_close_by_rule, assert_close_to_sum
from hypothesis import given, settings
from hypothesis import strategies as st

import localmamba
from localmamba import ops
from localmamba.ops import local_reverse, local_scan, reference, scan_order
from localmamba.ops.scan_table import scan_table

ALL_DIRECTIONS = ["h", "h_flip", "v", "v_flip", "w2", "w2_flip", "w7", "w7_flip", "w3_col", "w2_col_flip"]
GRIDS = [(4, 4), (7, 7), (5, 9), (1, 1), (1, 17), (9, 13)]
WINDOWS = [1, 2, 3, 7]
DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64]
LAYOUTS = ["BCHW", "BCL", "BLC"]


def random_spatial(B, C, H, W, layout, dtype=torch.float32, K=None):
    lead = (B,) if K is None else (B, K)
    x = torch.randn(*lead, C, H, W, dtype=torch.float64)
    x = torch.where(x == 0, torch.ones_like(x), x).to(dtype)  # never zero
    if layout == "BCL":
        return x.flatten(-2)
    if layout == "BLC":
        return x.flatten(-2).transpose(-1, -2).contiguous()
    return x


def test_spec_example_w2_4x4():
    assert scan_order("w2", 4, 4).tolist() == [0, 1, 4, 5, 2, 3, 6, 7, 8, 9, 12, 13, 10, 11, 14, 15]


@pytest.mark.parametrize("H,W", GRIDS)
@pytest.mark.parametrize("direction", ALL_DIRECTIONS + ["w1", "w3", "w5_col"])
def test_scan_order_native_equals_reference(direction, H, W):
    native = scan_order(direction, H, W)
    assert torch.equal(native, reference.scan_order(direction, H, W))
    assert native.numel() == ops.scan_length(direction, H, W) == localmamba._C.scan_length(direction, H, W)
    real = native[native >= 0].sort().values
    assert torch.equal(real, torch.arange(H * W))
    if direction.endswith("_flip"):
        assert torch.equal(native, scan_order(direction[: -len("_flip")], H, W).flip(0))


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("H,W", GRIDS)
@pytest.mark.parametrize("window", WINDOWS)
def test_local_scan_and_reverse_equal_reference(window, H, W, layout):
    directions = ["h", f"w{window}", "v_flip", f"w{window}_flip", "w2_col"]
    x = random_spatial(2, 3, H, W, layout)
    y = local_scan(x, directions, H, W, layout=layout)
    y_ref = local_scan(x, directions, H, W, layout=layout, backend="reference")
    assert y.shape == (2, len(directions), 3, max(ops.scan_length(d, H, W) for d in directions))
    assert torch.equal(y, y_ref)
    for reduce in (None, "sum"):
        r = local_reverse(y, directions, H, W, reduce=reduce, layout=layout)
        r_ref = local_reverse(y, directions, H, W, reduce=reduce, layout=layout, backend="reference")
        if reduce is None:
            assert torch.equal(r, r_ref)
            for k in range(len(directions)):  # gather-then-reverse is the identity
                assert torch.equal(r[:, k], x)
        else:
            assert_close_by_rule(r, r_ref, "fp32_sum")
            assert_close_by_rule(r, x * len(directions), "fp32_sum")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_all_dtypes_forward_and_backward(dtype, layout):
    H, W = 7, 7
    directions = ["h", "h_flip", "v", "v_flip", "w2", "w2_flip", "w7", "w7_flip"]
    x = random_spatial(2, 5, H, W, layout, dtype).requires_grad_(True)
    x_ref = x.detach().clone().requires_grad_(True)
    y = local_scan(x, directions, H, W, layout=layout)
    y_ref = local_scan(x_ref, directions, H, W, layout=layout, backend="reference")
    assert y.dtype == dtype and torch.equal(y, y_ref)
    g = torch.randn_like(y)
    y.backward(g)
    y_ref.backward(g)
    # The gradient sums K contributions per token. Ours accumulates in fp32 and rounds once,
    # so it must sit within one rounding of the exact (fp64) sum.
    x64 = x.detach().double().requires_grad_(True)
    local_scan(x64, directions, H, W, layout=layout, backend="reference").backward(g.double())
    assert_close_to_sum(x.grad, x64.grad, dtype, len(directions), g.abs().max().item(), "x.grad")
    if dtype in (torch.float32, torch.float64):
        assert_close_by_rule(x.grad, x_ref.grad, "fp32_sum")


@pytest.mark.parametrize("reduce", [None, "sum"])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_local_reverse_backward_equals_reference(reduce, layout):
    H, W = 5, 9
    directions = ["w7", "v", "w2_flip"]
    lmax = max(ops.scan_length(d, H, W) for d in directions)
    y = torch.randn(2, 3, 4, lmax, requires_grad=True)
    y_ref = y.detach().clone().requires_grad_(True)
    out = local_reverse(y, directions, H, W, reduce=reduce, layout=layout)
    out_ref = local_reverse(y_ref, directions, H, W, reduce=reduce, layout=layout, backend="reference")
    g = torch.randn_like(out)
    out.backward(g)
    out_ref.backward(g)
    assert torch.equal(y.grad, y_ref.grad)
    # padding positions receive no gradient
    order = scan_order("w7", H, W)
    pad = torch.cat([order, torch.full((lmax - order.numel(),), -1)]) < 0
    assert torch.all(y.grad[:, 0, :, pad] == 0)


def test_non_contiguous_inputs():
    H, W = 6, 5
    directions = ["w2", "v_flip"]
    base = torch.randn(3, H, W, 8)  # channels last in memory
    x = base.permute(0, 3, 1, 2)  # (B, C, H, W) view, not contiguous
    assert not x.is_contiguous()
    assert torch.equal(local_scan(x, directions, H, W), local_scan(x.contiguous(), directions, H, W))
    xs = base.reshape(3, H * W, 8)[:, :, ::2]  # strided channels
    assert torch.equal(
        local_scan(xs, directions, H, W, layout="BLC"),
        local_scan(xs, directions, H, W, layout="BLC", backend="reference"),
    )
    y = local_scan(x, directions, H, W)[:, :, ::2]  # strided channels in y
    assert torch.equal(local_reverse(y, directions, H, W, reduce="sum"), local_reverse(y.contiguous(), directions, H, W, reduce="sum"))


@pytest.mark.parametrize("layout", LAYOUTS)
def test_gradcheck_fp64(layout):
    H, W = 3, 5
    directions = ["w2", "v_flip", "h"]
    x = random_spatial(1, 2, H, W, layout, torch.float64).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: local_scan(t, directions, H, W, layout=layout), (x,))
    y = torch.randn(1, 3, 2, 24, dtype=torch.float64, requires_grad=True)
    for reduce in (None, "sum"):
        assert torch.autograd.gradcheck(lambda t: local_reverse(t, directions, H, W, reduce=reduce, layout=layout), (y,))
    assert torch.autograd.gradgradcheck(lambda t: local_scan(t, directions, H, W, layout=layout), (x,))


def test_opcheck():
    H, W = 5, 7
    x = torch.randn(2, 3, H, W)
    table = scan_table("h,w2,v_flip", H, W)
    tables = (table.index, table.inverse)
    for layout, inp in (("BCHW", x), ("BCL", x.flatten(2)), ("BLC", x.flatten(2).transpose(1, 2).contiguous())):
        torch.library.opcheck(torch.ops.localmamba.local_scan.default, (inp, *tables, H, W, layout, False))
        y = torch.randn(2, 3, 3, 48)
        for reduce_sum in (False, True):
            torch.library.opcheck(torch.ops.localmamba.local_reverse.default, (y, *tables, H, W, layout, reduce_sum))
    per_direction = torch.randn(2, 3, 3, H, W)
    torch.library.opcheck(torch.ops.localmamba.local_scan.default, (per_direction, *tables, H, W, "BCHW", True))


def test_torch_compile_fullgraph():
    H, W = 7, 7
    directions = ["h", "w2", "v_flip", "w7_flip"]

    def layer(x, weight):
        seq = local_scan(x, directions, H, W)
        seq = seq * weight[None, :, None, None]
        return local_reverse(seq, directions, H, W, reduce="sum")

    compiled = torch.compile(layer, fullgraph=True, backend="aot_eager")
    x = torch.randn(2, 4, H, W, requires_grad=True)
    w = torch.randn(4, requires_grad=True)
    out = compiled(x, w)
    expected = layer(x, w)
    assert_close_by_rule(out, expected, "compile")
    out.sum().backward()
    assert x.grad is not None and w.grad is not None


@settings(max_examples=60, deadline=None)
@given(
    H=st.integers(1, 12),
    W=st.integers(1, 12),
    directions=st.lists(
        st.sampled_from(["h", "v", "w1", "w2", "w3", "w5", "w7", "w2_col", "w3_col"]).flatmap(
            lambda d: st.sampled_from([d, d + "_flip"])
        ),
        min_size=1,
        max_size=5,
    ),
    layout=st.sampled_from(LAYOUTS),
)
def test_property_reverse_of_scan_is_identity(H, W, directions, layout):
    x = random_spatial(1, 3, H, W, layout)
    y = local_scan(x, directions, H, W, layout=layout)
    back = local_reverse(y, directions, H, W, layout=layout)
    for k in range(len(directions)):
        assert torch.equal(back[:, k], x)


# ----------------------------------------------------------------------------- bad input
BAD_CASES = [
    ("unknown direction", lambda x: local_scan(x, ["h", "diagonal"], 4, 4), ValueError, "unknown scan direction"),
    ("window 0", lambda x: local_scan(x, ["w0"], 4, 4), ValueError, "window size must be >= 1"),
    ("empty directions", lambda x: local_scan(x, [], 4, 4), ValueError, "at least one"),
    ("directions not a list", lambda x: local_scan(x, 5, 4, 4), TypeError, "directions"),
    ("wrong rank", lambda x: local_scan(x[0], ["h"], 4, 4), ValueError, "x must have shape"),
    ("H*W mismatch", lambda x: local_scan(x, ["h"], 4, 5), ValueError, "H=4, W=5"),
    ("H not int", lambda x: local_scan(x, ["h"], 4.0, 4), TypeError, "H must be an int"),
    ("H negative", lambda x: local_scan(x, ["h"], -4, 4), ValueError, "H must be >= 1"),
    ("integer dtype", lambda x: local_scan(x.long(), ["h"], 4, 4), TypeError, "local_scan: x must be a real floating-point"),
    ("complex dtype", lambda x: local_scan(x.cfloat(), ["h"], 4, 4), TypeError, "x must be a real floating-point"),
    ("reverse integer dtype", lambda x: local_reverse(x[:, None].long(), ["h"], 4, 4), TypeError, "local_reverse: y must be a real"),
    ("non-tensor", lambda x: local_scan(x.tolist(), ["h"], 4, 4), TypeError, "x must be a torch.Tensor"),
    ("empty tensor", lambda x: local_scan(x[:0], ["h"], 4, 4), ValueError, "non-empty"),
    ("bad layout", lambda x: local_scan(x, ["h"], 4, 4, layout="NHWC"), ValueError, "layout must be one of"),
    ("bad backend", lambda x: local_scan(x, ["h"], 4, 4, backend="triton"), ValueError, "backend must be one of"),
    ("reverse K mismatch", lambda x: local_reverse(local_scan(x, ["h", "v"], 4, 4), ["h"], 4, 4), ValueError, "2 sequences"),
    ("reverse length mismatch", lambda x: local_reverse(local_scan(x, ["w3"], 4, 4)[..., :16], ["w3"], 4, 4), ValueError, "Lmax=36"),
    ("reverse bad reduce", lambda x: local_reverse(local_scan(x, ["h"], 4, 4), ["h"], 4, 4, reduce="mean"), ValueError, "reduce must be"),
    ("reverse wrong rank", lambda x: local_reverse(x[0], ["h"], 4, 4), ValueError, "(B, K, C, Lmax)"),
    ("scan_order bad grid", lambda x: scan_order("h", 0, 3), ValueError, "H must be >= 1"),
]


@pytest.mark.parametrize("name,call,error,message", BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_bad_input_raises_clear_error(name, call, error, message):
    x = torch.randn(2, 3, 4, 4)
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)").replace("*", r"\*")):
        call(x)


def test_native_refuses_cuda_cleanly_without_device():
    if localmamba._C.cuda_device_count() > 0:
        pytest.skip("a CUDA device is present")
    with pytest.raises(RuntimeError, match="no CUDA device"):
        localmamba._C.indexed_gather("cuda", localmamba._C.IndexedGatherParams(batch=1, num_directions=1, channels=1,
                                                                                out_length=1, src_length=1))


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_cuda_equals_cpu(dtype, layout):
    H, W = 9, 13
    directions = ["h", "h_flip", "v", "v_flip", "w2", "w2_flip", "w7", "w7_flip"]
    x = random_spatial(2, 5, H, W, layout, dtype)
    xc = x.cuda().requires_grad_(True)
    y = local_scan(xc, directions, H, W, layout=layout)
    assert torch.equal(y.cpu(), local_scan(x, directions, H, W, layout=layout))
    for reduce in (None, "sum"):
        r = local_reverse(y, directions, H, W, reduce=reduce, layout=layout)
        r_cpu = local_reverse(y.cpu(), directions, H, W, reduce=reduce, layout=layout)
        assert_close_by_rule(r.cpu(), r_cpu, "fp32_sum")
    y.sum().backward()
    assert_close_by_rule(xc.grad.cpu(), torch.full_like(x, len(directions)), "exact")
