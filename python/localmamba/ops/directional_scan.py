"""directional_selective_scan: the K scan directions of a LocalMamba layer in one fused op.

Equivalent to the composition ``local_scan -> selective_scan -> local_reverse`` (SPEC 1.1-1.3;
``localmamba.ops.reference.directional_selective_scan`` is that composition), without any
reordered copy: the kernel reads u, delta, B, C through each direction's index map and writes
y straight back to token order.

Two input modes:

* token order (LocalVMamba): u (B, D, T) shared by the K directions, delta (B, K, D, T),
  B / C (B, K, N, T), z (B, K, D, T), T = H*W. Padding steps of a direction (windows that
  overhang the grid, the tail of shorter directions) read u = 0, delta = 0, B = C = 0 -- the
  state decays through them with exp(softplus(delta_bias) A), exactly as the release's
  zero-padded gather.
* sequence order (LocalVim, whose conv1d needs the gathered sequence): u (B, K, D, Lmax),
  delta (B, K, D, Lmax), B / C (B, K, N, Lmax), z (B, K, D, Lmax), read as they are; only
  the output goes through the index map.

With ``dt_proj_weight`` (K, D, R) the ``delta`` argument is the low-rank dt (B, K, R, .) and the
delta projection runs inside the kernel (LocalVMamba's ``dt_projs_weight``): the (B, K, D, T)
delta tensor is never materialised, in the forward or the backward.

The output is y (B, K, D, T) in token order (``layout="BLC"``: (B, K, T, D)), or with
``reduce="sum"`` the sum over directions (B, D, T) / (B, T, D), optionally weighted per
direction by ``weights`` (K,). The directions are given by name (``directions`` + H, W), as a
:class:`~localmamba.ops.scan_table.ScanTable` (what layers pass: parsed and built once, e.g. the
LocalVim middle-class-token layout), or as an explicit index tensor ``index`` (K, Lmax) of token
indices, -1 = padding, which is checked on every call.
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple, Union

import torch

from . import _native, reference
from ._checks import ArgChecks
from .backend import resolve_backend
from .scan_table import ScanTable, inverse_of, scan_table
from .selective_scan import selective_scan_chunk_size, state_dtype


__all__ = ["directional_selective_scan", "gather_sequences", "scan_index_table", "middle_cls_index_table"]

_LAYOUTS = ("BCL", "BLC")
_MAX_DT_RANK = 256  # == localmamba::kDirectionalScanMaxDtRank


_checks = ArgChecks("directional_selective_scan")
_err = _checks.message


# ----------------------------------------------------------------------------- index tables
def scan_index_table(directions: Union[str, Sequence[str]], H: int, W: int,
                     device: Union[str, torch.device] = "cpu") -> torch.Tensor:
    """(K, Lmax) int64 table of the token visited at each step of each direction (-1 = padding).
    A copy: the library's cached table (``scan_table``) is never handed out for editing."""
    return scan_table(directions, H, W, device).index.clone()


def middle_cls_index_table(directions: Union[str, Sequence[str]], H: int, W: int, cls_index: int,
                           device: Union[str, torch.device] = "cpu") -> torch.Tensor:
    """Index table over H*W + 1 tokens with a class token at token ``cls_index`` (SPEC 1.3).

    Spatial token p sits at token p (p < cls_index) or p + 1 (p >= cls_index); every direction
    visits the class token at sequence step ``cls_index``, its spatial order around it.
    Shape (K, Lmax + 1); a copy of the cached table.
    """
    try:
        table = scan_table(directions, H, W, device, cls_index=cls_index)
    except ValueError as exc:
        raise ValueError(_err(str(exc))) from None
    return table.index.clone()


def _check_index_table(index: torch.Tensor, num_tokens: int) -> None:
    if not isinstance(index, torch.Tensor) or index.dtype != torch.int64 or index.dim() != 2:
        got = f"{index.dtype} tensor of shape {tuple(index.shape)}" if isinstance(index, torch.Tensor) else type(index).__name__
        raise ValueError(_err(f"index must be an int64 tensor (K, Lmax), got {got}"))
    cpu = index.detach().cpu()
    if cpu.numel() and (cpu.min() < -1 or cpu.max() >= num_tokens):
        raise ValueError(_err(f"index entries must lie in [-1, {num_tokens}) (tokens of the output), "
                              f"got range [{int(cpu.min())}, {int(cpu.max())}]"))
    for k in range(cpu.shape[0]):
        row = cpu[k][cpu[k] >= 0]
        if row.numel() != num_tokens or torch.unique(row).numel() != num_tokens:
            raise ValueError(_err(f"index row {k} must visit each of the {num_tokens} tokens exactly once "
                                  f"(visits {torch.unique(row).numel()} distinct tokens in {row.numel()} steps)"))


