"""LocalVim: the plain (Vim-style) LocalMamba family (SPEC section 1.3).

Patch embedding (inputs padded to a multiple of the patch), learned absolute position
embedding, 2-D rotary embedding on the hidden states and the fp32 residual, "add -> RMSNorm ->
MultiMamba" blocks with stochastic depth, final norm, mean pooling (or the middle class token),
linear head. State-dict keys, shapes and order are the release's.
"""
from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..nn.layers import DropPath, PatchEmbed, RMSNorm, RotaryEmbedding2D, check_image, resize_pos_embed, to_2tuple
from ..nn.mixers import MultiMamba
from ..ops.backend import BACKENDS
from ..ops.directions import PLAIN_DIRECTIONS
from . import _directions
from ._builder import build_model
from ._args import check_choice, check_dt_rank, check_int, check_positive_float, check_rate, check_size
from ._directions import DirectionsArg, resolve_layer_directions
from ._features import FeatureInfo
from ._grad_checkpointing import GradCheckpointing
from ._init import init_linear_and_layernorm
from ._pretrained import RELEASE_URL
from ._registry import register_model

__all__ = ["LocalVim", "LocalVimBackbone", "resolve_layer_directions"]

class Block(nn.Module):
    """Add -> norm -> mixer, returning (mixer output, residual); the residual is kept in fp32."""

    def __init__(self, dim: int, mixer: nn.Module, norm_eps: float = 1e-5, rms_norm: bool = True,
                 residual_in_fp32: bool = True, drop_path: float = 0.0):
        super().__init__()
        self.residual_in_fp32 = residual_in_fp32
        self.mixer = mixer
        self.norm = RMSNorm(dim, eps=norm_eps) if rms_norm else nn.LayerNorm(dim, eps=norm_eps)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, hidden_states: torch.Tensor, residual: Optional[torch.Tensor], grid_size: Tuple[int, int],
                cls_index: Optional[int] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        residual = hidden_states if residual is None else residual + self.drop_path(hidden_states)
        hidden_states = self.norm(residual.to(dtype=self.norm.weight.dtype))
        if self.residual_in_fp32:
            residual = residual.to(torch.float32)
        return self.mixer(hidden_states, grid_size, cls_index), residual


