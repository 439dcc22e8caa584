"""Reference-view selection: which of S views becomes view 0 (the reference camera) of DA3.

DA3 predicts cameras relative to one reference view. Just before the block preceding
``alt_start`` (when S >= 3 and no input cameras are given) one view is chosen from the frames'
class tokens, the views are put in the order ``[b, 0, ..., b-1, b+1, ..., S-1]`` (a cyclic shift of
the first ``b + 1`` views, not a swap), and the backbone outputs are put back in input order.

Reference: ByteDance-Seed/Depth-Anything-3 ``model/reference_view_selector.py``
(``select_reference_view``, ``reorder_by_reference``, ``restore_original_order``).
"""

import torch

STRATEGIES = ("first", "middle", "saddle_balanced", "saddle_sim_range")
MIN_VIEWS_FOR_SELECTION = 3  # reference utils/constants.py THRESH_FOR_REF_SELECTION


def _min_max_scale(metric: torch.Tensor) -> torch.Tensor:
    lo = metric.min(dim=1, keepdim=True).values
    hi = metric.max(dim=1, keepdim=True).values
    return (metric - lo) / (hi - lo + 1e-8)


def select_reference_view(tokens: torch.Tensor, strategy: str = "saddle_balanced") -> torch.Tensor:
    """Index of the reference view per batch element.

    Args:
        tokens: ``[B, S, N, C]`` backbone tokens; only token 0 of each view (the class token) is read.
        strategy: ``"first"`` (0), ``"middle"`` (S // 2), ``"saddle_balanced"`` (the view whose
            mean cosine similarity to the others, class-token norm and normalised-token variance
            are jointly closest to the middle of their ranges over the S views: argmin of
            ``sum |minmax(metric) - 0.5|``), or ``"saddle_sim_range"`` (largest max - min cosine
            similarity to the other views).

    Returns a LongTensor ``[B]`` on the tokens' device. Raises ValueError for an unknown strategy.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown reference-view strategy {strategy!r}; choose one of {STRATEGIES}")
    B, S = tokens.shape[:2]
    if S <= 1 or strategy == "first":
        return torch.zeros(B, dtype=torch.long, device=tokens.device)
    if strategy == "middle":
        return torch.full((B,), S // 2, dtype=torch.long, device=tokens.device)

    cls = tokens[:, :, 0]  # [B, S, C]
    unit = cls / cls.norm(dim=-1, keepdim=True)
    # cosine similarities with the self-similarity (1 for every view) taken off the diagonal
    sim = unit @ unit.transpose(1, 2) - torch.eye(S, device=tokens.device, dtype=unit.dtype)
    if strategy == "saddle_sim_range":
        return (sim.max(dim=-1).values - sim.min(dim=-1).values).argmax(dim=1)
    mean_sim = sim.sum(dim=-1) / (S - 1)
    balance = sum((_min_max_scale(m) - 0.5).abs()
                  for m in (mean_sim, cls.norm(dim=-1), unit.var(dim=-1)))
    return balance.argmin(dim=1)


def reference_first_order(ref_idx: torch.Tensor, num_views: int) -> torch.Tensor:
    """``[B, S]`` view order that puts ``ref_idx`` first and keeps the others in input order."""
    pos = torch.arange(num_views, device=ref_idx.device).expand(ref_idx.shape[0], -1)
    ref = ref_idx[:, None]
    # position 0 takes the reference, positions 1..ref take views 0..ref-1, the rest stay
    return torch.where(pos == 0, ref, torch.where(pos <= ref, pos - 1, pos))


def reorder_views(x: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """Gather views: ``out[b, i] = x[b, order[b, i]]`` for ``x`` ``[B, S, ...]``, ``order`` ``[B, S]``."""
    return x[torch.arange(x.shape[0], device=x.device)[:, None], order]


def restore_views(x: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`reorder_views` with the same ``order``."""
    return reorder_views(x, order.argsort(dim=1))