# ----------------------------------------------------------------------------- native ops
_CPU_CHUNK = 256  # steps per saved chunk state on CPU (the backward recomputes inside a chunk)


def directional_scan_chunk_size(device: Union[str, torch.device]) -> int:
    """Steps per saved chunk state of the native directional scan on `device`."""
    device = torch.device(device)
    return _CPU_CHUNK if device.type == "cpu" else selective_scan_chunk_size(device)


def _shared_arg(t: torch.Tensor):
    """A token-order (B, D, T) tensor shared by the K directions, as (B, K, D, T) with direction stride 0."""
    s = _native.size1_strides(t)
    return _native.tensor_arg(t, [s[0], 0, s[1], s[2]])


def _out_shape(u: torch.Tensor, K: int, num_tokens: int, reduce_sum: bool, channels_last: bool) -> Tuple[int, ...]:
    batch = u.shape[0]
    dim = u.shape[1] if u.dim() == 3 else u.shape[2]
    lead = (batch,) if reduce_sum else (batch, K)
    return (*lead, num_tokens, dim) if channels_last else (*lead, dim, num_tokens)


def _out_arg(out: torch.Tensor, reduce_sum: bool, channels_last: bool):
    """The output (or its gradient) as the kernel indexes it: (B, K, D, T), direction stride 0 with reduce_sum."""
    s = list(out.stride())
    if reduce_sum:
        s = [s[0], 0] + s[1:]
    if channels_last:  # (..., T, D) viewed as (..., D, T)
        s = s[:2] + [s[3], s[2]]
    return _native.tensor_arg(out, s)


def _params(u, delta, dt_weight, A, B, C, D, z, delta_bias, weights, index, num_tokens, delta_softplus,
            reduce_sum):
    """The native params struct of one call's inputs; with dt_weight, `delta` is the low-rank dt."""
    from .. import _C

    K, length = index.shape
    seq = u.dim() == 4
    low_rank = dt_weight is not None
    arg = _native.tensor_arg
    return _C.DirectionalScanParams(
        dtype=_native.dtype_name(u.dtype), bc_dtype=_native.dtype_name(B.dtype), batch=u.shape[0], num_directions=K,
        dim=A.shape[0] // K, length=length, num_tokens=num_tokens, dstate=A.shape[1],
        dt_rank=delta.shape[2] if low_rank else 0, chunk_size=directional_scan_chunk_size(u.device),
        delta_softplus=delta_softplus, sequence_inputs=seq, reduce_sum=reduce_sum, index=index.data_ptr(),
        u=arg(u) if seq else _shared_arg(u), delta=None if low_rank else arg(delta),
        dt=arg(delta) if low_rank else None,
        dt_weight=arg(dt_weight), A=arg(A), B=arg(B), C=arg(C), D=arg(D), z=arg(z), delta_bias=arg(delta_bias),
        weights=arg(weights), cuda_stream=_native.cuda_stream_of(u),
    )