class LocalVim(GradCheckpointing, nn.Module):
    """LocalVim classifier.

    Args mirror the release's ``VisionMamba`` with clearer names (see ``from_release_kwargs``):
    img_size, patch_size, in_chans, num_classes, embed_dim, depth; directions (see
    :func:`resolve_layer_directions`) and search; d_state, d_conv, expand, dt_rank; rope,
    rope_residual, pt_hw_seq_len; pos_embed; middle_cls_token; global_pool ("mean" | "token" |
    ""); drop_rate (after the position embedding), drop_path_rate; norm_eps, rms_norm,
    residual_in_fp32; backend (None = the global default of ``localmamba.ops``).
    """

    def __init__(
        self,
        img_size: Union[int, Tuple[int, int]] = 224,
        patch_size: int = 16,
        in_chans: int = 3,
        num_classes: int = 1000,
        embed_dim: int = 192,
        depth: int = 20,
        directions: DirectionsArg = None,
        search: Optional[bool] = None,
        d_state: int = 16,
        d_conv: int = 4,
        expand: float = 2,
        dt_rank: Union[str, int] = "auto",
        rope: bool = True,
        rope_residual: bool = True,
        pt_hw_seq_len: int = 14,
        pos_embed: bool = True,
        middle_cls_token: bool = False,
        global_pool: Optional[str] = None,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        norm_eps: float = 1e-5,
        rms_norm: bool = True,
        residual_in_fp32: bool = True,
        backend: Optional[str] = None,
    ):
        super().__init__()
        check_size("img_size", img_size)
        check_size("patch_size", patch_size)
        for name, value, minimum in (("in_chans", in_chans, 1), ("num_classes", num_classes, 0),
                                     ("embed_dim", embed_dim, 1), ("depth", depth, 1), ("d_state", d_state, 1),
                                     ("d_conv", d_conv, 1), ("pt_hw_seq_len", pt_hw_seq_len, 1)):
            check_int(name, value, minimum)
        check_dt_rank(dt_rank)
        check_positive_float("expand", expand)
        check_positive_float("norm_eps", norm_eps)
        check_rate("drop_rate", drop_rate)
        check_rate("drop_path_rate", drop_path_rate)
        check_choice("backend", backend, (None, *BACKENDS))
        if global_pool is None:
            global_pool = "token" if middle_cls_token else "mean"
        check_choice("global_pool", global_pool, ("mean", "avg", "token", ""))
        if global_pool == "token" and not middle_cls_token:
            raise ValueError("global_pool='token' needs middle_cls_token=True")
        layer_dirs, search = resolve_layer_directions(directions, depth, search)
        self.layer_directions = layer_dirs
        self.search = search
        self.num_classes = num_classes
        self.embed_dim = self.num_features = embed_dim
        self.depth = depth
        self.in_chans = in_chans
        self.global_pool = "mean" if global_pool == "avg" else global_pool
        self.residual_in_fp32 = residual_in_fp32
        self.use_rope = rope
        self.rope_residual = rope and rope_residual
        self.use_pos_embed = pos_embed
        self.middle_cls_token = middle_cls_token
        self.num_prefix_tokens = 1 if middle_cls_token else 0
        self.drop_path_rate = drop_path_rate

        self.patch_embed = PatchEmbed(img_size, patch_size, in_chans, embed_dim)
        self.patch_size = self.patch_embed.patch_size
        self.grid_size = self.patch_embed.grid_size
        num_patches = self.patch_embed.num_patches
        if middle_cls_token:
            self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        if pos_embed:
            self.pos_embed = nn.Parameter(torch.zeros(1, num_patches + self.num_prefix_tokens, embed_dim))
            self.pos_drop = nn.Dropout(drop_rate)
        if rope:
            self.rope = RotaryEmbedding2D(embed_dim, self.grid_size, pt_seq_len=pt_hw_seq_len)
        self.head = nn.Linear(embed_dim, num_classes) if num_classes > 0 else nn.Identity()

        # stochastic depth as released: block i drops the previous mixer's output with rate
        # ([0] + linspace(0, rate, depth))[i]; the final add uses the full rate.
        dpr = [0.0] + [x.item() for x in torch.linspace(0, drop_path_rate, depth, device="cpu")]
        self.drop_path = DropPath(drop_path_rate) if drop_path_rate > 0 else nn.Identity()
        self.layers = nn.ModuleList(
            Block(
                embed_dim,
                MultiMamba(embed_dim, layer_dirs[i], search=search, d_state=d_state, d_conv=d_conv, expand=expand,
                           dt_rank=dt_rank, backend=backend),
                norm_eps=norm_eps,
                rms_norm=rms_norm,
                residual_in_fp32=residual_in_fp32,
                drop_path=dpr[i],
            )
            for i in range(depth)
        )
        self.norm_f = RMSNorm(embed_dim, eps=norm_eps) if rms_norm else nn.LayerNorm(embed_dim, eps=norm_eps)
        self.init_weights()

    # ------------------------------------------------------------------ construction helpers
    def init_weights(self) -> None:
        """The release's initialisation (SPEC 1.3): trunc_normal(0.02) Linear weights and zero biases
        (dt_proj included), LayerNorm 1/0, pos_embed trunc_normal(0.02), then each out_proj
        kaiming-uniform(a=sqrt(5)) / sqrt(depth)."""
        for m in self.modules():
            init_linear_and_layernorm(m)
        if self.use_pos_embed:
            nn.init.trunc_normal_(self.pos_embed, std=0.02)
        for layer in self.layers:
            w = layer.mixer.out_proj.weight
            nn.init.kaiming_uniform_(w, a=math.sqrt(5))
            with torch.no_grad():
                w.div_(math.sqrt(self.depth))

    @classmethod
    def from_release_kwargs(cls, **kw: Any) -> "LocalVim":
        """Builds the model the release's ``VisionMamba(**kw)`` builds (its argument names)."""
        kw = dict(kw)
        ssm_cfg = kw.pop("ssm_cfg", None) or {}
        mapping = dict(channels="in_chans", norm_epsilon="norm_eps", if_rope="rope", if_rope_residual="rope_residual",
                       if_abs_pos_embed="pos_embed", use_middle_cls_token="middle_cls_token")
        args: Dict[str, Any] = {}
        for key, value in kw.items():
            if key in ("fused_add_norm", "bimamba_type", "if_cls_token", "device", "dtype", "mamba_cls",
                       "initializer_cfg", "if_devide_out"):
                continue
            if key == "final_pool_type":
                continue
            if key == "ft_seq_len":
                continue
            args[mapping.get(key, key)] = value
        if kw.get("if_cls_token") and not kw.get("use_middle_cls_token"):
            raise ValueError("only the middle class token variant of the release is supported")
        if not kw.get("if_cls_token"):
            pool = kw.get("final_pool_type", "mean")
            if pool != "mean":
                raise ValueError(f"final_pool_type={pool!r} is not supported (mean pooling only)")
        args.update({k: v for k, v in ssm_cfg.items() if k in ("d_state", "d_conv", "expand", "dt_rank")})
        return cls(**args)

    # ------------------------------------------------------------------ backend
    def set_backend(self, backend: Optional[str]) -> "LocalVim":
        """Sets the op backend of every mixer ("native", "reference", or None for the global default)."""
        for layer in self.layers:
            layer.mixer.backend = backend
        return self

    # ------------------------------------------------------------------ timm-style API
    is_backbone = False

    def checkpoint_filter_fn(self, state_dict: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        return checkpoint_filter_fn(state_dict, self)

    @torch.jit.ignore
    def no_weight_decay(self):
        return {"pos_embed", "cls_token"}

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> Dict[str, Any]:
        """timm's parameter groups (layer-wise LR decay): the embeddings, then one group per layer."""
        return dict(stem=r"^cls_token|^pos_embed|^patch_embed|^rope",
                    blocks=[(r"^layers\.(\d+)", None), (r"^norm_f", (99999,))])

    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None) -> None:
        self.num_classes = num_classes
        if global_pool is not None:
            self.global_pool = global_pool
        self.head = nn.Linear(self.embed_dim, num_classes) if num_classes > 0 else nn.Identity()

    def _pos_embed_for(self, grid: Tuple[int, int]) -> torch.Tensor:
        if grid == tuple(self.grid_size):
            return self.pos_embed
        return resize_pos_embed_with_prefix(self.pos_embed, self.grid_size, grid, self.middle_cls_token)

    def _embed(self, x: torch.Tensor) -> Tuple[torch.Tensor, Tuple[int, int], Optional[int]]:
        check_image(x, self.in_chans)
        grid = self.patch_embed.grid_for(x.shape[-2], x.shape[-1])
        x = self.patch_embed(x)
        cls_index = None
        if self.middle_cls_token:
            cls_index = x.shape[1] // 2
            cls = self.cls_token.expand(x.shape[0], -1, -1)
            x = torch.cat([x[:, :cls_index], cls, x[:, cls_index:]], dim=1)
        if self.use_pos_embed:
            x = self.pos_drop(x + self._pos_embed_for(grid))
        return x, grid, cls_index

    def _rotate(self, t: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, cls_index: Optional[int]) -> torch.Tensor:
        if cls_index is None:
            return RotaryEmbedding2D.rotate(t, cos, sin)
        patches = torch.cat([t[:, :cls_index], t[:, cls_index + 1:]], dim=1)
        patches = RotaryEmbedding2D.rotate(patches, cos, sin)
        return torch.cat([patches[:, :cls_index], t[:, cls_index:cls_index + 1], patches[:, cls_index:]], dim=1)

    def _run_layers(self, x: torch.Tensor, grid: Tuple[int, int], cls_index: Optional[int],
                    collect: Optional[Sequence[int]] = None):
        residual = None
        hidden = x
        if self.use_rope:
            cos, sin = self.rope.tables(grid)
        outs = []
        for i, layer in enumerate(self.layers):
            if self.use_rope:
                hidden = self._rotate(hidden, cos, sin, cls_index)
                if residual is not None and self.rope_residual:
                    residual = self._rotate(residual, cos, sin, cls_index)
            hidden, residual = self.run_block(layer, hidden, residual, grid, cls_index)
            if collect is not None and i in collect:
                outs.append(hidden)
        return hidden, residual, outs

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) images -> (B, tokens, embed_dim) after the final norm."""
        x, grid, cls_index = self._embed(x)
        hidden, residual, _ = self._run_layers(x, grid, cls_index)
        residual = residual + self.drop_path(hidden)
        return self.norm_f(residual.to(dtype=self.norm_f.weight.dtype))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        if self.global_pool == "token":
            x = x[:, (x.shape[1] - 1) // 2]  # the middle class token (index num_patches // 2)
        elif self.global_pool == "mean":
            x = x.mean(dim=1)
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _grid_of(n: int, fallback) -> Tuple[int, int]:
    side = int(math.isqrt(n))
    return (side, side) if side * side == n else tuple(fallback)


def checkpoint_filter_fn(state_dict: Dict[str, torch.Tensor], model: "LocalVim") -> Dict[str, torch.Tensor]:
    """Fits a checkpoint (ours or the release's) to ``model`` (timm's convention): drops the
    classifier keys for a backbone and resizes the position embedding / rotary tables bicubically
    when the model was built for another input size."""
    state = dict(state_dict)
    if getattr(model, "is_backbone", False):
        state = {k: v for k, v in state.items() if not (k.startswith("head.") or k.startswith("norm_f."))}
    prefix = 1 if model.middle_cls_token else 0
    target_grid = tuple(model.grid_size)
    pe = state.get("pos_embed")
    if pe is not None and model.use_pos_embed and pe.shape != model.pos_embed.shape:
        old_grid = _grid_of(pe.shape[1] - prefix, target_grid)
        state["pos_embed"] = resize_pos_embed_with_prefix(pe, old_grid, target_grid, model.middle_cls_token)
    for key in ("rope.freqs_cos", "rope.freqs_sin"):
        t = state.get(key)
        if t is not None and model.use_rope and t.shape != getattr(model.rope, key.split(".")[1]).shape:
            state[key] = resize_pos_embed(t.unsqueeze(0), _grid_of(t.shape[0], target_grid), target_grid)[0]
    return state


def resize_pos_embed_with_prefix(pos_embed: torch.Tensor, old_grid, new_grid, middle_cls_token: bool) -> torch.Tensor:
    """Resizes (1, [1+] Ho*Wo, C) bicubically; a middle class token's entry moves to the new middle index."""
    old_grid, new_grid = tuple(old_grid), tuple(new_grid)
    if not middle_cls_token:
        return resize_pos_embed(pos_embed, old_grid, new_grid)
    old_n = old_grid[0] * old_grid[1]
    if pos_embed.shape[1] != old_n + 1:
        raise ValueError(f"position embedding of shape {tuple(pos_embed.shape)} does not match {old_grid} + cls")
    c_old, c_new = old_n // 2, (new_grid[0] * new_grid[1]) // 2
    cls = pos_embed[:, c_old:c_old + 1]
    grid = torch.cat([pos_embed[:, :c_old], pos_embed[:, c_old + 1:]], dim=1)
    grid = resize_pos_embed(grid, old_grid, new_grid)
    return torch.cat([grid[:, :c_new], cls, grid[:, c_new:]], dim=1)


