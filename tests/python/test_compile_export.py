"""torch.compile(fullgraph=True) and torch.export of the models.

The graphs build their scan tables from torch ops (no native call, no cache) and every custom op
has a fake kernel, so the whole model is one graph in eval and train mode, at any input size.
CI compiles with the "aot_eager" backend (the same Dynamo + AOTAutograd graph capture as inductor,
without inductor's code generation, which takes minutes on 2 cores). Every *_test variant is
compiled in inference (no_grad: the forward-only kernels) from a cold start at two input sizes
(the search supernets at one); training runs on one variant per family, dynamic shapes on
local_vssm_test (a dynamic compile costs ~3x); one released model is compiled at a small input
(every released model, all modes, at 224x224: ``bench/compile_export_models.py``, see the README).
"""
import io

import pytest
import torch

import localmamba
from localmamba.models import get_model_cfg, list_models

from _tolerance import assert_close_by_rule

SIZES = (32, 40)
TEST_MODELS = [n for n in list_models() if get_model_cfg(n)["test_variant"]]
# (name, dynamic, sizes): the search supernets at one size (their layers are the others' plus the merge)
INFERENCE_CASES = [(n, n == "local_vssm_test", SIZES[:1] if "search" in n else SIZES) for n in TEST_MODELS]
TRAIN_CASES = [("local_vim_test", False), ("local_vssm_test", False)]
RELEASED_CASES = ["local_vssm_tiny"]


def _graphs() -> int:
    return int(torch._dynamo.utils.counters["stats"]["unique_graphs"])


def _compile(model, dynamic: bool, backend: str = "aot_eager"):
    torch._dynamo.reset()  # cold start
    return torch.compile(model, fullgraph=True, dynamic=dynamic, backend=backend)


def test_test_variants_are_all_listed():
    assert {"local_vim_test", "local_vssm_test"} <= set(TEST_MODELS)
    assert all(n in TEST_MODELS for n, _ in TRAIN_CASES)


@pytest.mark.parametrize("name,dynamic,sizes", INFERENCE_CASES)
def test_compile_inference_matches_eager(name, dynamic, sizes):
    torch.manual_seed(0)
    model = localmamba.create_model(name).eval()
    compiled = _compile(model, dynamic)
    with torch.no_grad():
        for size in sizes:
            x = torch.randn(2, 3, size, size + 8)
            assert_close_by_rule(compiled(x), model(x), "compile", f"{name} {size}x{size + 8}")
        if dynamic:  # one graph per image size; the batch is symbolic
            graphs = _graphs()
            x = torch.randn(3, 3, sizes[-1], sizes[-1] + 8)
            assert_close_by_rule(compiled(x), model(x), "compile", f"{name} batch 3")
            assert _graphs() == graphs, "a new batch size recompiled the dynamic graph"


def _train_step(model, x, seed: int = 1):
    torch.manual_seed(seed)  # drop path / dropout draw the same masks in both runs
    y = model(x)
    loss = (y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum()
    params = [p for p in model.parameters() if p.requires_grad]
    return [y, *torch.autograd.grad(loss, [x, *params])]


@pytest.mark.parametrize("name,dynamic", TRAIN_CASES)
def test_compile_train_matches_eager(name, dynamic):
    torch.manual_seed(0)
    model = localmamba.create_model(name, drop_path_rate=0.1).train()
    compiled = _compile(model, dynamic)
    for size in SIZES:
        x = torch.randn(2, 3, size, size + 8, requires_grad=True)
        for i, (got, want) in enumerate(zip(_train_step(compiled, x), _train_step(model, x))):
            assert_close_by_rule(got, want, "compile", f"{name} {size}: output/grad {i}")


@pytest.mark.parametrize("name", RELEASED_CASES)
def test_compile_released_model_one_graph(name):
    """The released configurations trace as one graph too (inference at 32x32, Dynamo only)."""
    torch.manual_seed(0)
    model = localmamba.create_model(name).eval()
    compiled = _compile(model, False, backend="eager")
    graphs = _graphs()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert_close_by_rule(compiled(x), model(x), "compile", name)
    assert _graphs() == graphs + 1


@pytest.mark.parametrize("name", ["local_vim_test_middle_cls_token", "local_vssm_test"])
def test_export_save_load_round_trip(name):
    """torch.export of the inference forward; the saved program reloads and gives equal outputs."""
    torch.manual_seed(0)
    model = localmamba.create_model(name).eval()
    x = torch.randn(2, 3, 32, 40)
    with torch.no_grad():
        program = torch.export.export(model, (x,))
        buf = io.BytesIO()
        torch.export.save(program, buf)
        buf.seek(0)
        loaded = torch.export.load(buf).module()
        x2 = torch.randn(2, 3, 32, 40)
        assert_close_by_rule(loaded(x2), model(x2), "compile", f"{name} export round trip")
    ops = {str(n.target) for n in program.graph.nodes if n.op == "call_function"}
    assert any(op.startswith("localmamba.") for op in ops), "the program should keep the native kernels"
