"""selective_scan: Mamba's S6 scan (SPEC section 1.2) as a PyTorch custom op.

Drop-in for ``selective_scan_fn`` of the reference Mamba package (same arguments, same
order, same results), running on the native CPU kernels or the CUDA kernels, with a
backward that recomputes the states from chunk-boundary states saved by the forward
(saved memory O(B*D*N*L/chunk)). ``backend="reference"`` runs the sequential pure-PyTorch
reference instead; nothing ever falls back silently.
"""
from __future__ import annotations

from typing import List, Optional, Tuple, Union

import torch

from . import _native, reference
from ._checks import ArgChecks
from .backend import resolve_backend

__all__ = ["selective_scan", "selective_scan_chunk_size", "state_dtype"]

def state_dtype(dtype: torch.dtype) -> torch.dtype:
    """Type of the state and of A, D, delta_bias, initial/last state: float64 for float64 inputs, else float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def selective_scan_chunk_size(device: Union[str, torch.device]) -> int:
    """Time steps per saved chunk state for the native kernels on `device`."""
    from .. import _C

    return int(_C.selective_scan_chunk_size(torch.device(device).type))


# ----------------------------------------------------------------------------- checks
_checks = ArgChecks("selective_scan")


def _check(u, delta, A, B, C, D, z, delta_bias, initial_state, delta_softplus, return_last_state) -> None:
    _checks.tensors((("u", u), ("delta", delta), ("A", A), ("B", B), ("C", C)),
                    (("D", D), ("z", z), ("delta_bias", delta_bias), ("initial_state", initial_state)),
                    non_empty=True)
    _checks.flags(delta_softplus=delta_softplus, return_last_state=return_last_state)
    _checks.kernel_dtype("u", u)
    if u.dim() != 3:
        raise ValueError(_checks.message(f"u must have shape (batch, dim, L), got {tuple(u.shape)}"))
    batch, dim, length = u.shape
    _checks.shape("delta", delta, (batch, dim, length), "(batch, dim, L) like u")
    _checks.shape("z", z, (batch, dim, length), "(batch, dim, L) like u")
    if A.dim() != 2 or A.shape[0] != dim:
        raise ValueError(_checks.message(f"A must have shape (dim, N) with dim = {dim} (from u), got {tuple(A.shape)}"))
    n_state = A.shape[1]
    _checks.state_size(n_state)
    for name, t in (("B", B), ("C", C)):
        if t.dim() == 3:
            _checks.shape(name, t, (batch, n_state, length), "(batch, N, L)")
        elif t.dim() == 4:
            groups = t.shape[1]
            _checks.shape(name, t, (batch, groups, n_state, length), "(batch, groups, N, L)")
            if dim % groups != 0:
                raise ValueError(
                    _checks.message(f"dim = {dim} must be divisible by the number of groups of {name} ({groups})")
                )
        else:
            raise ValueError(_checks.message(
                f"{name} must have shape (batch, N, L) or (batch, groups, N, L), got {tuple(t.shape)}"
            ))
    if B.shape != C.shape:
        raise ValueError(
            _checks.message(f"B and C must have the same shape, got {tuple(B.shape)} and {tuple(C.shape)}")
        )
    _checks.shape("D", D, (dim,), "(dim,)")
    _checks.shape("delta_bias", delta_bias, (dim,), "(dim,)")
    _checks.shape("initial_state", initial_state, (batch, dim, n_state), "(batch, dim, N)")
    _checks.scan_dtypes(u, (("delta", delta), ("z", z)), B, C)
    _checks.same_device(u, (("delta", delta), ("A", A), ("B", B), ("C", C), ("D", D), ("z", z),
                            ("delta_bias", delta_bias), ("initial_state", initial_state)))


# ----------------------------------------------------------------------------- native ops
def _params(u, delta, A, B, C, D, z, delta_bias, initial_state, delta_softplus):
    """The native params struct of one call's inputs (B and C grouped: (batch, groups, N, L))."""
    from .. import _C

    arg = _native.tensor_arg
    return _C.SelectiveScanParams(
        dtype=_native.dtype_name(u.dtype), bc_dtype=_native.dtype_name(B.dtype), batch=u.shape[0], dim=u.shape[1],
        length=u.shape[2], dstate=A.shape[1], n_groups=B.shape[1], chunk_size=selective_scan_chunk_size(u.device),
        delta_softplus=delta_softplus, u=arg(u), delta=arg(delta), A=arg(A), B=arg(B), C=arg(C), D=arg(D), z=arg(z),
        delta_bias=arg(delta_bias), initial_state=arg(initial_state), cuda_stream=_native.cuda_stream_of(u),
    )