@torch.library.custom_op("localmamba::directional_scan_fwd", mutates_args=())
def _fwd_op(
    u: torch.Tensor,
    delta: torch.Tensor,
    dt_weight: Optional[torch.Tensor],
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: Optional[torch.Tensor],
    z: Optional[torch.Tensor],
    delta_bias: Optional[torch.Tensor],
    weights: Optional[torch.Tensor],
    index: torch.Tensor,
    num_tokens: int,
    delta_softplus: bool,
    reduce_sum: bool,
    channels_last: bool,
) -> Tuple[torch.Tensor, torch.Tensor]:
    from .. import _C

    params = _params(u, delta, dt_weight, A, B, C, D, z, delta_bias, weights, index, num_tokens, delta_softplus,
                     reduce_sum)
    out = torch.empty(_out_shape(u, params.num_directions, num_tokens, reduce_sum, channels_last), dtype=u.dtype,
                      device=u.device)
    saved = torch.empty(params.batch, params.num_directions * params.dim, -(-params.length // params.chunk_size),
                        params.dstate, dtype=state_dtype(u.dtype), device=u.device)
    params.out, params.chunk_states = _out_arg(out, reduce_sum, channels_last), saved.data_ptr()
    workspace = _native.attach_workspace(params, params.fwd_workspace_bytes, u)  # noqa: F841 (alive for the call)
    with _native.device_context(u):
        _C.directional_scan_fwd(_native.device_kind(u), params)
    return out, saved


@_fwd_op.register_fake
def _(u, delta, dt_weight, A, B, C, D, z, delta_bias, weights, index, num_tokens, delta_softplus, reduce_sum,
      channels_last):
    K, length = index.shape
    chunk = directional_scan_chunk_size(u.device)
    dim = A.shape[0] // K
    return (
        u.new_empty(_out_shape(u, K, num_tokens, reduce_sum, channels_last)),
        u.new_empty(u.shape[0], K * dim, -(-length // chunk), A.shape[1], dtype=state_dtype(u.dtype)),
    )


@torch.library.custom_op("localmamba::directional_scan_bwd", mutates_args=())
def _bwd_op(
    u: torch.Tensor,
    delta: torch.Tensor,
    dt_weight: Optional[torch.Tensor],
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: Optional[torch.Tensor],
    z: Optional[torch.Tensor],
    delta_bias: Optional[torch.Tensor],
    weights: Optional[torch.Tensor],
    index: torch.Tensor,
    num_tokens: int,
    delta_softplus: bool,
    reduce_sum: bool,
    channels_last: bool,
    chunk_states: torch.Tensor,
    dout: torch.Tensor,
) -> List[torch.Tensor]:
    """[du, ddelta (or ddt), ddt_weight, dA, dB, dC, dD, dz, ddelta_bias, dweights]; absent ones empty."""
    from .. import _C

    sdt = state_dtype(u.dtype)

    def empty():
        return u.new_empty(0)

    du = torch.empty(u.shape, dtype=u.dtype, device=u.device)
    ddelta = torch.empty(delta.shape, dtype=delta.dtype, device=u.device)
    ddt_w = torch.empty(dt_weight.shape, dtype=sdt, device=u.device) if dt_weight is not None else empty()
    dA = torch.empty(A.shape, dtype=sdt, device=u.device)
    dB = torch.empty(B.shape, dtype=B.dtype, device=u.device)
    dC = torch.empty(C.shape, dtype=C.dtype, device=u.device)
    dD = torch.empty(A.shape[0], dtype=sdt, device=u.device) if D is not None else empty()
    dz = torch.empty(z.shape, dtype=z.dtype, device=u.device) if z is not None else empty()
    dbias = torch.empty(A.shape[0], dtype=sdt, device=u.device) if delta_bias is not None else empty()
    dw = torch.empty(weights.shape, dtype=sdt, device=u.device) if weights is not None else empty()
    grads = [du, ddelta, ddt_w, dA, dB, dC, dD, dz, dbias, dw]
    if u.numel() == 0:  # batch or dim 0: no step reaches the output, every gradient is zero (as the reference's)
        return [g.zero_() for g in grads]
    params = _params(u, delta, dt_weight, A, B, C, D, z, delta_bias, weights, index, num_tokens, delta_softplus,
                     reduce_sum)
    params.chunk_states = chunk_states.data_ptr()
    workspace = _native.attach_workspace(params, params.bwd_workspace_bytes, u)  # noqa: F841 (alive for the call)
    low_rank = dt_weight is not None
    arg = _native.tensor_arg
    native_grads = _C.DirectionalScanGrads(
        dout=_out_arg(dout, reduce_sum, channels_last), du=arg(du) if u.dim() == 4 else _shared_arg(du),
        ddelta=None if low_rank else arg(ddelta), ddt=arg(ddelta) if low_rank else None,
        ddt_weight=arg(ddt_w) if low_rank else None, dA=arg(dA), dB=arg(dB), dC=arg(dC),
        dD=arg(dD) if D is not None else None, dz=arg(dz) if z is not None else None,
        ddelta_bias=arg(dbias) if delta_bias is not None else None, dweights=arg(dw) if weights is not None else None,
    )
    with _native.device_context(u):
        _C.directional_scan_bwd(_native.device_kind(u), params, native_grads)
    return [du, ddelta, ddt_w, dA, dB, dC, dD, dz, dbias, dw]


@_bwd_op.register_fake
def _(u, delta, dt_weight, A, B, C, D, z, delta_bias, weights, index, num_tokens, delta_softplus, reduce_sum,
      channels_last, chunk_states, dout):
    sdt = state_dtype(u.dtype)

    def empty():
        return u.new_empty(0)

    return [
        u.new_empty(u.shape),
        delta.new_empty(delta.shape),
        u.new_empty(dt_weight.shape, dtype=sdt) if dt_weight is not None else empty(),
        u.new_empty(A.shape, dtype=sdt),
        B.new_empty(B.shape),
        C.new_empty(C.shape),
        u.new_empty(A.shape[0], dtype=sdt) if D is not None else empty(),
        z.new_empty(z.shape) if z is not None else empty(),
        u.new_empty(A.shape[0], dtype=sdt) if delta_bias is not None else empty(),
        u.new_empty(weights.shape, dtype=sdt) if weights is not None else empty(),
    ]


def _setup_context(ctx, inputs, output):
    (u, delta, dt_weight, A, B, C, D, z, delta_bias, weights, index, num_tokens, delta_softplus, reduce_sum,
     channels_last) = inputs
    _, saved = output
    ctx.mark_non_differentiable(saved)
    ctx.save_for_backward(u, delta, dt_weight, A, B, C, D, z, delta_bias, weights, index, saved)
    ctx.flags = (num_tokens, delta_softplus, reduce_sum, channels_last)


def _backward(ctx, dout, dsaved):
    u, delta, dt_weight, A, B, C, D, z, delta_bias, weights, index, saved = ctx.saved_tensors
    num_tokens, delta_softplus, reduce_sum, channels_last = ctx.flags
    if dout is None:
        dout = u.new_zeros(_out_shape(u, index.shape[0], num_tokens, reduce_sum, channels_last))
    du, ddelta, ddt_w, dA, dB, dC, dD, dz, dbias, dw = _bwd_op(
        u, delta, dt_weight, A, B, C, D, z, delta_bias, weights, index, num_tokens, delta_softplus, reduce_sum,
        channels_last, saved, dout,
    )
    return (
        du,
        ddelta,
        ddt_w if dt_weight is not None else None,
        dA,
        dB,
        dC,
        dD if D is not None else None,
        dz if z is not None else None,
        dbias if delta_bias is not None else None,
        dw if weights is not None else None,
        None, None, None, None, None,
    )


_fwd_op.register_autograd(_backward, setup_context=_setup_context)


# ----------------------------------------------------------------------------- sequence gather


@torch.library.custom_op("localmamba::gather_sequences", mutates_args=())
def _gather_seq_op(x: torch.Tensor, index: torch.Tensor, inverse: torch.Tensor) -> torch.Tensor:
    """x (B, T, C) channels-last -> (B, K, C, L) through index (K, L), zeros at -1 (inverse (K, T)
    is the table's inverse, for the backward)."""
    B, T, C = x.shape
    K, L = index.shape
    out = torch.empty(B, K, C, L, dtype=x.dtype, device=x.device)
    _native.indexed_gather(x, out, (B, K, C, L, T), (x.stride(0), 0, x.stride(2), x.stride(1)), out.stride(), index,
                           False)
    return out


@_gather_seq_op.register_fake
def _(x, index, inverse):
    return x.new_empty(x.shape[0], index.shape[0], x.shape[2], index.shape[1])


@torch.library.custom_op("localmamba::scatter_sequences_sum", mutates_args=())
def _scatter_sum_op(y: torch.Tensor, inverse: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """(B, K, C, L) -> (B, T, C): sum over directions of each token's steps (inverse (K, T); the
    forward table index (K, L) is for the backward)."""
    B, K, C, L = y.shape
    T = inverse.shape[1]
    out = torch.empty(B, T, C, dtype=y.dtype, device=y.device)
    _native.indexed_gather(y, out, (B, K, C, T, L), y.stride(), (out.stride(0), 0, out.stride(2), out.stride(1)),
                           inverse, True)
    return out


@_scatter_sum_op.register_fake
def _(y, inverse, index):
    return y.new_empty(y.shape[0], inverse.shape[1], y.shape[2])


def _gather_setup(ctx, inputs, output):
    _, index, inverse = inputs
    ctx.save_for_backward(index, inverse)


def _gather_backward(ctx, grad):
    index, inverse = ctx.saved_tensors
    return _scatter_sum_op(grad.contiguous(), inverse, index), None, None


def _scatter_setup(ctx, inputs, output):
    _, inverse, index = inputs
    ctx.save_for_backward(inverse, index)


def _scatter_backward(ctx, grad):
    inverse, index = ctx.saved_tensors
    return _gather_seq_op(grad, index, inverse), None, None


_gather_seq_op.register_autograd(_gather_backward, setup_context=_gather_setup)
_scatter_sum_op.register_autograd(_scatter_backward, setup_context=_scatter_setup)


def gather_sequences(x: torch.Tensor, index: Union[ScanTable, torch.Tensor],
                     backend: Optional[str] = None) -> torch.Tensor:
    """One batched gather of channels-last tokens x (B, T, C) into the K scanned sequences
    (B, K, C, Lmax) of a scan table (zeros at padding) -- LocalVim's reorder of xz, class token
    included when the table has one. Its gradient sums each token's K steps.
    ``index``: a :class:`ScanTable`, or an index tensor (K, Lmax) (checked, then used)."""
    if not isinstance(x, torch.Tensor) or x.dim() != 3:
        raise ValueError(f"gather_sequences: x must be (B, T, C), got {getattr(x, 'shape', type(x).__name__)}")
    if isinstance(index, ScanTable):  # built by scan_table, so valid: never re-checked
        table = _resolve_index(None, None, None, index, x.device)
        if table.num_tokens != x.shape[1]:
            raise ValueError(f"gather_sequences: x has {x.shape[1]} tokens but the scan table covers "
                             f"{table.num_tokens}")
    else:
        checked = _gather_index(index, x.shape[1], x.device)
        table = ScanTable(checked, inverse_of(checked, x.shape[1]), x.shape[1], ())
    if resolve_backend(backend) == "reference":
        return reference.gather_tokens(x.transpose(1, 2), table.index)
    return _gather_seq_op(x, table.index, table.inverse)


def _gather_index(index, num_tokens: int, device: torch.device) -> torch.Tensor:
    """The gather's table, validated -- int64 (K, L), entries in [-1, num_tokens), each token at most
    once per row (the backward sums a token's steps through the inverse table) -- contiguous on `device`
    (the kernels read it there; a table on another device would be read through a foreign pointer)."""
    if not isinstance(index, torch.Tensor) or index.dtype != torch.int64 or index.dim() != 2:
        got = f"{index.dtype} tensor of shape {tuple(index.shape)}" if isinstance(index, torch.Tensor) else type(index).__name__
        raise ValueError(f"gather_sequences: index must be an int64 tensor (K, L), got {got}")
    cpu = index.detach().cpu()
    if cpu.numel() and (cpu.min() < -1 or cpu.max() >= num_tokens):
        raise ValueError(f"gather_sequences: index entries must lie in [-1, {num_tokens}) (x has {num_tokens} "
                         f"tokens), got range [{int(cpu.min())}, {int(cpu.max())}]")
    ordered = cpu.sort(dim=1).values
    repeated = (ordered[:, 1:] == ordered[:, :-1]) & (ordered[:, 1:] >= 0)
    if bool(repeated.any()):
        row = int(repeated.any(dim=1).nonzero()[0])
        raise ValueError(f"gather_sequences: index row {row} visits a token more than once")
    return index.to(device=device).contiguous()


# ----------------------------------------------------------------------------- checks
def _resolve_index(directions, H, W, index, device) -> ScanTable:
    """The scan table of the call: built from names (cached), a ScanTable as it is (moved to
    ``device`` if needed), or a user's index tensor after checking that it is a valid table."""
    if (directions is None) == (index is None):
        raise ValueError(_err("give the scan orders either as directions (with H and W) or as an index table, "
                              "exactly one of them"))
    if directions is not None:
        for name, v in (("H", H), ("W", W)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(_err(f"{name} must be a positive int with directions, got {v!r}"))
        return scan_table(directions, H, W, device)
    if isinstance(index, ScanTable):  # built by scan_table, so valid: never re-checked
        if index.index.device == device:
            return index
        return index._replace(index=index.index.to(device), inverse=index.inverse.to(device))
    if not isinstance(index, torch.Tensor):
        raise ValueError(_err(f"index must be a ScanTable or an int64 tensor (K, Lmax), got {type(index).__name__}"))
    num_tokens = int(index.max().item()) + 1 if index.numel() else 0
    _check_index_table(index, num_tokens)
    index = index.to(device=device).contiguous()
    return ScanTable(index, inverse_of(index, num_tokens), num_tokens, ())


def _check_arguments(u, delta, A, B, C, D, delta_bias, z, weights, dt_proj_weight, delta_softplus, reduce,
                     layout) -> None:
    """Types, options and element types: everything that does not depend on the scan orders."""
    _checks.tensors((("u", u), ("delta", delta), ("A", A), ("B", B), ("C", C)),
                    (("D", D), ("delta_bias", delta_bias), ("z", z), ("weights", weights),
                     ("dt_proj_weight", dt_proj_weight)))
    _checks.kernel_dtype("u", u)
    if reduce not in (None, "sum"):
        raise ValueError(_err(f"reduce must be None or 'sum', got {reduce!r}"))
    if layout not in _LAYOUTS:
        raise ValueError(_err(f"layout must be one of {_LAYOUTS}, got {layout!r}"))
    _checks.flags(delta_softplus=delta_softplus)
    if u.dim() not in (3, 4):
        raise ValueError(_err(f"u must be (B, D, H*W) in token order or (B, K, D, Lmax) in sequence order, "
                              f"got shape {tuple(u.shape)}"))
    _checks.scan_dtypes(u, (("delta", delta), ("z", z)), B, C)
    _checks.same_device(u, (("delta", delta), ("A", A), ("B", B), ("C", C), ("D", D), ("z", z),
                            ("delta_bias", delta_bias), ("weights", weights), ("dt_proj_weight", dt_proj_weight)))


def _check_shapes(u, delta, A, B, C, D, delta_bias, z, weights, dt_proj_weight, idx, num_tokens, grid):
    """Shapes against the scan orders; returns D, delta_bias as (K*D,) and dt_proj_weight as (K, D, R)."""
    K, lmax = idx.shape
    seq = u.dim() == 4
    batch = u.shape[0]
    dim = u.shape[2] if seq else u.shape[1]
    steps = lmax if seq else num_tokens
    where = "Lmax (sequence order)" if seq else "H*W (token order)"
    if seq:
        _checks.shape("u", u, (batch, K, dim, lmax), f"(B, K, D, Lmax) for {K} directions of length {lmax}")
    elif u.shape[2] != num_tokens:
        raise ValueError(_err(f"u has {u.shape[2]} tokens along its last axis but the scan orders cover "
                              f"{num_tokens} tokens" + (f" (H*W = {grid[0]}x{grid[1]})" if grid else "")))
    if A.dim() != 2 or A.shape[0] != K * dim:
        raise ValueError(_err(f"A must have shape (K*D, N) = ({K * dim}, N) for K={K}, D={dim}, got {tuple(A.shape)}"))
    n_state = A.shape[1]
    _checks.state_size(n_state)
    if dt_proj_weight is not None:
        if dt_proj_weight.dim() == 2:
            dt_proj_weight = dt_proj_weight.reshape(K, dim, dt_proj_weight.shape[-1])
        if dt_proj_weight.dim() != 3 or tuple(dt_proj_weight.shape[:2]) != (K, dim):
            raise ValueError(_err(f"dt_proj_weight must have shape (K, D, R) = ({K}, {dim}, R), "
                                  f"got {tuple(dt_proj_weight.shape)}"))
        rank = dt_proj_weight.shape[2]
        if not 1 <= rank <= _MAX_DT_RANK:
            raise ValueError(_err(f"dt rank R must be in [1, {_MAX_DT_RANK}], got {rank}"))
        _checks.shape("delta", delta, (batch, K, rank, steps),
                      f"(B, K, R, {where}) (low-rank dt, with dt_proj_weight)")
    else:
        _checks.shape("delta", delta, (batch, K, dim, steps), f"(B, K, D, {where})")
    _checks.shape("B", B, (batch, K, n_state, steps), f"(B, K, N, {where})")
    _checks.shape("C", C, (batch, K, n_state, steps), f"(B, K, N, {where})")
    _checks.shape("z", z, (batch, K, dim, steps), f"(B, K, D, {where})")
    D = None if D is None else D.reshape(-1) if D.numel() == K * dim else D
    delta_bias = None if delta_bias is None else delta_bias.reshape(-1) if delta_bias.numel() == K * dim else delta_bias
    _checks.shape("D", D, (K * dim,), "(K*D,)")
    _checks.shape("delta_bias", delta_bias, (K * dim,), "(K*D,)")
    _checks.shape("weights", weights, (K,), "(K,)")
    return D, delta_bias, dt_proj_weight


# ----------------------------------------------------------------------------- public API
def directional_selective_scan(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    directions: Optional[Union[str, Sequence[str]]] = None,
    H: Optional[int] = None,
    W: Optional[int] = None,
    D: Optional[torch.Tensor] = None,
    delta_bias: Optional[torch.Tensor] = None,
    delta_softplus: bool = True,
    z: Optional[torch.Tensor] = None,
    reduce: Optional[str] = None,
    weights: Optional[torch.Tensor] = None,
    backend: Optional[str] = None,
    *,
    dt_proj_weight: Optional[torch.Tensor] = None,
    index: Optional[torch.Tensor] = None,
    layout: str = "BCL",
) -> torch.Tensor:
    """K directional selective scans in one call (see the module docstring).

    u: (B, D, T) token order (shared by the directions) or (B, K, D, Lmax) sequence order.
    delta: (B, K, D, .) -- or, with ``dt_proj_weight`` (K, D, R), the low-rank dt (B, K, R, .).
    A: (K*D, N); B, C: (B, K, N, .); D, delta_bias: (K*D,) or (K, D); z: (B, K, D, .);
    weights: (K,). Scan orders: ``directions`` (names) with H, W, or ``index``: a ScanTable or an
    int64 tensor (K, Lmax).
    Returns y in u's dtype: (B, K, D, T) ("BCL") or (B, K, T, D) ("BLC"); with reduce="sum"
    (B, D, T) or (B, T, D). State and accumulation in float32 (float64 for float64 inputs).
    """
    _check_arguments(u, delta, A, B, C, D, delta_bias, z, weights, dt_proj_weight, delta_softplus, reduce, layout)
    table = _resolve_index(directions, H, W, index, u.device)
    idx, num_tokens = table.index, table.num_tokens
    D, delta_bias, dt_proj_weight = _check_shapes(u, delta, A, B, C, D, delta_bias, z, weights, dt_proj_weight, idx,
                                                  num_tokens, (H, W) if H and W else None)
    K, dim = idx.shape[0], A.shape[0] // idx.shape[0]
    if resolve_backend(backend) == "reference":
        return reference.directional_selective_scan(
            u, delta, A, B, C, idx, num_tokens, D=D, delta_bias=delta_bias, delta_softplus=delta_softplus, z=z,
            reduce=reduce, weights=weights, dt_proj_weight=dt_proj_weight, layout=layout,
        )
    _native.device_kind(u)
    sdt = state_dtype(u.dtype)
    A, D, delta_bias, weights = (None if t is None else t.to(sdt) for t in (A, D, delta_bias, weights))
    dtw = None if dt_proj_weight is None else dt_proj_weight.to(sdt).reshape(K * dim, dt_proj_weight.shape[-1])
    u, delta, B, C, z = (_native.unit_last(t) for t in (u, delta, B, C, z))
    if u.dim() == 4 and K > 1 and u.stride(1) == 0:
        u = u.contiguous()  # a direction stride of 0 means "one token-order u shared by all directions" natively
    out, _ = _fwd_op(u, delta, dtw, A, B, C, D, z, delta_bias, weights, idx, num_tokens, delta_softplus,
                     reduce == "sum", layout == "BLC")
    return out
