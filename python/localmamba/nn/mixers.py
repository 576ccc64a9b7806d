"""The two multi-direction token mixers: LocalVim's ``MultiMamba`` and LocalVMamba's ``SS2D``.

Both run K directional selective scans (SPEC sections 1.1-1.3). Parameter names and shapes are
the release's; the computation is batched over the K directions (one grouped conv, one einsum
per projection, one scan over K·d_inner channels with grouped B/C), which is exact because
every per-direction op is causal along its own sequence and shorter directions are only
zero-padded at the end.
"""
from __future__ import annotations

import math
from typing import Any, Callable, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..ops import channels_last_scan_supported, gather_sequences
from ..ops.directional_scan_train import channels_last_train_supported
from ..ops.mixer_infer import gate_stats_channels_last, gated_merge_channels_last, scan_conv_channels_last
from ..ops.gated_sum_train import gate_mlp_backward, gated_sum_channels_last_train
from ..ops.scan_conv_train import scan_conv_channels_last_train
from ..ops.backend import resolve_backend
from ..ops.scan_table import parsed_directions, tracing
from .layers import MultiScan, SCAttn
from .scan import (causal_depthwise_conv1d, directional_scan_channels_last,
                   directional_selective_scan, record_flops, selective_scan)

__all__ = ["MultiMamba", "SS2D", "dt_bias_init"]