class LocalVimBackbone(LocalVim):
    """LocalVim as a ViTDet-style backbone: the outputs of chosen layers as (B, C, H, W) maps.

    As in the release's ``Backbone_LocalVisionMamba``: no head and no final norm; layer i's mixer
    output passes through its own LayerNorm ``outnorm_{j}``. All maps have stride = patch size.
    """

    def __init__(self, out_indices: Sequence[int] = (4, 9, 14, 19), **kwargs: Any):
        kwargs["num_classes"] = 0
        super().__init__(**kwargs)
        out_indices = [int(i) % self.depth if i < 0 else int(i) for i in out_indices]
        for i in out_indices:
            if not 0 <= i < self.depth:
                raise ValueError(f"out_indices must index the {self.depth} layers, got {i}")
        self.out_indices = tuple(out_indices)
        del self.head
        del self.norm_f
        for j in range(len(self.out_indices)):
            self.add_module(f"outnorm_{j}", nn.LayerNorm(self.embed_dim))
        self.feature_info = FeatureInfo(
            [dict(num_chs=self.embed_dim, reduction=self.patch_size[0], module=f"layers.{i}") for i in range(self.depth)],
            self.out_indices,
        )

    is_backbone = True  # checkpoints load non-strictly: a classifier's lacks the outnorms

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        x, (H, W), cls_index = self._embed(x)
        _, _, outs = self._run_layers(x, (H, W), cls_index, collect=self.out_indices)
        maps = []
        for j, o in enumerate(outs):
            if cls_index is not None:
                o = torch.cat([o[:, :cls_index], o[:, cls_index + 1:]], dim=1)
            o = getattr(self, f"outnorm_{j}")(o)
            maps.append(o.transpose(1, 2).reshape(o.shape[0], self.embed_dim, H, W).contiguous())
        return maps


