"""Where the CPU kernels' parallel_for runs: on the OpenMP team PyTorch already uses (so the two
never compete for cores), or on the library's own pool -- with the same results either way, and
without hanging in a forked child (an OpenMP team does not survive fork)."""
import os
import subprocess
import sys

import pytest
import torch

# One training-shaped scan forward + backward on fixed data; prints the pool kind, then saves
# the output and every gradient to the path given as argv[1].
_SCAN = r"""
import sys, torch
import localmamba._C as C
from localmamba.ops.directional_scan_train import directional_scan_channels_last_train
g = torch.Generator().manual_seed(3)
B, K, L, D, N, R = 3, 2, 23, 37, 5, 2
r = lambda *s: torch.randn(*s, generator=g)
u, dt, Bs, Cs = r(B, K, L, D), r(B, K, L, R), r(B, K, L, N), r(B, K, L, N)
A = -torch.rand(K * D, N, generator=g) - 0.5
w, Dp, bias, z = r(K, D, R) * 0.3, r(K * D), r(K * D) * 0.3 - 2, r(B, L, D)
index = torch.stack([torch.randperm(L, generator=g) for _ in range(K)])
leaves = [t.requires_grad_() for t in (u, dt, A, Bs, Cs, w, Dp, bias, z)]
y = directional_scan_channels_last_train(u, dt, A, Bs, Cs, index, L, dt_proj_weight=w, D=Dp, z=z,
                                         delta_bias=bias, sequence_inputs=True)
y.backward(r(*y.shape))
print(C.build_info()["thread_pool"])
torch.save([y.detach()] + [t.grad for t in leaves], sys.argv[1])
"""


def _run_scan(tmp_path, name, **env):
    out = tmp_path / f"{name}.pt"
    result = subprocess.run([sys.executable, "-c", _SCAN, str(out)], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "LOCALMAMBA_NUM_THREADS": "2", **env})
    assert result.returncode == 0, result.stderr
    return result.stdout.strip(), torch.load(out)


def _torch_uses_openmp() -> bool:
    return sys.platform.startswith("linux") and "OpenMP" in torch.__config__.parallel_info()


def test_both_pools_give_identical_results(tmp_path):
    kind_shared, shared = _run_scan(tmp_path, "shared")
    kind_own, own = _run_scan(tmp_path, "own", LOCALMAMBA_THREAD_POOL="own")
    assert kind_own == "own"
    assert kind_shared == ("openmp-shared" if _torch_uses_openmp() else "own")
    for a, b in zip(shared, own):
        assert torch.equal(a, b)


def test_the_team_is_found_when_localmamba_is_imported_before_torch():
    """`localmamba` first (its import asks the extension for its build info), PyTorch's OpenMP
    runtime loaded only afterwards: the kernels must still find and use its team."""
    code = ("import localmamba, sys; assert 'torch' not in sys.modules; "
            "first = localmamba.build_info()['thread_pool']; import torch; "
            "from localmamba.ops.mixer_infer import gate_stats_channels_last; "
            "gate_stats_channels_last(torch.randn(2, 3, 40, 33)); print(first, localmamba.build_info()['thread_pool'])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "LOCALMAMBA_NUM_THREADS": "2"})
    assert result.returncode == 0, result.stderr
    first, after = result.stdout.split()
    assert first == "own"  # nothing to share yet
    assert after == ("openmp-shared" if _torch_uses_openmp() else "own")


_FORK = r"""
import multiprocessing as mp, torch
from localmamba.ops.mixer_infer import gate_stats_channels_last
y = torch.randn(2, 3, 45, 33)

def child(q):
    q.put(gate_stats_channels_last(y).numpy().tobytes())  # bytes: a tensor would need the child alive

if __name__ == "__main__":
    parent = gate_stats_channels_last(y)  # the parent's team is in use before the fork
    torch.mm(torch.randn(300, 300), torch.randn(300, 300))
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=child, args=(q,))
    p.start()
    got = q.get(timeout=120)
    p.join(120)
    assert p.exitcode == 0 and got == parent.numpy().tobytes()
    print("ok")
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_kernels_run_in_a_forked_child():
    # In a subprocess so a hang fails this test (timeout) instead of hanging pytest.
    result = subprocess.run([sys.executable, "-c", _FORK], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "LOCALMAMBA_NUM_THREADS": "2"})
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


def test_an_unknown_pool_setting_warns_in_one_line():
    result = subprocess.run([sys.executable, "-c", "import localmamba"], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "LOCALMAMBA_THREAD_POOL": "OWN"})
    assert result.returncode == 0
    assert "LOCALMAMBA_THREAD_POOL='OWN' is ignored" in result.stderr and "Traceback" not in result.stderr