def dt_bias_init(d_inner: int, dt_min: float = 1e-3, dt_max: float = 0.1, dt_init_floor: float = 1e-4) -> torch.Tensor:
    """Mamba's dt bias: softplus(bias) log-uniform in [dt_min, dt_max]."""
    dt = torch.exp(torch.rand(d_inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
    dt = dt.clamp(min=dt_init_floor)
    return dt + torch.log(-torch.expm1(-dt))


def _dense(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """In ``dtype``, row-major with unit stride along the last axis (also for size-1 axes, which
    .contiguous() keeps). The scan takes u, delta, B, C, z in one dtype (autocast may mix them)."""
    t = t.to(dtype)
    if t.is_contiguous() and t.stride(-1) == 1:
        return t
    return t.clone(memory_format=torch.contiguous_format)


def _a_log_init(d_inner: int, d_state: int) -> torch.Tensor:
    return torch.log(torch.arange(1, d_state + 1, dtype=torch.float32).repeat(d_inner, 1))


class _GatedSum(torch.autograd.Function):
    """sum_k SCAttn(y_k) for y (B, K, L, C): the shared channel gate of each direction, then the sum.

    Same values as ``multi_scan.merge(multi_scan.attn(y))``, but it keeps only y and the per-token
    LayerNorm statistics for the backward and works one direction at a time, with the token means
    and the LayerNorm backward written as batched matrix products: no other (B, K, L, C) tensor is
    ever materialised, so the layer's peak memory is set by y and its one gradient. The gate only
    needs mean_t LayerNorm(y_k) = w * mean_t(xhat_k) + b, which never forms xhat.
    """

    @staticmethod
    def forward(ctx, y, ln_w, ln_b, w1, b1, w2, b2, eps: float):
        Bn, K, L, C = y.shape
        record_flops("scattn_layer_norm", 5 * y.numel())  # as counted for the LayerNorm it replaces
        g, mus, rstds = [], [], []
        for k in range(K):
            yk = y[:, k]
            var, mu = torch.var_mean(yk, -1, correction=0, keepdim=True)  # (B, L, 1)
            rstd = (var + eps).rsqrt()
            # mean_t xhat = (sum_t rstd_t y_t - sum_t rstd_t mu_t) / L
            xm = (torch.bmm(rstd.transpose(1, 2), yk) - (rstd * mu).sum(1, keepdim=True)) / L  # (B, 1, C)
            g.append(xm * ln_w + ln_b)
            mus.append(mu)
            rstds.append(rstd)
        g = torch.stack(g, 1)  # (B, K, 1, C)
        s = torch.sigmoid(F.linear(F.gelu(F.linear(g, w1, b1)), w2, b2))  # SCAttn's gate
        merged = y[:, 0] * s[:, 0]
        for k in range(1, K):
            merged.addcmul_(y[:, k], s[:, k])  # forward runs without autograd
        ctx.save_for_backward(y, ln_w, ln_b, w1, b1, w2, b2, g, s, torch.stack(mus, 1), torch.stack(rstds, 1))
        return merged

    @staticmethod
    def backward(ctx, grad):
        y, ln_w, ln_b, w1, b1, w2, b2, g, s, mu, rstd = ctx.saved_tensors
        K, L, C = y.shape[1], y.shape[2], y.shape[3]
        grad = grad.contiguous()
        grad_s = torch.stack([(grad * y[:, k]).sum(1, keepdim=True) for k in range(K)], 1)  # (B, K, 1, C)
        grad_g, dw1, db1, dw2, db2 = gate_mlp_backward(g, w1, b1, w2, s, grad_s)
        # direction-major storage: each direction's slice is contiguous and written in place
        grad_y = y.new_empty((K, y.shape[0], L, C)).transpose(0, 1)
        dln_w = torch.zeros_like(ln_w)
        for k in range(K):
            yk, mu_k, rstd_k = y[:, k], mu[:, k], rstd[:, k]  # (B, L, C), (B, L, 1), (B, L, 1)
            xm_k = (torch.bmm(rstd_k.transpose(1, 2), yk) - (rstd_k * mu_k).sum(1, keepdim=True)) / L
            gk = grad_g[:, k]  # (B, 1, C)
            dln_w += (gk * xm_k).sum((0, 1))
            e = gk * ln_w / L  # d xhat, the same for every token: (B, 1, C)
            e_c = e - e.mean(-1, keepdim=True)
            # proj_t = mean_c(xhat_t * e) = rstd_t (y_t . e - mu_t sum_c e) / C
            proj = rstd_k * (torch.bmm(yk, e.transpose(1, 2)) - mu_k * e.sum(-1, keepdim=True)) / C  # (B, L, 1)
            beta = rstd_k * rstd_k * proj  # dy = ... - rstd * xhat * proj
            # dy = grad s_k + rstd (e - mean_c e) - beta (y - mu)
            out = grad_y[:, k]
            torch.baddbmm(beta * mu_k, rstd_k, e_c, out=out)
            out.addcmul_(grad, s[:, k])
            out.addcmul_(yk, beta, value=-1)
        dln_b = grad_g.sum((0, 1, 2))
        return grad_y, dln_w, dln_b, dw1, db1, dw2, db2, None


def _gated_sum(y: torch.Tensor, attn, native: bool = False) -> torch.Tensor:
    """sum_k attn(y)[:, k] for a fixed architecture (see _GatedSum); ``native``: the CPU op with native
    passes (ops/gated_sum_train.py), for the channels-last paths."""
    if not (isinstance(attn.act_fn, nn.GELU) and attn.act_fn.approximate == "none"
            and isinstance(attn.gate_fn, nn.Sigmoid)):
        raise TypeError("_gated_sum writes out SCAttn's exact-GELU / sigmoid gate; got another gate")
    args = (y, attn.norm.weight, attn.norm.bias, attn.global_reduce.weight, attn.global_reduce.bias,
            attn.channel_select.weight, attn.channel_select.bias, float(attn.norm.eps))
    return gated_sum_channels_last_train(*args) if native else _GatedSum.apply(*args)


class _DerivedParams:
    """Tensors derived from parameters (stacked per-direction weights, -exp(A_log)) for the no-grad
    fast paths, rebuilt only when a source parameter changed: the key is each source's address,
    version counter (bumped by optimizer steps, ``load_state_dict``'s copy_, any in-place update),
    dtype and device. Detached aliases of the sources are held, so no source storage is freed and its
    address reused while the entry lives. Never saved (not a buffer) and dropped on copy / pickle."""

    def __init__(self):
        self._key = None
        self._sources: List[torch.Tensor] = []
        self._value = None

    def get(self, sources: Sequence[torch.Tensor], build: Callable[[], Any]) -> Any:
        if tracing():  # torch.compile / export: parameters are graph inputs (no address); derive in the graph
            return build()
        key = tuple((p.data_ptr(), p._version, p.dtype, p.device) for p in sources)
        if key != self._key:
            with torch.inference_mode(False), torch.no_grad():  # outlives the call: never an inference tensor
                self._value = build()
                self._sources = [p.detach() for p in sources]
            self._key = key
        return self._value

    def __getstate__(self):
        return {"_key": None, "_sources": [], "_value": None}

    def __deepcopy__(self, memo):
        return _DerivedParams()


def _gate_from_stats(mean_xhat: torch.Tensor, attn: SCAttn) -> torch.Tensor:
    """SCAttn's gate from mean_t of the un-affine LayerNorm (B, K, C): the affine commutes with the
    token mean, so mean_t LayerNorm(y) = weight * mean_t(xhat) + bias."""
    g = torch.addcmul(attn.norm.bias, mean_xhat, attn.norm.weight)
    return attn.gate_fn(attn.channel_select(attn.act_fn(attn.global_reduce(g))))


class _BackendMixin:
    backend: Optional[str]

    def _backend(self) -> str:
        return resolve_backend(self.backend)


class MultiMamba(_BackendMixin, nn.Module):
    """LocalVim mixer (the release's ``MultiMamba``, ``bimamba_type="v2"``).

    in_proj -> for each direction k: reorder xz along the scan -> causal depthwise conv1d_k -> SiLU
    -> x_proj_k -> dt_proj_k -> selective scan (A_log_k, D_k, z gate, softplus) -> reverse -> SCAttn
    (shared) -> merge (sum, or the supernet's normalised softmax-weighted sum) -> out_proj.

    With a middle class token the token at ``cls_index`` is taken out before the reorder, put at
    the same index of every scanned sequence, and taken out / put back around the reverse.
    Parameters per direction are independent (SPEC 1.7: the release aliases A_log on CPU).

    That is the math; the forward computes it with one gather of xz for all K directions through
    the layer's scan table (class token included), one grouped conv, and one directional scan
    that applies dt_proj_k in the kernel and writes each step straight to its token: no reverse,
    no per-direction copies. Inference on the native backend runs channels-last kernels instead.
    """

    def __init__(
        self,
        d_model: int,
        directions: Sequence[str],
        search: bool = False,
        d_state: int = 16,
        d_conv: int = 4,
        expand: float = 2,
        dt_rank="auto",
        conv_bias: bool = True,
        bias: bool = False,
        backend: Optional[str] = None,
    ):
        super().__init__()
        directions = parsed_directions(directions)  # parsed once; MultiScan keeps them as they are
        K = len(directions)
        self.d_model = d_model
        self.d_state = d_state
        self.d_conv = d_conv
        self.expand = expand
        self.d_inner = int(expand * d_model)
        self.dt_rank = math.ceil(d_model / 16) if dt_rank == "auto" else int(dt_rank)
        self.backend = backend
        d_inner = self.d_inner
        for i in range(K):
            a_log = nn.Parameter(_a_log_init(d_inner, d_state))
            a_log._no_weight_decay = True
            setattr(self, f"A_log_{i}", a_log)
            d_skip = nn.Parameter(torch.ones(d_inner))
            d_skip._no_weight_decay = True
            setattr(self, f"D_{i}", d_skip)
        self.in_proj = nn.Linear(d_model, 2 * d_inner, bias=bias)
        self.multi_scan = MultiScan(d_inner, directions, search=search)
        for i in range(K):
            setattr(self, f"conv1d_{i}", nn.Conv1d(d_inner, d_inner, d_conv, groups=d_inner, padding=d_conv - 1,
                                                   bias=conv_bias))
            setattr(self, f"x_proj_{i}", nn.Linear(d_inner, self.dt_rank + 2 * d_state, bias=False))
            dt_proj = nn.Linear(self.dt_rank, d_inner, bias=True)
            dt_std = self.dt_rank ** -0.5
            nn.init.uniform_(dt_proj.weight, -dt_std, dt_std)
            with torch.no_grad():
                dt_proj.bias.copy_(dt_bias_init(d_inner))
            setattr(self, f"dt_proj_{i}", dt_proj)
        self.out_proj = nn.Linear(d_inner, d_model, bias=bias)
        self.attn = SCAttn(d_inner)
        self._infer_params = _DerivedParams()

    @property
    def directions(self) -> Tuple[str, ...]:
        return self.multi_scan.directions

    @property
    def num_directions(self) -> int:
        return self.multi_scan.num_directions

    def _stacked(self, name: str) -> torch.Tensor:
        return torch.stack([getattr(self, f"{name}_{i}") for i in range(self.num_directions)])

    def _stacked_module(self, name: str, attr: str) -> Optional[torch.Tensor]:
        tensors = [getattr(getattr(self, f"{name}_{i}"), attr) for i in range(self.num_directions)]
        if tensors[0] is None:
            return None
        return torch.stack(tensors)

    def forward(self, hidden_states: torch.Tensor, grid_size: Tuple[int, int],
                cls_index: Optional[int] = None) -> torch.Tensor:
        """hidden_states: (B, H*W [+1 with a class token], d_model) -> same shape."""
        H, W = grid_size
        backend = self._backend()
        B = hidden_states.shape[0]
        K, Di, N, R = self.num_directions, self.d_inner, self.d_state, self.dt_rank
        xz = self.in_proj(hidden_states)  # (B, HW [+1], 2Di)
        # with a class token, it sits at step cls_index of every direction (SPEC 1.3)
        table = self.multi_scan.scan_table(H, W, xz.device, cls_index)
        tokens = table.num_tokens
        if xz.shape[1] != tokens:
            raise ValueError(f"mixer got {xz.shape[1]} tokens for a {H}x{W} grid")
        if backend == "native" and channels_last_train_supported(xz, self.in_proj.weight):
            return self._forward_channels_last(xz, table)
        # One batched gather of x and z for all K directions, class token included.
        seqs = gather_sequences(xz, table, backend=backend)  # (B, K, 2Di, Lmax [+1])
        L = seqs.shape[-1]
        x, z = seqs[:, :, :Di], seqs[:, :, Di:]

        # causal depthwise conv, all directions in one grouped conv
        conv_w = self._stacked_module("conv1d", "weight").reshape(K * Di, self.d_conv)
        conv_b = self._stacked_module("conv1d", "bias")
        conv_b = conv_b.reshape(K * Di) if conv_b is not None else None
        x = F.silu(causal_depthwise_conv1d(x.reshape(B, K * Di, L), conv_w, conv_b)).view(B, K, Di, L)

        u_dtype = x.dtype
        x_dbl = torch.einsum("bkdl,kcd->bkcl", x, self._stacked_module("x_proj", "weight").to(u_dtype))
        dt, Bs, Cs = torch.split(x_dbl, [R, N, N], dim=2)
        A = -torch.exp(self._stacked("A_log").float()).reshape(K * Di, N)
        # All K scans in one call (sequence-order inputs, delta = dt_proj_k(dt) in the kernel); each
        # output step is stored straight at its token (class token included): no reverse, no cat.
        ys = directional_selective_scan(
            x, dt, A, Bs, Cs, index=table, num_tokens=tokens,
            D=self._stacked("D").reshape(K * Di).float(),
            z=z.to(u_dtype),
            delta_bias=self._stacked_module("dt_proj", "bias").reshape(K * Di).float(),
            delta_softplus=True,
            dt_proj_weight=self._stacked_module("dt_proj", "weight"),
            layout="BLC",
            backend=backend,
        )  # (B, K, HW [+1], Di)
        ys = self.attn(ys)
        return self.out_proj(self.multi_scan.merge(ys))

    def _stacked_for_inference(self):
        """The per-direction parameters stacked as the inference kernels read them, cached until a
        parameter changes: conv (K, taps, Di) and bias (K, Di), x_proj transposed (K, Di, R+2N),
        A = -exp(A_log) (K*Di, N), D, dt_proj weight (K, Di, R) and bias (K*Di)."""
        K = self.num_directions
        names = ("conv1d", "x_proj", "dt_proj")
        sources = [getattr(self, f"A_log_{i}") for i in range(K)] + [getattr(self, f"D_{i}") for i in range(K)]
        sources += [p for name in names for i in range(K) for p in getattr(self, f"{name}_{i}").parameters()]

        def build():
            conv_b = self._stacked_module("conv1d", "bias")
            return (self._stacked_module("conv1d", "weight")[:, :, 0].transpose(1, 2).contiguous(), conv_b,
                    self._stacked_module("x_proj", "weight").transpose(1, 2).contiguous(),
                    -torch.exp(self._stacked("A_log")).reshape(K * self.d_inner, self.d_state),
                    self._stacked("D").reshape(-1), self._stacked_module("dt_proj", "weight"),
                    self._stacked_module("dt_proj", "bias").reshape(-1))

        return self._infer_params.get(sources, build)

    def _forward_inference(self, xz: torch.Tensor, table) -> torch.Tensor:
        """forward for inference (CPU, no gradient): the causal conv + SiLU reads x straight from
        in_proj's output through the index (no gathered copy) into direction-major rows, x_proj is one
        batched GEMM over the directions, the scan reads z through the index, and SCAttn's gate and
        the sum over directions are two passes over y (ops/mixer_infer.py)."""
        B = xz.shape[0]
        K, Di, N, R = self.num_directions, self.d_inner, self.d_state, self.dt_rank
        index = table.index
        L = index.shape[1]
        conv_w, conv_b, x_proj_t, A, D, dt_w, dt_b = self._stacked_for_inference()
        record_flops("causal_conv1d", B * K * Di * L * self.d_conv)
        x = scan_conv_channels_last(xz[..., :Di], index, conv_w, conv_b)  # (B, K, L, Di), direction-major
        x_dbl = torch.bmm(x.transpose(0, 1).reshape(K, B * L, Di), x_proj_t).view(K, B, L, R + 2 * N)
        dt, Bs, Cs = torch.split(x_dbl.transpose(0, 1), [R, N, N], dim=-1)  # (B, K, L, .) views
        ys = directional_scan_channels_last(
            x, dt, A, Bs, Cs, index, table.num_tokens, dt_proj_weight=dt_w, D=D, z=xz[..., Di:], delta_bias=dt_b,
            delta_softplus=True, sequence_inputs=True,
        )  # (B, K, T, Di)
        if self.multi_scan.search:
            return self.out_proj(self.multi_scan.merge(self.attn(ys)))
        gate = _gate_from_stats(gate_stats_channels_last(ys, self.attn.norm.eps), self.attn)
        return self.out_proj(gated_merge_channels_last(ys, gate))

    def _forward_channels_last(self, xz: torch.Tensor, table) -> torch.Tensor:
        """forward on the CPU (float32 / float64; inference and training). With gradients: the
        causal conv + SiLU reads x straight from in_proj's output through the index into
        direction-major rows (native backward, ops/scan_conv_train.py), x_proj is one GEMM per
        direction, and the scan (native backward) reads z through the index -- no gathered copy of
        x or z. The CUDA path keeps the fused differentiable op."""
        if channels_last_scan_supported(xz, *self.parameters()):  # no gradient wanted
            return self._forward_inference(xz, table)
        B = xz.shape[0]
        K, Di, N, R = self.num_directions, self.d_inner, self.d_state, self.dt_rank
        index = table.index
        L = index.shape[1]
        conv_w = self._stacked_module("conv1d", "weight")[:, :, 0].transpose(1, 2)  # (K, taps, Di)
        record_flops("causal_conv1d", B * K * Di * L * self.d_conv)
        x = scan_conv_channels_last_train(xz, index, conv_w, self._stacked_module("conv1d", "bias"), x_prefix=True)
        x_proj_t = self._stacked_module("x_proj", "weight").transpose(1, 2)  # (K, Di, R+2N)
        x_dbl = torch.bmm(x.transpose(0, 1).reshape(K, B * L, Di), x_proj_t).view(K, B, L, R + 2 * N)
        dt, Bs, Cs = torch.split(x_dbl.transpose(0, 1), [R, N, N], dim=-1)  # (B, K, L, .) views
        ys = directional_scan_channels_last(
            x, dt, -torch.exp(self._stacked("A_log")).reshape(K * Di, N), Bs, Cs, index, table.num_tokens,
            dt_proj_weight=self._stacked_module("dt_proj", "weight"), D=self._stacked("D").reshape(K * Di),
            z=xz[..., Di:], delta_bias=self._stacked_module("dt_proj", "bias").reshape(K * Di),
            delta_softplus=True, sequence_inputs=True,
        )  # (B, K, T, Di)
        if self.multi_scan.search:
            return self.out_proj(self.multi_scan.merge(self.attn(ys)))
        return self.out_proj(_gated_sum(ys, self.attn, native=True))

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, d_inner={self.d_inner}, d_state={self.d_state}, dt_rank={self.dt_rank}"


class SS2D(_BackendMixin, nn.Module):
    """LocalVMamba mixer (the release's ``SS2D`` with ``MultiScanVSSM``).

    in_proj -> (x, z); z = SiLU(z); x -> depthwise conv2d -> SiLU -> for each direction k:
    x_proj_k per token, dt from dt_projs_weight[k] -> one selective scan over all K·d_inner
    channels (direction-major, grouped B/C) -> per direction: reverse, SCAttn (shared) -> merge
    -> LayerNorm -> · z -> out_proj. Window padding tokens are zeros after the conv (so u = B = C
    = 0 there and the state decays), and every direction is zero-padded at the end to the longest.
    """

    def __init__(
        self,
        d_model: int,
        directions: Sequence[str],
        search: bool = False,
        d_state: int = 16,
        ssm_ratio: float = 2.0,
        dt_rank="auto",
        d_conv: int = 3,
        conv_bias: bool = True,
        bias: bool = False,
        dropout: float = 0.0,
        norm_eps: float = 1e-5,
        backend: Optional[str] = None,
    ):
        super().__init__()
        directions = parsed_directions(directions)  # parsed once; MultiScan keeps them as they are
        K = len(directions)
        d_inner = int(ssm_ratio * d_model)
        self.d_model = d_model
        self.d_inner = d_inner
        self.d_state = d_state
        self.d_conv = d_conv
        self.dt_rank = math.ceil(d_model / 16) if dt_rank == "auto" else int(dt_rank)
        self.backend = backend
        R, N = self.dt_rank, d_state

        x_proj = torch.empty(K, R + 2 * N, d_inner)
        bound = 1.0 / math.sqrt(d_inner)  # nn.Linear's default (kaiming-uniform, a=sqrt(5))
        nn.init.uniform_(x_proj, -bound, bound)
        self.x_proj_weight = nn.Parameter(x_proj)
        dt_std = R ** -0.5
        self.dt_projs_weight = nn.Parameter(torch.empty(K, d_inner, R).uniform_(-dt_std, dt_std))
        self.dt_projs_bias = nn.Parameter(torch.stack([dt_bias_init(d_inner) for _ in range(K)]))
        self.A_logs = nn.Parameter(_a_log_init(d_inner, N).repeat(K, 1))
        self.A_logs._no_weight_decay = True
        self.Ds = nn.Parameter(torch.ones(K * d_inner))
        self.Ds._no_weight_decay = True

        self.out_norm = nn.LayerNorm(d_inner, eps=norm_eps)
        self.in_proj = nn.Linear(d_model, 2 * d_inner, bias=bias)
        self.act = nn.SiLU()
        if d_conv > 1:
            self.conv2d = nn.Conv2d(d_inner, d_inner, d_conv, groups=d_inner, bias=conv_bias, padding=(d_conv - 1) // 2)
        self.out_proj = nn.Linear(d_inner, d_model, bias=bias)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.multi_scan = MultiScan(d_inner, directions, search=search, with_attn=True, eps=norm_eps)
        self._infer_A = _DerivedParams()

    @property
    def directions(self) -> Tuple[str, ...]:
        return self.multi_scan.directions

    @property
    def num_directions(self) -> int:
        return self.multi_scan.num_directions

    def forward_core(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, d_inner, H, W) after conv and activation -> (B, H*W, d_inner) merged, normalised.

        One fused directional scan: x_proj runs once per token in spatial order (it commutes with
        the reorder), delta = dt_projs_weight · dt is computed inside the kernel, and the kernel reads
        every direction through its index map and writes y straight back in spatial order -- the
        same result as local_scan -> selective_scan -> local_reverse without the K reordered copies.
        """
        B, Di, H, W = x.shape
        N, R = self.d_state, self.dt_rank
        if self._channels_last_scan(x):
            return self._forward_core_channels_last(x)
        xs = _dense(x.reshape(B, Di, H * W), x.dtype)
        x_dbl = torch.einsum("bdl,kcd->bkcl", xs, self.x_proj_weight.to(xs.dtype))  # (B, K, R+2N, HW)
        dts, Bs, Cs = torch.split(x_dbl, [R, N, N], dim=2)
        y = directional_selective_scan(
            xs, dts, -torch.exp(self.A_logs.float()), Bs, Cs, index=self.multi_scan.scan_table(H, W, xs.device),
            D=self.Ds.float(),
            delta_bias=self.dt_projs_bias.reshape(-1).float(),
            delta_softplus=True,
            dt_proj_weight=self.dt_projs_weight,
            layout="BLC",
            backend=self._backend(),
        )  # (B, K, HW, Di)
        if self.multi_scan.search:
            y = self.multi_scan.merge(self.multi_scan.attn(y))
        else:
            y = _gated_sum(y, self.multi_scan.attn)
        return self.out_norm(y)

    def _channels_last_scan(self, x: torch.Tensor) -> bool:
        """Whether the channels-last scan runs (native backend, CPU, float32 / float64; forward-only
        without gradients, with its native backward in training)."""
        return self._backend() == "native" and channels_last_train_supported(
            x, self.x_proj_weight, self.dt_projs_weight, self.A_logs, self.Ds)

    def _scan_channels_last(self, x: torch.Tensor) -> torch.Tensor:
        """The K directions' scans on the CPU (inference and training): the tokens stay (B, HW, Di),
        x_proj is one GEMM over every direction, and the scan reads u, dt, B, C in that layout (no
        transposed copies). x: (B, Di, H, W) (channels_last in memory) -> y (B, K, HW, Di)."""
        B, Di, H, W = x.shape
        K, N, R = self.num_directions, self.d_state, self.dt_rank
        xs = x.permute(0, 2, 3, 1).reshape(B, H * W, Di)  # a view when x is channels_last in memory
        x_dbl = F.linear(xs, self.x_proj_weight.reshape(K * (R + 2 * N), Di)).view(B, H * W, K, R + 2 * N)
        dts, Bs, Cs = (t.transpose(1, 2) for t in torch.split(x_dbl, [R, N, N], dim=-1))  # (B, K, HW, .)
        if channels_last_scan_supported(self.A_logs):  # no gradient wanted: A cached per weight update
            A = self._infer_A.get([self.A_logs], lambda: -torch.exp(self.A_logs))
        else:
            A = -torch.exp(self.A_logs)
        return directional_scan_channels_last(
            xs, dts, A, Bs, Cs, self.multi_scan.scan_table(H, W, xs.device).index, H * W,
            dt_proj_weight=self.dt_projs_weight, D=self.Ds, delta_bias=self.dt_projs_bias.reshape(-1),
            delta_softplus=True,
        )  # (B, K, HW, Di)

    def _forward_core_channels_last(self, x: torch.Tensor) -> torch.Tensor:
        """forward_core on the CPU (inference and training), see _scan_channels_last."""
        y = self._scan_channels_last(x)
        if self.multi_scan.search:
            y = self.multi_scan.merge(self.multi_scan.attn(y))
        else:
            y = _gated_sum(y, self.multi_scan.attn, native=True)
        return self.out_norm(y)

    def _forward_fused(self, x: torch.Tensor, z: torch.Tensor, z_silu: bool) -> torch.Tensor:
        """forward_core, the z gate included, for inference of a fixed architecture (CPU, no
        gradient): after the scans, SCAttn's statistics are one pass over y and the gated sum,
        out_norm and the z gate (silu(z) when ``z_silu``) a second, writing the (B, HW, Di) input
        of out_proj (ops/mixer_infer.py)."""
        B, Di, H, W = x.shape
        y = self._scan_channels_last(x)
        attn = self.multi_scan.attn
        gate = _gate_from_stats(gate_stats_channels_last(y, attn.norm.eps), attn)
        return gated_merge_channels_last(y, gate, self.out_norm.weight, self.out_norm.bias, self.out_norm.eps,
                                         z=z.reshape(B, H * W, Di), z_silu=z_silu)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, H, W, d_model) channels-last -> same shape."""
        B, H, W, _ = x.shape
        xz = self.in_proj(x)
        # inference keeps the tokens channels-last in memory end to end (see forward_core)
        fmt = torch.channels_last if self._channels_last_scan(xz) else torch.contiguous_format
        fused = (fmt == torch.channels_last and not self.multi_scan.search and isinstance(self.act, nn.SiLU)
                 and channels_last_scan_supported(xz, *self.parameters()))  # inference: no gradient wanted
        if self.d_conv > 1:
            x, z = xz.chunk(2, dim=-1)
            x = self.act(self.conv2d(x.permute(0, 3, 1, 2).contiguous(memory_format=fmt)))
        else:
            xz = self.act(xz)
            x, z = xz.chunk(2, dim=-1)
            x = x.permute(0, 3, 1, 2).contiguous(memory_format=fmt)
        if fused:
            y = self._forward_fused(x, z, z_silu=self.d_conv > 1).view(B, H, W, -1)
            return self.dropout(self.out_proj(y))
        if self.d_conv > 1:
            z = self.act(z)
        y = self.forward_core(x).view(B, H, W, -1).to(z.dtype)
        return self.dropout(self.out_proj(y * z))

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, d_inner={self.d_inner}, d_state={self.d_state}, dt_rank={self.dt_rank}"