# ---------------------------------------------------------------------------- entrypoints
_RELEASE = dict(patch_size=16, depth=20, rms_norm=True, residual_in_fp32=True, pos_embed=True, pt_hw_seq_len=14)


def _build(defaults: Dict[str, Any], kwargs: Dict[str, Any]) -> LocalVim:
    return build_model(LocalVim, LocalVimBackbone, defaults, kwargs)


_VIM_CFG = dict(family="local_vim", first_conv="patch_embed.proj")


@register_model(paper_top1=76.2, url=RELEASE_URL + "local_vim_tiny.ckpt", **_VIM_CFG)
def local_vim_tiny(**kwargs: Any) -> LocalVim:
    """LocalVim-T: embed 192, depth 20, searched directions, rope + abs pos embed, mean pool."""
    return _build(dict(_RELEASE, embed_dim=192, directions=_directions.LOCAL_VIM_TINY), kwargs)


@register_model(paper_top1=77.8, url=RELEASE_URL + "local_vim_tiny_middle_cls_token.ckpt", **_VIM_CFG)
def local_vim_tiny_middle_cls_token(**kwargs: Any) -> LocalVim:
    """LocalVim-T with a middle class token (no rope); the head reads the class token."""
    return _build(dict(_RELEASE, embed_dim=192, directions=_directions.LOCAL_VIM_TINY, rope=False, rope_residual=False,
                       middle_cls_token=True), kwargs)


