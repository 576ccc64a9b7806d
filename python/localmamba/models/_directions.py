"""Searched per-layer scan directions of the released models (architecture hyper-parameters).

Copied from the official release (hunto/LocalMamba @ 75e5d1f), SPEC section 4. LocalVim lists have
one entry per layer (depth 20); LocalVMamba lists one entry per block, stage after stage.
Note: the release defines `local_vim_small` twice; the second definition (used here) gives every
layer ('h', 'h_flip', 'w2', 'w2_flip').
"""
from typing import Tuple

Directions = Tuple[Tuple[str, ...], ...]

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
