"""PyTorch ops: local scan / reverse, selective scan, and their pure-PyTorch references."""
from ..errors import require_torch

require_torch()  # one line saying how to install PyTorch, not a traceback deep in an op module
from . import reference
from .backend import BACKENDS, get_backend, resolve_backend, set_backend, use_backend
from .directional_scan_infer import channels_last_scan_supported, directional_scan_channels_last
from .directional_scan import directional_selective_scan, gather_sequences, middle_cls_index_table, scan_index_table
from .directions import PLAIN_DIRECTIONS, SEARCH_CANDIDATES, parse_direction, parse_directions, scan_length
from .local_scan import LAYOUTS, local_reverse, local_scan, scan_order
from .scan_conv_train import scan_conv_channels_last_train, scan_conv_train_supported
from .selective_scan import selective_scan

__all__ = [
    "BACKENDS",
    "LAYOUTS",
    "channels_last_scan_supported",
    "directional_scan_channels_last",
    "directional_selective_scan",
    "PLAIN_DIRECTIONS",
    "SEARCH_CANDIDATES",
    "gather_sequences",
    "get_backend",
    "local_reverse",
    "local_scan",
    "middle_cls_index_table",
    "parse_direction",
    "parse_directions",
    "reference",
    "resolve_backend",
    "scan_index_table",
    "scan_length",
    "scan_order",
    "scan_conv_channels_last_train",
    "scan_conv_train_supported",
    "selective_scan",
    "set_backend",
    "use_backend",
]
