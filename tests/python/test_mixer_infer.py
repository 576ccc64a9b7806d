"""The mixers' forward-only passes (ops/mixer_infer.py) against their float64 references, and the
no-grad mixer paths that use them (cached stacked parameters included) against the training path.

Tolerance rule: tests/python/_tolerance.py, KERNEL[dtype] (a kernel against its reference computed
in float64 from the same inputs); a mixer's no-grad path against its differentiable path in float32
is a kernel comparison too (same math, other kernels).
"""
from __future__ import annotations

import copy

import pytest
import torch

from _tolerance import assert_close
from localmamba import _C
from localmamba.ops import middle_cls_index_table, scan_index_table
from localmamba.ops.mixer_infer import (_gate_stats_op, _gated_merge_op, _scan_conv_op, gate_stats_channels_last,
                                        gate_stats_channels_last_reference, gated_merge_channels_last,
                                        gated_merge_channels_last_reference, scan_conv_channels_last,
                                        scan_conv_channels_last_reference)

DTYPES = [torch.float32, torch.float64]


def rand(*shape, dtype, gen, scale=1.0, shift=0.0):
    return (shift + scale * torch.randn(*shape, generator=gen, dtype=torch.float64)).to(dtype)


def f64(*ts):
    return [None if t is None else t.double() for t in ts]


@pytest.fixture
def threads():
    """Restores the native thread count after a test that changes it."""
    before = _C.get_num_threads()
    yield
    _C.set_num_threads(before)


def conv_inputs(dtype, index, num_tokens, taps, dim=37, batch=3, gen=0):
    g = torch.Generator().manual_seed(gen)
    K = index.shape[0]
    xz = rand(batch, num_tokens, 2 * dim + 3, dtype=dtype, gen=g)
    return xz[..., 1:dim + 1], rand(K, taps, dim, dtype=dtype, gen=g, scale=0.5), rand(K, dim, dtype=dtype, gen=g)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("dirs,grid,taps", [(("h", "v_flip", "w2", "w3_flip"), (5, 7), 4),
                                            (("w7",), (9, 4), 3), (("h_flip",), (1, 1), 1)])
def test_scan_conv_matches_reference(dirs, grid, taps, dtype):
    index = scan_index_table(dirs, *grid)  # window directions pad: -1 steps read zeros
    T = grid[0] * grid[1]
    x, w, b = conv_inputs(dtype, index, T, taps)
    for bias in (b, None):
        for silu in (True, False):
            with torch.no_grad():
                y = scan_conv_channels_last(x, index, w, bias, silu=silu)
            expected = scan_conv_channels_last_reference(*f64(x), index, *f64(w, bias), silu=silu)
            assert_close(y, expected, dtype, f"scan_conv {dirs} bias={bias is not None} silu={silu}")


def test_scan_conv_with_a_middle_class_token():
    index = middle_cls_index_table(("h", "v_flip"), 3, 5, 7)
    x, w, b = conv_inputs(torch.float64, index, 16, 4)
    assert_close(scan_conv_channels_last(x, index, w, b), scan_conv_channels_last_reference(x, index, w, b),
                 torch.float64, "scan_conv, class token")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(2, 3, 45, 37), (1, 1, 1, 5), (3, 2, 33, 64)])