@register_model(paper_top1=81.1, url=RELEASE_URL + "local_vim_small.ckpt", **_VIM_CFG)
def local_vim_small(**kwargs: Any) -> LocalVim:
    """LocalVim-S: embed 384 (the release's effective definition: h, h_flip, w2, w2_flip in every layer)."""
    return _build(dict(_RELEASE, embed_dim=384, directions=_directions.LOCAL_VIM_SMALL), kwargs)


@register_model(**_VIM_CFG)
def local_vim_tiny_search(**kwargs: Any) -> LocalVim:
    """LocalVim-T search supernet: embed 128, all 8 candidates per layer, softmax(α) merge."""
    return _build(dict(_RELEASE, embed_dim=128, directions=None), kwargs)


@register_model(**_VIM_CFG)
def local_vim_tiny_wo_search(**kwargs: Any) -> LocalVim:
    """Ablation of the release: LocalVim-T with h, h_flip, w2, w2_flip in every layer (no search)."""
    return _build(dict(_RELEASE, embed_dim=192, directions=_directions.LOCAL_VIM_TINY_WO_SEARCH), kwargs)


@register_model(**_VIM_CFG)
def local_vim_tiny_plain(**kwargs: Any) -> LocalVim:
    """Baseline without windows: LocalVim-T with the plain h, h_flip, v, v_flip in every layer."""
    return _build(dict(_RELEASE, embed_dim=192, directions=PLAIN_DIRECTIONS), kwargs)


@register_model(**_VIM_CFG)
def local_vim_small_plain(**kwargs: Any) -> LocalVim:
    """Baseline without windows: LocalVim-S with the plain h, h_flip, v, v_flip in every layer."""
    return _build(dict(_RELEASE, embed_dim=384, directions=PLAIN_DIRECTIONS), kwargs)


_TEST = dict(img_size=32, patch_size=8, embed_dim=32, depth=2, pt_hw_seq_len=4, d_state=8, num_classes=10,
             rms_norm=True, residual_in_fp32=True, pos_embed=True,
             directions=(("h", "v_flip", "w2", "w7_flip"), ("h_flip", "v", "w2_flip", "w7")))


@register_model(test_variant=True, input_size=(3, 32, 32), num_classes=10, **_VIM_CFG)
def local_vim_test(**kwargs: Any) -> LocalVim:
    """Tiny LocalVim for tests: 32x32 input, patch 8 (4x4 tokens), embed 32, depth 2, 10 classes."""
    return _build(_TEST, kwargs)


@register_model(test_variant=True, input_size=(3, 32, 32), num_classes=10, **_VIM_CFG)
def local_vim_test_middle_cls_token(**kwargs: Any) -> LocalVim:
    """Tiny LocalVim with a middle class token, for tests."""
    return _build(dict(_TEST, rope=False, rope_residual=False, middle_cls_token=True), kwargs)


@register_model(test_variant=True, input_size=(3, 32, 32), num_classes=10, **_VIM_CFG)
def local_vim_test_search(**kwargs: Any) -> LocalVim:
    """Tiny LocalVim search supernet (8 candidates per layer), for tests."""
    return _build(dict(_TEST, directions=None), kwargs)
