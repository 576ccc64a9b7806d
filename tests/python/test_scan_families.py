"""Scan-order families: one table per side (ops/directions.py SCAN_FAMILIES, cpp/src/scan_order.cpp
scan_families()); names, lengths and orders all follow from it, and the two sides agree."""
import pytest
import torch

import localmamba
from localmamba.ops import reference, scan_order
from localmamba.ops.directions import SCAN_FAMILIES, ScanDirection, parse_direction, scan_family, scan_length
from localmamba.ops.scan_table import build_scan_table, scan_table

GRIDS = [(1, 1), (3, 5), (4, 4), (7, 2), (9, 13)]


def names_of(pattern):
    windows = (1, 2, 3, 7) if "{K}" in pattern else (1,)
    bases = [pattern.replace("{K}", str(k)) for k in windows]
    return bases + [b + "_flip" for b in bases]


def test_python_and_native_tables_list_the_same_families():
    assert list(SCAN_FAMILIES) == localmamba._C.scan_families()


@pytest.mark.parametrize("pattern", list(SCAN_FAMILIES))
def test_every_family_round_trips_and_native_equals_reference(pattern):
    for name in names_of(pattern):
        assert parse_direction(name).name == name == localmamba._C.canonical_direction(name)
        assert parse_direction(name).family == pattern
        for H, W in GRIDS:
            native = scan_order(name, H, W)
            assert torch.equal(native, reference.scan_order(name, H, W)), (name, H, W)
            assert native.numel() == scan_length(name, H, W) == localmamba._C.scan_length(name, H, W)
            assert torch.equal(native[native >= 0].sort().values, torch.arange(H * W))


@pytest.mark.parametrize("bad", ["", "x", "w", "w0", "w-1", "h_flip_flip", "wx", "_flip", "W2", "w2_row", "w٣"])
def test_both_parsers_reject_the_same_names_with_the_same_message(bad):
    with pytest.raises(ValueError) as python_error:
        parse_direction(bad)
    with pytest.raises(ValueError) as native_error:
        localmamba._C.canonical_direction(bad)
    if "unknown" in str(python_error.value):
        assert str(python_error.value) == str(native_error.value)
    else:  # a zero window: both name the direction and the rule
        assert "window size must be >= 1" in str(python_error.value) and bad in str(native_error.value)


@pytest.fixture
def restore_families():
    saved = dict(SCAN_FAMILIES)
    yield
    SCAN_FAMILIES.clear()
    SCAN_FAMILIES.update(saved)


def test_adding_a_family_is_one_registration(restore_families):
    """A boustrophedon family registered here, and nothing else edited, parses, prints, has a
    length, a reference order, scan tables and reference local_scan/local_reverse."""

    @scan_family("snake{K}")
    def _snake(grid, k):  # K-row bands, each visited row-major, every other band right to left
        bands = grid.reshape(grid.shape[0] // k, k, *grid.shape[1:]).clone()
        bands[1::2] = bands[1::2].flip(2)
        return bands.reshape(grid.shape[0] * grid.shape[1], *grid.shape[2:])

    assert parse_direction("snake2_flip") == ScanDirection("snake{K}", 2, True)
    assert parse_direction("snake2_flip").name == "snake2_flip"
    assert scan_length("snake2", 3, 5) == 24  # padded to 4 x 6, like every windowed family
    assert reference.scan_order("snake1", 3, 4).tolist() == [0, 1, 2, 3, 7, 6, 5, 4, 8, 9, 10, 11]
    assert reference.scan_order("snake2", 3, 2).tolist() == [0, 1, 2, 3, 5, 4, -1, -1]
    assert reference.scan_order("snake1_flip", 2, 2).tolist() == [2, 3, 1, 0]
    with pytest.raises(ValueError, match=r" or 'snakeK' \(K a positive"):
        parse_direction("snake")
    with pytest.raises(ValueError, match="already registered"):
        scan_family("snake{K}")(_snake)

    table = build_scan_table((parse_direction("h"), parse_direction("snake2_flip")), 3, 5)
    assert table.index.shape == (2, 24) and table.directions == ("h", "snake2_flip")
    for k in range(2):
        assert torch.equal(table.index[k][table.inverse[k]], torch.arange(15))
    x = torch.randn(2, 3, 3, 5) + 3.0  # never zero
    seqs = reference.local_scan(x, ["snake3", "v"], 3, 5)
    assert torch.equal(reference.local_reverse(seqs, ["snake3", "v"], 3, 5)[:, 0], x)

    # The native side learns a family from its own table entry; until then it refuses it clearly.
    with pytest.raises(ValueError, match="unknown scan direction 'snake2'"):
        scan_table(["snake2"], 3, 5)


@pytest.mark.parametrize("pattern", ["", "{K}", "w{K}{K}", "q_flip", 7])
def test_bad_family_patterns_are_refused(pattern, restore_families):
    with pytest.raises(ValueError, match="scan family pattern"):
        scan_family(pattern)
    assert list(SCAN_FAMILIES) == localmamba._C.scan_families()