def test_gate_stats_matches_reference(shape, dtype):
    g = torch.Generator().manual_seed(1)
    y = rand(*shape, dtype=dtype, gen=g, scale=2.0, shift=0.7)
    y_view = torch.cat([y, y[..., :3]], -1)[..., :shape[-1]]  # strided rows
    for t in (y, y_view):
        assert_close(gate_stats_channels_last(t, 1e-5), gate_stats_channels_last_reference(t.double(), 1e-5), dtype,
                     f"gate_stats {shape}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("z_mode", [None, "z", "silu"])
def test_gated_merge_matches_reference(dtype, normalize, z_mode):
    g = torch.Generator().manual_seed(2)
    B, K, T, D = 2, 3, 29, 37
    y = rand(B, K, T, D, dtype=dtype, gen=g)
    gate = rand(B, K, D, dtype=dtype, gen=g, scale=0.3, shift=0.5)
    nw, nb = (rand(D, dtype=dtype, gen=g), rand(D, dtype=dtype, gen=g)) if normalize else (None, None)
    z = rand(B, T, 2 * D, dtype=dtype, gen=g)[..., D:] if z_mode else None
    kw = dict(eps=1e-5, z_silu=z_mode == "silu")
    out = gated_merge_channels_last(y, gate, nw, nb, z=z, **kw)
    expected = gated_merge_channels_last_reference(*f64(y, gate, nw, nb), z=None if z is None else z.double(), **kw)
    assert_close(out, expected, dtype, f"gated_merge normalize={normalize} z={z_mode}")


def test_results_do_not_depend_on_the_thread_count(threads):
    index = scan_index_table(("h", "w2_flip", "v"), 7, 9)
    x, w, b = conv_inputs(torch.float32, index, 63, 4, batch=5)
    g = torch.Generator().manual_seed(3)
    y = rand(5, 3, 63, 37, dtype=torch.float32, gen=g)
    gate = rand(5, 3, 37, dtype=torch.float32, gen=g)
    nw, nb, z = rand(37, dtype=torch.float32, gen=g), rand(37, dtype=torch.float32, gen=g), x

    def run():
        return (scan_conv_channels_last(x, index, w, b), gate_stats_channels_last(y),
                gated_merge_channels_last(y, gate, nw, nb, z=z, z_silu=True))

    outs = []
    for n in (1, 2, 3, 7):
        _C.set_num_threads(n)
        outs.append(run())
    for other in outs[1:]:
        for a, e in zip(other, outs[0]):
            assert torch.equal(a, e)


def test_work_units_scale_past_the_batch():
    """Units depend on the shapes only: LocalVim-T at batch 8 gives far more than 16 units per pass."""
    conv = _C.ScanConvInferParams(batch=8, num_directions=4, dim=384, length=197, num_tokens=197, taps=4)
    stats = _C.GateStatsInferParams(batch=8, num_directions=4, dim=384, num_tokens=197)
    merge = _C.GatedMergeInferParams(batch=8, num_directions=4, dim=384, num_tokens=197)
    assert _C.scan_conv_infer_units(conv) == 8 * 4 * 7
    assert _C.gate_stats_infer_units(stats) == 8 * 4 * 7
    assert _C.gated_merge_infer_units(merge) == 8 * 13


def test_bad_arguments_raise_clear_errors():
    index = scan_index_table(("h",), 2, 3)
    x, w, b = conv_inputs(torch.float32, index, 6, 4)
    with pytest.raises(ValueError, match="bias must have shape"):
        scan_conv_channels_last(x, index, w, b[:, :5])
    with pytest.raises(ValueError, match="index must be"):
        scan_conv_channels_last(x, index.int(), w, b)
    with pytest.raises(ValueError, match="no gradient"):
        scan_conv_channels_last(x.clone().requires_grad_(), index, w, b)
    with pytest.raises(ValueError, match="taps"):
        scan_conv_channels_last(x, index, torch.randn(1, 17, 37), None)
    y = torch.randn(2, 1, 6, 37)
    with pytest.raises(ValueError, match="gate must have shape"):
        gated_merge_channels_last(y, torch.randn(2, 2, 37))
    with pytest.raises(ValueError, match="together"):
        gated_merge_channels_last(y, torch.randn(2, 1, 37), torch.ones(37))
    with pytest.raises(ValueError, match="y must be"):
        gate_stats_channels_last(y[0])
    bad = index.clone()
    bad[0, 0] = 6
    with pytest.raises(ValueError, match="outside"):
        scan_conv_channels_last(x, bad, w, b)


def test_opcheck():
    index = scan_index_table(("h", "w2_flip"), 3, 5)
    x, w, b = conv_inputs(torch.float32, index, 15, 4)
    y, gate = torch.randn(3, 2, 15, 37), torch.rand(3, 2, 37)
    checks = ("test_schema", "test_faketensor")
    torch.library.opcheck(_scan_conv_op, (x, index, w, b, True), test_utils=checks)
    torch.library.opcheck(_gate_stats_op, (y, 1e-5), test_utils=checks)
    torch.library.opcheck(_gated_merge_op, (y, gate, torch.ones(37), torch.zeros(37), 1e-5, x, True),
                          test_utils=checks)


# ---- the mixers' no-grad paths ----------------------------------------------------------------

def _multimamba(cls_index):
    from localmamba.nn.mixers import MultiMamba

    torch.manual_seed(0)
    mixer = MultiMamba(11, ("h", "w2_flip", "v_flip"), d_state=5)
    x = torch.randn(2, 15 + (cls_index is not None), 11)
    return mixer, x


def _check_multimamba(mixer, x, cls_index, what):
    y_train = mixer(x, (3, 5), cls_index).detach()
    with torch.no_grad():
        y_infer = mixer(x, (3, 5), cls_index)
    assert_close(y_infer, y_train, torch.float32, what)


@pytest.mark.parametrize("cls_index", [None, 7])
def test_multimamba_cached_parameters_follow_optimizer_steps_and_loading(cls_index):
    """The stacked per-direction parameters of the no-grad path are rebuilt after every change."""
    mixer, x = _multimamba(cls_index)
    _check_multimamba(mixer, x, cls_index, "fresh")
    opt = torch.optim.AdamW(mixer.parameters(), lr=0.05)
    for step in range(2):
        opt.zero_grad()
        mixer(x, (3, 5), cls_index).square().sum().backward()
        opt.step()
        _check_multimamba(mixer, x, cls_index, f"after optimizer step {step}")
    other, _ = _multimamba(cls_index)
    for p in other.parameters():
        p.data.add_(torch.randn_like(p) * 0.1)
    mixer.load_state_dict(other.state_dict())
    _check_multimamba(mixer, x, cls_index, "after load_state_dict")
    mixer.conv1d_1.weight.data = torch.randn_like(mixer.conv1d_1.weight)  # storage replaced, version unchanged
    _check_multimamba(mixer, x, cls_index, "after replacing a parameter's data")
    clone = copy.deepcopy(mixer)
    with torch.no_grad():
        clone.A_log_0.mul_(0.5)
    _check_multimamba(clone, x, cls_index, "deep copy, changed in place")
    _check_multimamba(mixer, x, cls_index, "original after its copy changed")


def test_ss2d_fused_path_follows_parameter_changes():
    """SS2D's no-grad path (fused gate, merge, out_norm, z gate; cached A = -exp(A_logs)) against the
    differentiable path, before and after an optimizer step and an in-place change of A_logs."""
    from localmamba.nn.mixers import SS2D

    torch.manual_seed(0)
    mixer = SS2D(13, ("h", "w2_flip", "v"), d_state=5)
    x = torch.randn(2, 5, 7, 13)

    def check(what):
        y_train = mixer(x).detach()
        with torch.no_grad():
            assert_close(mixer(x), y_train, torch.float32, what)

    check("fresh")
    opt = torch.optim.SGD(mixer.parameters(), lr=0.05)
    mixer(x).square().sum().backward()
    opt.step()
    check("after an optimizer step")
    with torch.no_grad():
        mixer.A_logs.sub_(4.0)  # slower decay: a large change of the output
    check("after an in-place change of A_logs")
