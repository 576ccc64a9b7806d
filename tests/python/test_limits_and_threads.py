"""Regression tests: scan sizes are bounded before anything is allocated, and resizing the CPU
thread pool while ops run from several threads never hangs (issue 14, items 1 and 4)."""
import subprocess
import sys
import textwrap

import pytest
import torch

from localmamba.ops import directional_selective_scan, local_scan, scan_order
from localmamba.ops.directions import MAX_SCAN_LENGTH, MAX_SCAN_WINDOW, scan_length


@pytest.mark.parametrize(
    "call, names",
    [
        (lambda: scan_order("w999999999", 1, 1), ["'w999999999'", str(MAX_SCAN_WINDOW)]),
        (lambda: scan_order("h", 10**6, 10**6), ["'h'", "H=1000000", "1000000000000"]),
        (lambda: local_scan(torch.randn(2, 3, 2, 2), ["w50000"], 2, 2), ["'w50000'", "2500000000"]),
        (lambda: local_scan(torch.randn(2, 3, 2, 2), ["h", "w5000"], 2, 2, backend="reference"), ["'w5000'"]),
        (lambda: scan_length("v_flip", 4097, 4096), ["'v_flip'", "16781312"]),
    ],
)
def test_oversized_scans_raise_value_error_naming_the_limit(call, names):
    with pytest.raises(ValueError) as info:
        call()
    message = str(info.value)
    for expected in names + [str(MAX_SCAN_LENGTH)]:
        assert expected in message, message


def test_largest_allowed_window_is_accepted_by_both_parsers():
    assert scan_length(f"w{MAX_SCAN_WINDOW}", 1, 1) == MAX_SCAN_LENGTH
    assert scan_length("h", 4096, 4096) == MAX_SCAN_LENGTH
    with pytest.raises(ValueError):
        scan_length(f"w{MAX_SCAN_WINDOW + 1}", 1, 1)


def test_oversized_directional_scan_is_rejected():
    u = torch.randn(1, 2, 4)
    delta = torch.randn(1, 1, 2, 4)
    A = -torch.rand(2, 3)
    B = torch.randn(1, 1, 3, 4)
    with pytest.raises(ValueError, match=f"'w9000'.*{MAX_SCAN_LENGTH}"):
        directional_selective_scan(u, delta, A, B, B, ["w9000"], 2, 2)


_STRESS = textwrap.dedent(
    """
    import threading, time, torch, localmamba
    from localmamba.ops import local_scan, local_reverse
    x = torch.randn(2, 16, 17, 13)
    expected = local_reverse(local_scan(x, ["h", "w2", "w5_flip"], 17, 13), ["h", "w2", "w5_flip"], 17, 13)
    stop_at = time.monotonic() + 1.5
    failures, calls = [], [0]

    def work(index):
        i = 0
        while time.monotonic() < stop_at:
            if index < 2:
                localmamba._C.set_num_threads(1 + (i + index) % 4)
            y = local_reverse(local_scan(x, ["h", "w2", "w5_flip"], 17, 13), ["h", "w2", "w5_flip"], 17, 13)
            if not torch.equal(y, expected):
                failures.append(i)
            calls[0] += 1
            i += 1

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for t in threads: t.start()
    for t in threads: t.join()
    print("calls", calls[0], "failures", len(failures))
    assert calls[0] > 0 and not failures
    """
)


def test_resizing_the_pool_while_ops_run_never_hangs():
    # In a subprocess so a deadlock fails this test (timeout) instead of hanging pytest.
    try:
        result = subprocess.run([sys.executable, "-c", _STRESS], capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail("set_num_threads + local_scan from 4 threads did not finish in 120 s: the thread pool hangs")
    assert result.returncode == 0, result.stdout + result.stderr
