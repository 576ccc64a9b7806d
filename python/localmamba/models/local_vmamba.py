"""LocalVMamba: the hierarchical (VMamba-style) LocalMamba family (SPEC section 1.3).

Stem conv 4x4/4 -> channels-last -> LayerNorm; four stages of ``x + drop_path(SS2D(LN(x)))``
blocks with patch merging between them; classifier LayerNorm -> global average pool -> Linear.
State-dict keys, shapes and order are the release's (``VSSM``).
"""
from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..nn.layers import DropPath, check_image, to_2tuple
from ..nn.mixers import SS2D
from ..ops.backend import BACKENDS
from ..ops.directions import PLAIN_DIRECTIONS
from . import _directions
from ._builder import build_model
from ._args import check_choice, check_dt_rank, check_int, check_ints, check_positive_float, check_rate, check_size
from ._directions import DirectionsArg, resolve_layer_directions
from ._features import FeatureInfo
from ._grad_checkpointing import GradCheckpointing
from ._init import init_linear_and_layernorm
from ._pretrained import RELEASE_URL
from ._registry import register_model

__all__ = ["LocalVMamba", "LocalVMambaBackbone", "VSSBlock", "PatchMerging2D"]


class Permute(nn.Module):
    def __init__(self, *dims: int):
        super().__init__()
        self.dims = dims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(*self.dims)

    def extra_repr(self) -> str:
        return f"dims={self.dims}"


