"""Searched per-layer scan directions of the released models (architecture hyper-parameters).

Copied from the official release (hunto/LocalMamba @ 75e5d1f), SPEC section 4. LocalVim lists have
one entry per layer (depth 20); LocalVMamba lists one entry per block, stage after stage.
Note: the release defines `local_vim_small` twice; the second definition (used here) gives every
layer ('h', 'h_flip', 'w2', 'w2_flip').
"""
from typing import List, Optional, Sequence, Tuple, Union

from ..ops.directions import SEARCH_CANDIDATES, parse_direction

Directions = Tuple[Tuple[str, ...], ...]
DirectionsArg = Union[None, str, Sequence[str], Sequence[Sequence[str]]]

__all__ = ["Directions", "DirectionsArg", "resolve_layer_directions"]


def resolve_layer_directions(directions: DirectionsArg, num_layers: int, search: Optional[bool],
                             what: str = "layer") -> Tuple[List[Tuple[str, ...]], bool]:
    """Normalises a model's ``directions`` argument to one canonical tuple of names per layer (or block).

    None -> every search candidate in every layer, as a supernet (the release's convention);
    a comma-separated string or a flat list of names -> the same list in every layer;
    a list of lists -> one list per layer (its length must be ``num_layers``).
    ``search`` (default: True exactly when directions is None) makes the layers supernets over
    their lists: per-direction LayerNorm and softmax(α)-weighted merge.
    """
    if search is not None and not isinstance(search, bool):
        raise TypeError(f"search must be None, True or False, got {search!r}")
    if directions is None:
        if search is False:
            raise ValueError("directions=None means a search supernet; pass per-layer directions for search=False")
        return [tuple(SEARCH_CANDIDATES)] * num_layers, True
    if isinstance(directions, str):
        directions = [d.strip() for d in directions.split(",") if d.strip()]
    if not isinstance(directions, (list, tuple)):
        raise TypeError(f"directions must be None, a list of direction names such as ['h', 'w7_flip'], or one "
                        f"such list per {what}; got {type(directions).__name__} {directions!r}")
    directions = list(directions)
    if not directions:
        raise ValueError("directions must not be empty")
    if all(isinstance(d, str) for d in directions):
        per_layer = [tuple(directions)] * num_layers
    elif all(isinstance(d, (list, tuple)) for d in directions):
        if len(directions) != num_layers:
            raise ValueError(
                f"directions has {len(directions)} per-{what} lists but the model has {num_layers} {what}s"
            )
        per_layer = [tuple(d) for d in directions]
    else:
        raise TypeError(f"directions must be None, a list of direction names, or one such list per {what}; "
                        f"got {directions!r}")
    resolved = []
    for i, dirs in enumerate(per_layer):
        if not dirs:
            raise ValueError(f"{what} {i} has no scan directions")
        try:
            resolved.append(tuple(parse_direction(d).name for d in dirs))
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"directions of {what} {i}: {exc}") from None
    return resolved, bool(search)

#: local_vim_tiny (20 entries)
LOCAL_VIM_TINY: Directions = (
    ('h', 'v_flip', 'w7', 'w7_flip'),
    ('h_flip', 'w2_flip', 'w7', 'w7_flip'),
    ('h', 'h_flip', 'v', 'w7'),
    ('h', 'h_flip', 'v', 'v_flip'),
    ('h', 'h_flip', 'v', 'v_flip'),
    ('h', 'h_flip', 'v', 'v_flip'),
    ('h_flip', 'v', 'v_flip', 'w7'),
    ('h_flip', 'v', 'v_flip', 'w2_flip'),
    ('h', 'h_flip', 'v', 'v_flip'),
    ('h', 'h_flip', 'v', 'v_flip'),
    ('h', 'v', 'v_flip', 'w2'),
    ('h', 'v', 'v_flip', 'w2_flip'),
    ('h', 'h_flip', 'v_flip', 'w7'),
    ('h_flip', 'v', 'v_flip', 'w2'),
    ('h', 'h_flip', 'v', 'v_flip'),
    ('h', 'v', 'w2', 'w2_flip'),
    ('v', 'v_flip', 'w2', 'w7'),
    ('h', 'h_flip', 'v', 'w2'),
    ('h', 'h_flip', 'w2_flip', 'w7'),
    ('v', 'v_flip', 'w2', 'w2_flip'),
)

#: local_vim_small (20 entries)
LOCAL_VIM_SMALL: Directions = (
    ('h', 'h_flip', 'w2', 'w2_flip'),
    ('h', 'h_flip', 'w2', 'w2_flip'),
    ('h', 'h_flip', 'w2', 'w2_flip'),
    ('h', 'h_flip', 'w2', 'w2_flip'),
    ('h', 'h_flip', 'w2', 'w2_flip'),
    ('h', 'h_flip', 'w2', 'w2_flip'),
    ('h', 'h_flip', 'w2', 'w2_flip'),
    ('h', 'h_flip', 'w2', 'w2_flip'),
    ('h', 'h_flip', 'w2', 'w2_flip'),
    ('h', 'h_flip', 'w2', 'w2_flip'),
    ('h', 'h_flip', 'w2', 'w2_flip'),
    ('h', 'h_flip', 'w2', 'w2_flip'),
    ('h', 'h_flip', 'w2', 'w2_flip'),
    ('h', 'h_flip', 'w2', 'w2_flip'),
    ('h', 'h_flip', 'w2', 'w2_flip'),
    ('h', 'h_flip', 'w2', 'w2_flip'),
    ('h', 'h_flip', 'w2', 'w2_flip'),
    ('h', 'h_flip', 'w2', 'w2_flip'),
    ('h', 'h_flip', 'w2', 'w2_flip'),
    ('h', 'h_flip', 'w2', 'w2_flip'),
)

