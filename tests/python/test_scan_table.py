"""Scan tables: parsed once, built natively and cached, mirrored by a traceable torch builder."""
import pytest
import torch

import localmamba
from localmamba import ops
from localmamba.ops import directions as directions_mod
from localmamba.ops import scan_table as scan_table_mod
from localmamba.ops.directional_scan import directional_selective_scan
from localmamba.ops.scan_table import ScanTable, build_scan_table, parsed_directions, scan_table

ALL = ("h", "h_flip", "v", "v_flip", "w2", "w2_flip", "w7", "w7_flip", "w3_col", "w2_col_flip")
GRIDS = [(1, 1), (4, 4), (5, 9), (9, 13), (14, 14)]


@pytest.mark.parametrize("H,W", GRIDS)
@pytest.mark.parametrize("cls_index", [None, 0, "middle", "last"])
def test_native_table_equals_torch_mirror(H, W, cls_index):
    cls = {"middle": H * W // 2, "last": H * W}.get(cls_index, cls_index)
    native = scan_table(ALL, H, W, cls_index=cls)
    mirror = build_scan_table(parsed_directions(ALL), H, W, "cpu", cls)
    assert torch.equal(native.index, mirror.index)
    assert torch.equal(native.inverse, mirror.inverse)
    assert native.num_tokens == mirror.num_tokens == H * W + (cls is not None)
    assert native.directions == ALL
    # inverse is the inverse permutation of each row's visited steps
    K, L = native.index.shape
    for k in range(K):
        steps = native.inverse[k]
        assert torch.equal(native.index[k][steps], torch.arange(native.num_tokens))


def test_table_is_cached_and_built_once(monkeypatch):
    calls = []
    real = localmamba._C.scan_index_maps
    monkeypatch.setattr(localmamba._C, "scan_index_maps", lambda *a: calls.append(a) or real(*a))
    first = scan_table(("w5", "h_flip"), 11, 3)
    again = scan_table("w5,h_flip", 11, 3)
    assert first is again and len(calls) == 1


def test_public_index_tables_are_copies():
    """Editing what the public helpers return must not change any later scan (#14 item 5)."""
    x = torch.randn(2, 3, 3, 4)
    before = ops.local_scan(x, ["h"], 3, 4)
    t = ops.scan_index_table(["h"], 3, 4)
    t.fill_(0)
    m = ops.middle_cls_index_table(["h"], 3, 4, 6)
    m.fill_(0)
    assert torch.equal(ops.local_scan(x, ["h"], 3, 4), before)
    assert torch.equal(ops.scan_index_table(["h"], 3, 4), torch.arange(12).view(1, 12))
    table = scan_table(["h"], 3, 4)
    assert isinstance(table, ScanTable) and isinstance(table, tuple)
    with pytest.raises(AttributeError):
        table.index = None  # immutable


def test_scan_table_argument_errors():
    with pytest.raises(ValueError, match="unknown scan direction"):
        scan_table(["q"], 3, 3)
    with pytest.raises(TypeError, match="list of direction names"):
        scan_table(4, 3, 3)
    with pytest.raises(ValueError, match="W must be >= 1"):
        scan_table(["h"], 3, 0)
    with pytest.raises(ValueError, match="cls_index"):
        scan_table(["h"], 3, 3, cls_index=10)


def test_directional_scan_takes_a_table_or_a_checked_tensor():
    torch.manual_seed(1)
    H, W, D, N = 3, 5, 4, 2
    table = scan_table(("w2", "v_flip"), H, W)
    K, L = table.index.shape
    u = torch.randn(2, D, H * W)
    dt = torch.randn(2, K, D, H * W)
    A = -torch.rand(K * D, N) - 0.5
    B, C = torch.randn(2, K, N, H * W), torch.randn(2, K, N, H * W)
    by_table = directional_selective_scan(u, dt, A, B, C, index=table)
    by_names = directional_selective_scan(u, dt, A, B, C, ("w2", "v_flip"), H, W)
    by_tensor = directional_selective_scan(u, dt, A, B, C, index=table.index.clone())
    assert torch.equal(by_table, by_names) and torch.equal(by_table, by_tensor)
    bad = table.index.clone()
    bad[0, 0] = bad[0, 1]
    with pytest.raises(ValueError, match="exactly once"):
        directional_selective_scan(u, dt, A, B, C, index=bad)


@pytest.mark.parametrize("name", ["local_vim_test", "local_vim_test_middle_cls_token", "local_vssm_test"])
def test_forward_parses_no_direction_and_builds_no_table(name, monkeypatch):
    model = localmamba.create_model(name).eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        model(x)  # builds (or reuses) the tables of this grid

    def forbidden(*args, **kwargs):
        raise AssertionError("a forward must not parse directions or build tables")

    monkeypatch.setattr(directions_mod, "parse_direction", forbidden)
    monkeypatch.setattr(scan_table_mod, "parse_directions", forbidden)
    monkeypatch.setattr(scan_table_mod, "_native_table", forbidden)
    monkeypatch.setattr(localmamba._C, "scan_index_maps", forbidden)
    with torch.no_grad():
        model(x)
    model.train().set_grad_checkpointing()  # the training path, blocks recomputed in backward
    model(x).square().sum().backward()
