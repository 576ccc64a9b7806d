"""Layers of the LocalMamba models: multi-direction mixers, channel gate, norms, embeddings."""
from .layers import (
    DropPath,
    MultiScan,
    PatchEmbed,
    RMSNorm,
    RotaryEmbedding2D,
    SCAttn,
    canonical_directions,
    resize_pos_embed,
)
from .mixers import SS2D, MultiMamba
from .scan import count_scans, selective_scan

__all__ = [
    "DropPath",
    "MultiMamba",
    "MultiScan",
    "PatchEmbed",
    "RMSNorm",
    "RotaryEmbedding2D",
    "SCAttn",
    "SS2D",
    "canonical_directions",
    "count_scans",
    "resize_pos_embed",
    "selective_scan",
]