#: local_vim_tiny_wo_search (20 entries)
LOCAL_VIM_TINY_WO_SEARCH: Directions = (
    ('h', 'h_flip', 'w2', 'w2_flip'),
    ('h', 'h_flip', 'w2', 'w2_flip'),
    ('h', 'h_flip', 'w2', 'w2_flip'),
    ('h', 'h_flip', 'w2', 'w2_flip'),
    ('h', 'h_flip', 'w2', 'w2_flip'),
    ('h', 'h_flip', 'w2', 'w2_flip'),
    ('h', 'h_flip', 'w2', 'w2_flip'),
    ('h', 'h_flip', 'w2', 'w2_flip'),
    ('h', 'h_flip', 'w2', 'w2_flip'),
    ('h', 'h_flip', 'w2', 'w2_flip'),
    ('h', 'h_flip', 'w2', 'w2_flip'),
    ('h', 'h_flip', 'w2', 'w2_flip'),
    ('h', 'h_flip', 'w2', 'w2_flip'),
    ('h', 'h_flip', 'w2', 'w2_flip'),
    ('h', 'h_flip', 'w2', 'w2_flip'),
    ('h', 'h_flip', 'w2', 'w2_flip'),
    ('h', 'h_flip', 'w2', 'w2_flip'),
    ('h', 'h_flip', 'w2', 'w2_flip'),
    ('h', 'h_flip', 'w2', 'w2_flip'),
    ('h', 'h_flip', 'w2', 'w2_flip'),
)

#: local_vssm_tiny (15 entries)
LOCAL_VSSM_TINY: Directions = (
    ('h', 'h_flip', 'w7', 'w7_flip'),
    ('h_flip', 'v_flip', 'w2', 'w2_flip'),
    ('h_flip', 'v_flip', 'w2_flip', 'w7'),
    ('h_flip', 'v', 'v_flip', 'w2'),
    ('h', 'h_flip', 'v_flip', 'w2_flip'),
    ('h_flip', 'v_flip', 'w2', 'w2_flip'),
    ('h', 'w2_flip', 'w7', 'w7_flip'),
    ('h', 'h_flip', 'v', 'v_flip'),
    ('h', 'v_flip', 'w7', 'w7_flip'),
    ('h_flip', 'v', 'w2', 'w7_flip'),
    ('v', 'v_flip', 'w2', 'w7_flip'),
    ('h', 'h_flip', 'v_flip', 'w2_flip'),
    ('v_flip', 'w2_flip', 'w7', 'w7_flip'),
    ('h_flip', 'v_flip', 'w2_flip', 'w7_flip'),
    ('h_flip', 'v', 'w7', 'w7_flip'),
)

#: local_vssm_small (33 entries)
LOCAL_VSSM_SMALL: Directions = (
    ('h', 'v', 'v_flip', 'w7_flip'),
    ('h', 'h_flip', 'v', 'w7'),
    ('h_flip', 'v', 'v_flip', 'w7'),
    ('h_flip', 'v', 'w2_flip', 'w7'),
    ('h_flip', 'v', 'w2_flip', 'w7'),
    ('h_flip', 'v_flip', 'w2', 'w7_flip'),
    ('h_flip', 'v', 'v_flip', 'w7'),
    ('h', 'v', 'v_flip', 'w7'),
    ('h', 'v', 'v_flip', 'w7'),
    ('h', 'v', 'v_flip', 'w7_flip'),
    ('h', 'h_flip', 'v', 'v_flip'),
    ('h', 'v', 'v_flip', 'w2'),
    ('v', 'v_flip', 'w2_flip', 'w7'),
    ('h', 'h_flip', 'v', 'w2'),
    ('h_flip', 'v', 'v_flip', 'w7_flip'),
    ('h', 'h_flip', 'v', 'v_flip'),
    ('h', 'v', 'v_flip', 'w7_flip'),
    ('h', 'v', 'v_flip', 'w7_flip'),
    ('h', 'h_flip', 'v_flip', 'w7'),
    ('h_flip', 'v_flip', 'w2_flip', 'w7'),
    ('h_flip', 'v', 'v_flip', 'w7_flip'),
    ('v', 'v_flip', 'w7', 'w7_flip'),
    ('h', 'v', 'v_flip', 'w7_flip'),
    ('h_flip', 'v', 'v_flip', 'w2'),
    ('h', 'v', 'v_flip', 'w2_flip'),
    ('h', 'h_flip', 'v', 'w7'),
    ('h', 'h_flip', 'w7', 'w7_flip'),
    ('h', 'v_flip', 'w2', 'w2_flip'),
    ('h', 'v_flip', 'w2', 'w7'),
    ('h', 'v', 'v_flip', 'w7_flip'),
    ('h_flip', 'v', 'w2_flip', 'w7'),
    ('h_flip', 'v_flip', 'w7', 'w7_flip'),
    ('h', 'v', 'w7', 'w7_flip'),
)
