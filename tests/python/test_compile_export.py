"""torch.compile(fullgraph=True) of the models (the *_test variants in CI).

The graphs build their scan tables from torch ops (no native call, no cache) and every custom op
has a fake kernel, so the whole model is one graph in eval and train mode, at any input size.
CI compiles with the "aot_eager" backend (the same Dynamo + AOTAutograd graph capture as inductor,
without inductor's code generation, which takes minutes on 2 cores).
"""
import pytest
import torch

import localmamba

from _tolerance import assert_close_by_rule

SIZES = (32, 40)
# The cases run here were checked on the 2-core CI machine; the other *_test models, dynamic
# shapes and torch.export are exercised by bench-style runs only (see the README).
CASES = [("local_vim_test", False, False), ("local_vssm_test", True, False)]


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
