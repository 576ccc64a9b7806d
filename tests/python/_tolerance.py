"""The one tolerance rule of every comparison test.

An actual tensor a matches an expected tensor e when, elementwise,

    |a - e| <= atol * max|e| + rtol * |e|

with (rtol, atol) taken from one of the tables below:

* ``KERNEL[dtype]``: a fast kernel against its reference in that dtype. fp64 is exact up to
  summation order, fp32 carries the fp32 state and accumulation error, fp16/bf16 additionally
  round y and the gradients once to 16 bits.
* ``RULES[name]``: comparisons of whole models (fp32):
  "exact" (data movement), "fp32_sum", "same_math", "backends" (native against reference
  kernels through a whole model), "compile" (a compiled / exported graph against eager: same kernels,
  other fusion), "onnx" (onnxruntime against PyTorch), "golden_logits" / "golden_grad" (our model
  against the release's outputs), "resume" (bit equality), "ddp" (weights after the same steps
  on one process and on two: the gradient all-reduce sums in another order every step).
* ``GRADCHECK``: ``torch.autograd.gradcheck``'s finite-difference settings for the fp64 ops.
* :func:`assert_close_to_sum`: a sum of ``terms`` contributions accumulated in fp32 and rounded
  once to ``dtype``, against the exact (fp64) sum: |a - e| <= terms * eps32 * scale + ONE_ROUNDING[dtype] * |e|.
"""
from __future__ import annotations

import torch

KERNEL = {
    torch.float64: (1e-10, 1e-10),
    torch.float32: (3e-4, 1e-3),
    torch.float16: (3e-3, 5e-3),
    torch.bfloat16: (2e-2, 3e-2),
}
RTOL = {dtype: rtol for dtype, (rtol, _) in KERNEL.items()}
ATOL = {dtype: atol for dtype, (_, atol) in KERNEL.items()}

RULES = {
    "exact": (0.0, 0.0),
    "resume": (0.0, 0.0),
    "compile": (1e-5, 1e-5),
    "same_math": (1e-5, 1e-5),  # one model computed two equivalent ways (transposed grid, resized tables)
    "backends": (0.0, 1e-4),  # native kernels against the reference backend, whole models
    "fp32_sum": (1e-6, 1e-6),  # data movement with an fp32 sum over directions
    "onnx": (1e-4, 1e-4),
    "golden_logits": (0.0, 1e-4),
    "golden_grad": (0.0, 1e-3),
    "ddp": (1e-3, 1e-5),
}

GRADCHECK = dict(eps=1e-6, atol=1e-7, rtol=1e-5)

#: One rounding of an fp32 value to each dtype (relative).
ONE_ROUNDING = {torch.float64: 1e-12, torch.float32: 2e-7, torch.float16: 1e-3, torch.bfloat16: 8e-3}


def _check(actual: torch.Tensor, expected: torch.Tensor, rtol: float, atol: float, what: str) -> None:
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    a, e = actual.detach().double().cpu(), expected.detach().double().cpu()
    bound = atol * e.abs().max().clamp_min(1e-30) + rtol * e.abs()
    err = (a - e).abs()
    bad = err > bound
    assert not bad.any(), (
        f"{what}: {int(bad.sum())}/{e.numel()} elements out of tolerance (rtol={rtol}, atol={atol} * max|e|); "
        f"max err {err.max().item():.3e}, max|e| {e.abs().max().item():.3e}"
    )


def assert_close(actual: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype, what: str) -> None:
    """A kernel's output or gradient against its reference, in ``dtype`` (table KERNEL)."""
    rtol, atol = KERNEL[dtype]
    _check(actual, expected, rtol, atol, f"{what} ({dtype})")


def assert_close_by_rule(actual: torch.Tensor, expected: torch.Tensor, rule: str, what: str = "") -> None:
    """Two fp32 model outputs under a named rule (table RULES)."""
    rtol, atol = RULES[rule]
    _check(actual, expected, rtol, atol, f"{what or 'output'} [{rule}]")


def assert_close_to_sum(actual: torch.Tensor, exact: torch.Tensor, dtype: torch.dtype, terms: int, scale: float,
                        what: str = "sum") -> None:
    """A ``terms``-term sum accumulated in fp32 (each term at most ``scale``) and rounded once to
    ``dtype``, against the exact fp64 sum."""
    accumulation = terms * torch.finfo(torch.float32).eps * scale
    a, e = actual.detach().double().cpu(), exact.detach().double().cpu()
    assert a.shape == e.shape, f"{what}: shape {tuple(a.shape)} != {tuple(e.shape)}"
    err = (a - e).abs()
    bad = err > accumulation + ONE_ROUNDING[dtype] * e.abs()
    assert not bad.any(), (f"{what} ({dtype}): {int(bad.sum())}/{e.numel()} elements beyond {terms} fp32 additions "
                           f"and one rounding; max err {err.max().item():.3e}")
