"""PyTorch ops: local scan / reverse, selective scan, and their pure-PyTorch references."""
from . import reference
from .backend import BACKENDS, get_backend, resolve_backend, set_backend, use_backend
from .directions import PLAIN_DIRECTIONS, SEARCH_CANDIDATES, parse_direction, parse_directions, scan_length
from .local_scan import LAYOUTS, local_reverse, local_scan, scan_order
from .selective_scan import selective_scan

__all__ = [
    "BACKENDS",
    "LAYOUTS",
    "PLAIN_DIRECTIONS",
    "SEARCH_CANDIDATES",
    "get_backend",
    "local_reverse",
    "local_scan",
    "parse_direction",
    "parse_directions",
    "reference",
    "resolve_backend",
    "scan_length",
    "scan_order",
    "selective_scan",
    "set_backend",
    "use_backend",
]