@torch.library.custom_op("localmamba::selective_scan_fwd", mutates_args=())
def _fwd_op(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: Optional[torch.Tensor],
    z: Optional[torch.Tensor],
    delta_bias: Optional[torch.Tensor],
    initial_state: Optional[torch.Tensor],
    delta_softplus: bool,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    from .. import _C

    batch, dim, length = u.shape
    params = _params(u, delta, A, B, C, D, z, delta_bias, initial_state, delta_softplus)
    sdt = state_dtype(u.dtype)
    out = torch.empty_like(u, memory_format=torch.contiguous_format)
    last = torch.empty(batch, dim, params.dstate, dtype=sdt, device=u.device)
    saved = torch.empty(batch, dim, -(-length // params.chunk_size), params.dstate, dtype=sdt, device=u.device)
    params.out, params.last_state = _native.tensor_arg(out), _native.tensor_arg(last)
    params.chunk_states = saved.data_ptr()
    with _native.device_context(u):
        _C.selective_scan_fwd(_native.device_kind(u), params)
    return out, last, saved


@_fwd_op.register_fake
def _(u, delta, A, B, C, D, z, delta_bias, initial_state, delta_softplus):
    batch, dim, length = u.shape
    n_state = A.shape[1]
    chunk = selective_scan_chunk_size(u.device)
    sdt = state_dtype(u.dtype)
    return (
        u.new_empty(u.shape),
        u.new_empty(batch, dim, n_state, dtype=sdt),
        u.new_empty(batch, dim, -(-length // chunk), n_state, dtype=sdt),
    )


@torch.library.custom_op("localmamba::selective_scan_bwd", mutates_args=())
def _bwd_op(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: Optional[torch.Tensor],
    z: Optional[torch.Tensor],
    delta_bias: Optional[torch.Tensor],
    initial_state: Optional[torch.Tensor],
    chunk_states: torch.Tensor,
    dout: torch.Tensor,
    dlast_state: Optional[torch.Tensor],
    delta_softplus: bool,
) -> List[torch.Tensor]:
    """Returns [du, ddelta, dA, dB, dC, dD, ddelta_bias, dinitial_state, dz] (dz empty without z)."""
    from .. import _C

    batch, dim, _ = u.shape
    n_state = A.shape[1]
    sdt = state_dtype(u.dtype)
    du = torch.empty_like(u, memory_format=torch.contiguous_format)
    ddelta = torch.empty_like(u, memory_format=torch.contiguous_format)
    dz = torch.empty_like(u, memory_format=torch.contiguous_format) if z is not None else u.new_empty(0)
    dA = torch.empty(dim, n_state, dtype=sdt, device=u.device)
    dB = torch.empty(B.shape, dtype=B.dtype, device=u.device)
    dC = torch.empty(C.shape, dtype=C.dtype, device=u.device)
    dD = torch.empty(dim, dtype=sdt, device=u.device)
    dbias = torch.empty(dim, dtype=sdt, device=u.device)
    dinit = torch.empty(batch, dim, n_state, dtype=sdt, device=u.device)
    params = _params(u, delta, A, B, C, D, z, delta_bias, initial_state, delta_softplus)
    params.chunk_states = chunk_states.data_ptr()
    workspace = _native.attach_workspace(params, params.bwd_workspace_bytes, u)  # noqa: F841 (alive for the call)
    arg = _native.tensor_arg
    grads = _C.SelectiveScanGrads(
        dout=arg(dout), dlast_state=arg(dlast_state), du=arg(du), ddelta=arg(ddelta),
        dz=arg(dz if z is not None else None), dA=arg(dA), dB=arg(dB), dC=arg(dC), dD=arg(dD),
        ddelta_bias=arg(dbias), dinitial_state=arg(dinit),
    )
    with _native.device_context(u):
        _C.selective_scan_bwd(_native.device_kind(u), params, grads)
    return [du, ddelta, dA, dB, dC, dD, dbias, dinit, dz]


@_bwd_op.register_fake
def _(u, delta, A, B, C, D, z, delta_bias, initial_state, chunk_states, dout, dlast_state, delta_softplus):
    batch, dim, _ = u.shape
    n_state = A.shape[1]
    sdt = state_dtype(u.dtype)
    return [
        u.new_empty(u.shape),
        u.new_empty(u.shape),
        u.new_empty(dim, n_state, dtype=sdt),
        B.new_empty(B.shape),
        C.new_empty(C.shape),
        u.new_empty(dim, dtype=sdt),
        u.new_empty(dim, dtype=sdt),
        u.new_empty(batch, dim, n_state, dtype=sdt),
        u.new_empty(u.shape) if z is not None else u.new_empty(0),
    ]


def _setup_context(ctx, inputs, output):
    u, delta, A, B, C, D, z, delta_bias, initial_state, delta_softplus = inputs
    _, _, saved = output
    ctx.mark_non_differentiable(saved)
    ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias, initial_state, saved)
    ctx.delta_softplus = delta_softplus


def _backward(ctx, dout, dlast, dsaved):
    u, delta, A, B, C, D, z, delta_bias, initial_state, saved = ctx.saved_tensors
    if dout is None:
        dout = torch.zeros_like(u)
    else:
        dout = _native.unit_last(dout)
    du, ddelta, dA, dB, dC, dD, dbias, dinit, dz = _bwd_op(
        u, delta, A, B, C, D, z, delta_bias, initial_state, saved, dout, dlast, ctx.delta_softplus
    )
    return (
        du,
        ddelta,
        dA,
        dB,
        dC,
        dD if D is not None else None,
        dz if z is not None else None,
        dbias if delta_bias is not None else None,
        dinit if initial_state is not None else None,
        None,
    )


_fwd_op.register_autograd(_backward, setup_context=_setup_context)


# ----------------------------------------------------------------------------- public API
def selective_scan(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: Optional[torch.Tensor] = None,
    z: Optional[torch.Tensor] = None,
    delta_bias: Optional[torch.Tensor] = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
    *,
    initial_state: Optional[torch.Tensor] = None,
    backend: Optional[str] = None,
) -> Union[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]:
    """Selective scan (S6); arguments and results as Mamba's ``selective_scan_fn``.

    u, delta: (batch, dim, L); A: (dim, N) real; B, C: (batch, N, L) or grouped
    (batch, groups, N, L); D, delta_bias: (dim,); z: (batch, dim, L);
    initial_state: (batch, dim, N). delta and z have u's dtype; B and C have u's dtype or
    float32. The state and all accumulation are float32 (float64 for float64 inputs); A, D,
    delta_bias and initial_state are used in that type. Returns y (batch, dim, L) in u's
    dtype, and with ``return_last_state`` also the last state (batch, dim, N) in the state type.
    Any batch/channel strides are accepted (inputs not contiguous along L are copied).
    """
    _check(u, delta, A, B, C, D, z, delta_bias, initial_state, delta_softplus, return_last_state)
    if resolve_backend(backend) == "reference":
        return reference.selective_scan(
            u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state, initial_state=initial_state
        )
    _native.device_kind(u)  # cpu or cuda only
    sdt = state_dtype(u.dtype)
    A, D, delta_bias, initial_state = (None if t is None else t.to(sdt) for t in (A, D, delta_bias, initial_state))
    if B.dim() == 3:
        B, C = B.unsqueeze(1), C.unsqueeze(1)
    u, delta, z, B, C = (_native.unit_last(t) for t in (u, delta, z, B, C))
    out, last, _ = _fwd_op(u, delta, A, B, C, D, z, delta_bias, initial_state, delta_softplus)
    return (out, last) if return_last_state else out
