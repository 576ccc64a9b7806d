"""Random non-zero inputs of the channels-last directional scan (forward-only and training ops),
shared by their tests: odd sizes by default, delta shifted positive, A strictly negative."""
from __future__ import annotations

import torch


def random_channels_last_inputs(index, num_tokens, dtype, *, seq, rank, z_shared=True, batch=2, dim=19, dstate=5,
                                gen=0):
    """u is (B, K, L, D) per direction when ``seq`` (sequence inputs), else (B, T, D) shared by the
    directions; delta / B / C / z per direction by step (L steps when ``seq``, else T tokens); z is
    (B, T, D) read through the index when ``z_shared``; a low-rank delta with dt_proj_weight when
    ``rank`` > 0."""
    g = torch.Generator().manual_seed(gen)
    K, L = index.shape
    steps = L if seq else num_tokens

    def r(*shape, scale=1.0, shift=0.0):
        return (shift + scale * torch.randn(*shape, generator=g, dtype=torch.float64)).to(dtype)

    return {
        "u": r(batch, K, L, dim) if seq else r(batch, num_tokens, dim),
        "delta": r(batch, K, steps, rank or dim, scale=0.4, shift=0.1),
        "dt_proj_weight": r(K, dim, rank, scale=0.5) if rank else None,
        "A": -(0.05 + 0.5 * torch.rand(K * dim, dstate, generator=g, dtype=torch.float64)).to(dtype),
        "B": r(batch, K, steps, dstate), "C": r(batch, K, steps, dstate),
        "D": r(K * dim), "z": r(batch, num_tokens, dim) if z_shared else r(batch, K, steps, dim),
        "delta_bias": r(K * dim, scale=0.3),
    }