class PatchMerging2D(nn.Module):
    """2x2 neighbourhood concat (x[0::2,0::2], x[1::2,0::2], x[0::2,1::2], x[1::2,1::2]) -> LayerNorm(4C)
    -> Linear(4C -> out, no bias). Odd grids are zero-padded at the bottom/right. (B, H, W, C) layout."""

    def __init__(self, dim: int, out_dim: int = -1, norm_eps: float = 1e-5):
        super().__init__()
        self.dim = dim
        self.reduction = nn.Linear(4 * dim, (2 * dim) if out_dim < 0 else out_dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim, eps=norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        H, W = x.shape[-3:-1]
        if H % 2 or W % 2:
            x = F.pad(x, (0, 0, 0, W % 2, 0, H % 2))
        x = torch.cat([x[..., 0::2, 0::2, :], x[..., 1::2, 0::2, :], x[..., 0::2, 1::2, :], x[..., 1::2, 1::2, :]], -1)
        return self.reduction(self.norm(x))


class VSSBlock(nn.Module):
    """x + drop_path(SS2D(LayerNorm(x))) on (B, H, W, C)."""

    def __init__(self, hidden_dim: int, directions: Sequence[str], search: bool = False, drop_path: float = 0.0,
                 norm_eps: float = 1e-5, d_state: int = 16, ssm_ratio: float = 2.0, dt_rank="auto", d_conv: int = 3,
                 conv_bias: bool = True, ssm_drop_rate: float = 0.0, backend: Optional[str] = None):
        super().__init__()
        self.norm = nn.LayerNorm(hidden_dim, eps=norm_eps)
        self.op = SS2D(hidden_dim, directions, search=search, d_state=d_state, ssm_ratio=ssm_ratio, dt_rank=dt_rank,
                       d_conv=d_conv, conv_bias=conv_bias, dropout=ssm_drop_rate, norm_eps=norm_eps, backend=backend)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.drop_path(self.op(self.norm(x)))


class LocalVMamba(GradCheckpointing, nn.Module):
    """LocalVMamba classifier (the release's ``VSSM`` with per-block directions).

    Args: img_size (nominal, for cfgs/profiling; any input size works), patch_size, in_chans,
    num_classes, depths, dims (list, or an int doubled per stage); directions (one list per
    block over all stages, a single list for every block, or None for a search supernet) and
    search; d_state, ssm_ratio, dt_rank, d_conv, conv_bias, ssm_drop_rate; drop_rate (before
    the head), drop_path_rate (linear over all blocks); patch_norm; norm_eps; backend.
    """

    def __init__(
        self,
        img_size: Union[int, Tuple[int, int]] = 224,
        patch_size: int = 4,
        in_chans: int = 3,
        num_classes: int = 1000,
        depths: Sequence[int] = (2, 2, 9, 2),
        dims: Union[int, Sequence[int]] = (96, 192, 384, 768),
        directions: DirectionsArg = None,
        search: Optional[bool] = None,
        d_state: int = 16,
        ssm_ratio: float = 2.0,
        dt_rank: Union[str, int] = "auto",
        d_conv: int = 3,
        conv_bias: bool = True,
        ssm_drop_rate: float = 0.0,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.1,
        patch_norm: bool = True,
        norm_eps: float = 1e-5,
        backend: Optional[str] = None,
    ):
        super().__init__()
        depths = list(check_ints("depths", depths))
        if isinstance(dims, int) and not isinstance(dims, bool):
            dims = [check_int("dims", dims) * 2 ** i for i in range(len(depths))]
        dims = list(check_ints("dims", dims))
        if len(dims) != len(depths):
            raise ValueError(f"dims ({len(dims)}) and depths ({len(depths)}) must have the same length")
        check_size("img_size", img_size)
        check_size("patch_size", patch_size)
        for name, value, minimum in (("in_chans", in_chans, 1), ("num_classes", num_classes, 0),
                                     ("d_state", d_state, 1), ("d_conv", d_conv, 1)):
            check_int(name, value, minimum)
        check_dt_rank(dt_rank)
        check_positive_float("ssm_ratio", ssm_ratio)
        check_positive_float("norm_eps", norm_eps)
        for name, value in (("ssm_drop_rate", ssm_drop_rate), ("drop_rate", drop_rate),
                            ("drop_path_rate", drop_path_rate)):
            check_rate(name, value)
        check_choice("backend", backend, (None, *BACKENDS))
        block_dirs, search = resolve_layer_directions(directions, sum(depths), search, what="block")
        self.block_directions = block_dirs
        self.search = search
        self.num_classes = num_classes
        self.depths = depths
        self.dims = dims
        self.num_layers = len(depths)
        self.num_features = dims[-1]
        self.in_chans = in_chans
        self.img_size = to_2tuple(img_size)
        self.patch_size = to_2tuple(patch_size)
        self.drop_rate = drop_rate
        self.drop_path_rate = drop_path_rate

        self.patch_embed = nn.Sequential(
            nn.Conv2d(in_chans, dims[0], kernel_size=self.patch_size, stride=self.patch_size, bias=True),
            Permute(0, 2, 3, 1),
            nn.LayerNorm(dims[0], eps=norm_eps) if patch_norm else nn.Identity(),
        )
        dpr = [x.item() for x in torch.linspace(0, drop_path_rate, sum(depths), device="cpu")]
        self.layers = nn.ModuleList()
        start = 0
        for i, depth in enumerate(depths):
            blocks = [
                VSSBlock(dims[i], block_dirs[start + j], search=search, drop_path=dpr[start + j], norm_eps=norm_eps,
                         d_state=d_state, ssm_ratio=ssm_ratio, dt_rank=dt_rank, d_conv=d_conv, conv_bias=conv_bias,
                         ssm_drop_rate=ssm_drop_rate, backend=backend)
                for j in range(depth)
            ]
            downsample = PatchMerging2D(dims[i], dims[i + 1], norm_eps=norm_eps) if i < len(depths) - 1 else nn.Identity()
            self.layers.append(nn.Sequential(OrderedDict(blocks=nn.Sequential(*blocks), downsample=downsample)))
            start += depth
        self.classifier = nn.Sequential(OrderedDict(
            norm=nn.LayerNorm(self.num_features, eps=norm_eps),
            permute=Permute(0, 3, 1, 2),
            avgpool=nn.AdaptiveAvgPool2d(1),
            flatten=nn.Flatten(1),
            head=nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity(),
        ))
        self.head_drop = nn.Dropout(drop_rate)
        self.apply(init_linear_and_layernorm)  # the release's init (SS2D keeps Mamba's dt init, A = -[1..N], D = 1)

    @classmethod
    def from_release_kwargs(cls, **kw: Any) -> "LocalVMamba":
        """Builds the model the release's ``VSSM(**kw)`` builds (its argument names)."""
        mapping = dict(in_chans="in_chans", ssm_d_state="d_state", ssm_dt_rank="dt_rank", ssm_conv="d_conv",
                       ssm_conv_bias="conv_bias")
        args: Dict[str, Any] = {}
        use_checkpoint = False
        for key, value in kw.items():
            if key == "ssm_act_layer":
                if str(value).lower() != "silu":
                    raise ValueError(f"ssm_act_layer={value!r} is not supported (silu only)")
                continue
            if key == "norm_layer":
                if str(value).lower() != "ln":
                    raise ValueError(f"norm_layer={value!r} is not supported (LayerNorm only)")
                continue
            if key == "ssm_simple_init":
                if value:
                    raise ValueError("ssm_simple_init=True is not supported")
                continue
            if key == "use_checkpoint":  # the release's per-block flag: our set_grad_checkpointing
                use_checkpoint = bool(value)
                continue
            args[mapping.get(key, key)] = value
        model = cls(**args)
        model.set_grad_checkpointing(use_checkpoint)
        return model

    def set_backend(self, backend: Optional[str]) -> "LocalVMamba":
        for m in self.modules():
            if isinstance(m, SS2D):
                m.backend = backend
        return self

    is_backbone = False

    def checkpoint_filter_fn(self, state_dict: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        return checkpoint_filter_fn(state_dict, self)

    @torch.jit.ignore
    def no_weight_decay(self):
        return set()

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> Dict[str, Any]:
        """timm's parameter groups (layer-wise LR decay): the stem, then one group per block."""
        blocks = r"^layers\.(\d+)" if coarse else [(r"^layers\.(\d+)\.blocks\.(\d+)", None),
                                                   (r"^layers\.(\d+)\.downsample", (0,))]
        return dict(stem=r"^patch_embed", blocks=blocks)

    def get_classifier(self) -> nn.Module:
        return self.classifier.head

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None) -> None:
        self.num_classes = num_classes
        self.classifier.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def _stem(self, x: torch.Tensor) -> torch.Tensor:
        check_image(x, self.in_chans)
        ph, pw = self.patch_size
        H, W = x.shape[-2:]
        pad_h, pad_w = (ph - H % ph) % ph, (pw - W % pw) % pw
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h))
        return self.patch_embed(x)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) images -> (B, H/32, W/32, C_last) channels-last features (before the classifier norm)."""
        x = self._stem(x)
        for layer in self.layers:
            x = layer.downsample(self._run_blocks(layer.blocks, x))
        return x

    def _run_blocks(self, blocks: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
        for block in blocks:
            x = self.run_block(block, x)
        return x

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        c = self.classifier
        x = c.flatten(c.avgpool(c.permute(c.norm(x))))
        x = self.head_drop(x)
        return x if pre_logits else c.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def checkpoint_filter_fn(state_dict: Dict[str, torch.Tensor], model: LocalVMamba) -> Dict[str, torch.Tensor]:
    """Fits a checkpoint (ours or the release's) to ``model`` (timm's convention): a backbone drops
    the classifier keys; everything else loads as it is (any input size works unchanged)."""
    if getattr(model, "is_backbone", False):
        return {k: v for k, v in state_dict.items() if not k.startswith("classifier.")}
    return dict(state_dict)


class LocalVMambaBackbone(LocalVMamba):
    """Multi-scale LocalVMamba backbone (the release's ``Backbone_LocalVSSM``, OpenMMLab-compatible).

    Returns, for each stage in ``out_indices``, that stage's output (before patch merging) through
    its own LayerNorm ``outnorm{i}``, as (B, C_i, H/4/2^i, W/4/2^i) maps.
    """

    def __init__(self, out_indices: Sequence[int] = (0, 1, 2, 3), **kwargs: Any):
        kwargs["num_classes"] = 0
        super().__init__(**kwargs)
        out_indices = tuple(int(i) % self.num_layers if i < 0 else int(i) for i in out_indices)
        for i in out_indices:
            if not 0 <= i < self.num_layers:
                raise ValueError(f"out_indices must index the {self.num_layers} stages, got {i}")
        self.out_indices = out_indices
        for i in out_indices:
            self.add_module(f"outnorm{i}", nn.LayerNorm(self.dims[i], eps=self.classifier.norm.eps))
        del self.classifier
        del self.head_drop
        self.feature_info = FeatureInfo(
            [dict(num_chs=self.dims[i], reduction=self.patch_size[0] * 2 ** i, module=f"layers.{i}")
             for i in range(self.num_layers)],
            out_indices,
        )

    is_backbone = True  # checkpoints load non-strictly: a classifier's lacks the outnorms

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        x = self._stem(x)
        outs = []
        for i, layer in enumerate(self.layers):
            o = self._run_blocks(layer.blocks, x)
            x = layer.downsample(o)
            if i in self.out_indices:
                outs.append(getattr(self, f"outnorm{i}")(o).permute(0, 3, 1, 2).contiguous())
        return outs


# ---------------------------------------------------------------------------- entrypoints
def _build(defaults: Dict[str, Any], kwargs: Dict[str, Any]) -> LocalVMamba:
    return build_model(LocalVMamba, LocalVMambaBackbone, defaults, kwargs)


_CFG = dict(family="local_vssm", first_conv="patch_embed.0", classifier="classifier.head")
_T = dict(dims=(96, 192, 384, 768), depths=(2, 2, 9, 2), d_state=16)
_S = dict(dims=(96, 192, 384, 768), depths=(2, 2, 27, 2), d_state=16)


@register_model(paper_top1=82.7, **_CFG)
def local_vssm_tiny(**kwargs: Any) -> LocalVMamba:
    """LocalVMamba-T: dims 96-768, depths 2-2-9-2, searched directions, drop path 0.2."""
    return _build(dict(_T, drop_path_rate=0.2, directions=_directions.LOCAL_VSSM_TINY), kwargs)


@register_model(paper_top1=83.7, url=RELEASE_URL + "local_vssm_small.ckpt", **_CFG)
def local_vssm_small(**kwargs: Any) -> LocalVMamba:
    """LocalVMamba-S: dims 96-768, depths 2-2-27-2, searched directions, drop path 0.2."""
    return _build(dict(_S, drop_path_rate=0.2, directions=_directions.LOCAL_VSSM_SMALL), kwargs)


@register_model(**_CFG)
def local_vssm_tiny_search(**kwargs: Any) -> LocalVMamba:
    """LocalVMamba-T search supernet: dims 32-256, depths 2-2-9-2, all 8 candidates per block."""
    return _build(dict(_T, dims=(32, 64, 128, 256), drop_path_rate=0.1, directions=None), kwargs)


@register_model(**_CFG)
def local_vssm_small_search(**kwargs: Any) -> LocalVMamba:
    """LocalVMamba-S search supernet: dims 32-256, depths 2-2-27-2, all 8 candidates per block."""
    return _build(dict(_S, dims=(32, 64, 128, 256), drop_path_rate=0.1, directions=None), kwargs)


@register_model(**_CFG)
def local_vssm_tiny_plain(**kwargs: Any) -> LocalVMamba:
    """Baseline without windows: LocalVMamba-T with the plain h, h_flip, v, v_flip in every block."""
    return _build(dict(_T, drop_path_rate=0.2, directions=PLAIN_DIRECTIONS), kwargs)


@register_model(**_CFG)
def local_vssm_small_plain(**kwargs: Any) -> LocalVMamba:
    """Baseline without windows: LocalVMamba-S with the plain h, h_flip, v, v_flip in every block."""
    return _build(dict(_S, drop_path_rate=0.2, directions=PLAIN_DIRECTIONS), kwargs)


_TEST = dict(img_size=32, dims=(8, 16, 32, 64), depths=(1, 1, 1, 1), d_state=4, num_classes=10, drop_path_rate=0.0,
             directions=(("h", "v_flip", "w2", "w7_flip"), ("h_flip", "v", "w2_flip", "w7"),
                         ("v", "w2", "w7", "h_flip"), ("h", "v_flip", "w2", "w2_flip")))


@register_model(test_variant=True, input_size=(3, 32, 32), num_classes=10, **_CFG)
def local_vssm_test(**kwargs: Any) -> LocalVMamba:
    """Tiny LocalVMamba for tests: 32x32 input, dims 8-64, one block per stage, 10 classes."""
    return _build(_TEST, kwargs)


@register_model(test_variant=True, input_size=(3, 32, 32), num_classes=10, **_CFG)
def local_vssm_test_search(**kwargs: Any) -> LocalVMamba:
    """Tiny LocalVMamba search supernet (8 candidates per block), for tests."""
    return _build(dict(_TEST, directions=None), kwargs)
