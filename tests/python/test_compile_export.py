"""torch.compile(fullgraph=True) and torch.export of the models (the *_test variants in CI).

The graphs build their scan tables from torch ops (no native call, no cache) and every custom op
has a fake kernel, so the whole model is one graph in eval and train mode, at any input size.
CI compiles with the "aot_eager" backend (the same Dynamo + AOTAutograd graph capture as inductor,
without inductor's code generation, which takes minutes on 2 cores); one test runs inductor.
``bench/compile_export.py`` runs the released models (results in the README).
"""
import io

import pytest
import torch

import localmamba
from localmamba.models import list_models

from _tolerance import assert_close_by_rule

TEST_MODELS = list_models("*_test*")
SIZES = (32, 40)
# CI keeps to one model per family and per table layout for the costlier cases (train mode, dynamic
# shapes); every *_test model compiles in eval mode at static shapes.
CORE = ("local_vim_test", "local_vim_test_middle_cls_token", "local_vssm_test")
CASES = [(name, False, False) for name in TEST_MODELS] + [(name, train, dynamic) for name in CORE
                                                             for train, dynamic in ((True, False), (False, True))]


def _run(model, x, train: bool, seed: int = 1):
    torch.manual_seed(seed)  # drop path / dropout draw the same masks in both runs
    y = model(x)
    if not train:
        return [y]
    return [y, *torch.autograd.grad((y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum(), x)]


@pytest.mark.parametrize("name,train,dynamic", CASES)
def test_compile_fullgraph_matches_eager(name, train, dynamic):
    torch._dynamo.reset()  # cold start
    torch.manual_seed(0)
    model = localmamba.create_model(name, drop_path_rate=0.1 if train else 0.0).train(train)
    compiled = torch.compile(model, fullgraph=True, dynamic=dynamic, backend="aot_eager")
    for size in SIZES:
        x = torch.randn(2, 3, size, size + 8, requires_grad=train)
        for got, want in zip(_run(compiled, x, train), _run(model, x, train)):
            assert_close_by_rule(got, want, "compile")


def test_compile_inductor_matches_eager():
    torch._dynamo.reset()
    model = localmamba.create_model("local_vssm_test").eval()
    compiled = torch.compile(model, fullgraph=True)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert_close_by_rule(compiled(x), model(x), "compile")


@pytest.mark.parametrize("name", CORE)
def test_export_save_load_matches_eager(name):
    model = localmamba.create_model(name).eval()
    x = torch.randn(2, 3, 32, 32)
    program = torch.export.export(model, (x,))
    buffer = io.BytesIO()
    torch.export.save(program, buffer)
    buffer.seek(0)
    loaded = torch.export.load(buffer)
    x2 = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        want = model(x2)
        assert_close_by_rule(program.module()(x2), want, "compile")
        assert_close_by_rule(loaded.module()(x2), want, "compile")
