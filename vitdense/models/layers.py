"""Helpers shared by the backbone families: windows, shifted-window masks, padding, token/map reshapes.

Everything here is batched tensor code (no Python loops over tokens, windows or heads) so the backbones
stay ``torch.compile``-friendly.
"""
import functools
import math
from typing import NamedTuple, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import trunc_normal_

from vitdense.errors import ConfigError


def init_transformer_weights(m: nn.Module) -> None:
    """The ViT / Swin initialisation (``module.apply``): linears truncated normal (std 0.02) with zero bias,
    LayerNorms one / zero."""
    if isinstance(m, nn.Linear):
        trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


def pad_nchw_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Zero-pad an (..., H, W) map at the bottom / right to multiples of ``multiple`` (no copy if it fits)."""
    H, W = x.shape[-2:]
    pad_h, pad_w = (-H) % multiple, (-W) % multiple
    return F.pad(x, (0, pad_w, 0, pad_h)) if pad_h or pad_w else x


def pad_to_multiple(x: torch.Tensor, multiple: Tuple[int, int]) -> torch.Tensor:
    """Zero-pad an NHWC map at the bottom/right so H and W are multiples of ``multiple``."""
    H, W = x.shape[1:3]
    pad_h = (multiple[0] - H % multiple[0]) % multiple[0]
    pad_w = (multiple[1] - W % multiple[1]) % multiple[1]
    if pad_h or pad_w:
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    return x


def window_partition(x: torch.Tensor, window: Tuple[int, int]) -> torch.Tensor:
    """(B, H, W, C) with H, W multiples of the window -> (B * nW, wh * ww, C)."""
    B, H, W, C = x.shape
    wh, ww = window
    x = x.view(B, H // wh, wh, W // ww, ww, C).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, wh * ww, C)


def window_reverse(windows: torch.Tensor, window: Tuple[int, int], H: int, W: int) -> torch.Tensor:
    """Inverse of :func:`window_partition`: (B * nW, wh * ww, C) -> (B, H, W, C)."""
    wh, ww = window
    C = windows.shape[-1]
    x = windows.view(-1, H // wh, W // ww, wh, ww, C).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, H, W, C)


def shifted_window_mask(H: int, W: int, window: Tuple[int, int], shift: Tuple[int, int],
                        device=None, dtype=torch.float32) -> torch.Tensor:
    """Additive attention mask (nW, N, N) for shifted windows on an (already padded) H x W map.

    After a cyclic shift by ``shift`` the map holds up to 3 x 3 regions that were not neighbours; tokens of
    different regions must not attend to each other inside one window (value -100, as in Swin).
    """
    def region_ids(size, win, sh, device):
        idx = torch.arange(size, device=device)
        return (idx >= size - win).long() + (idx >= size - sh).long()

    rows = region_ids(H, window[0], shift[0], device)
    cols = region_ids(W, window[1], shift[1], device)
    regions = (rows[:, None] * 3 + cols[None, :]).to(dtype)                 # H x W region id
    windows = window_partition(regions[None, :, :, None], window).squeeze(-1)  # nW x N
    diff = windows[:, None, :] - windows[:, :, None]
    return torch.zeros_like(diff).masked_fill(diff != 0, -100.0)


def nhwc_to_nchw(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 3, 1, 2).contiguous()


def nchw_to_nhwc(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 2, 3, 1)


def window_padding_mask(H: int, W: int, window: Tuple[int, int], device=None) -> torch.Tensor:
    """Boolean key mask (nW, wh * ww) for an H x W map zero-padded to whole windows: True on real tokens.

    Windowed attention that pads internally passes it (broadcast over batch, heads and queries) so padded
    positions are never attended to: a window's output then does not depend on how much padding it got.
    """
    Hp, Wp = -(-H // window[0]) * window[0], -(-W // window[1]) * window[1]
    rows = torch.arange(Hp, device=device) < H
    cols = torch.arange(Wp, device=device) < W
    valid = (rows[:, None] & cols[None, :]).to(torch.uint8)
    return window_partition(valid[None, :, :, None], window).squeeze(-1).bool()


def resample_to_stride(x: torch.Tensor, src_stride: float, dst_stride: float, size: Tuple[int, int]) -> torch.Tensor:
    """Bilinearly resample an NCHW map from one stride to another, cell centres aligned, to exactly ``size``.

    Cell i of a stride-s map covers pixels [s * i, s * (i + 1)), the convention RoIAlign and FPN assume, so
    the map is resampled by exactly ``src_stride / dst_stride`` (not by the ratio of the two sizes, which
    would drift by up to a cell on odd sizes). Output cells past the source's first / last cell centre take
    its edge value (the source is edge-replicated first), and the result is cropped to ``size``. Works for
    non-integer ratios (stride 7 -> 8, 14 -> 16).
    """
    scale = src_stride / dst_stride
    # a source too short for the output grid gets the cells it reaches, plus one against float rounding
    pad_h, pad_w = (math.ceil(n / scale) + 1 - have if math.floor(have * scale) < n else 0
                    for n, have in zip(size, x.shape[-2:]))
    if pad_h or pad_w:
        x = F.pad(x, (0, pad_w, 0, pad_h), mode='replicate')
    if scale != 1:
        x = F.interpolate(x, scale_factor=scale, mode='bilinear', align_corners=False,
                          recompute_scale_factor=False)
    return x[..., :size[0], :size[1]]


# ---- balanced hierarchical clustering (BOAT's feature-space local attention) ---------------------------
# Tokens of every (image, head) are split K times into two equal halves by content; attention then runs
# inside each of the 2^K leaves. Token counts that do not halve evenly: a node with n real tokens gives
# ceil(n/2) of them to its first child and floor(n/2) to its second, so last-level parents hold 2m, 2m - 1
# or 2m - 2 tokens (m = ceil(N / 2^K)). Inside the tree the difference is made of padded slots placed by a
# *static* layout (zero vectors, ratio +inf: sorted last, never a centroid seed or weight). The leaves
# themselves hold only real tokens: every leaf is the first / last m + n sorted tokens of its parent (n the
# overlap), so all leaves have the same size, no attention mask is needed (a boolean mask sends CPU SDPA to
# its ~3x slower math path) and a padded slot never gives or receives attention.
#
# Speed notes (CPU, measured): rows are moved with index_select on flattened (rows, features) tables
# (~20x faster than gather with an expanded index), similarities are computed as (2, d) @ (d, n) products
# ((n, d) @ (d, 2) takes MKL's slow path, ~10x slower), and the levels before the last are unordered top-k
# partitions (~10x cheaper than a sort on long rows) whenever the seeding does not depend on token order.


class ClusterLayout(NamedTuple):
    """Static (data-independent) index maps of a balanced hierarchical clustering of ``num_tokens`` tokens.

    Positions refer to the final ordering returned by :func:`hierarchical_cluster_permutation`: the 2^(K-1)
    last-level parent nodes side by side (capacity 2m each), each with its real tokens sorted first.
    Slots are the flattened (leaf, query index) outputs of the leaves.
    """
    num_tokens: int
    num_levels: int
    padded: int                 # N_p = m * 2^K (>= num_tokens)
    capacity: int               # m = ceil(N / 2^K)
    overlap: int                # n: tokens each leaf takes beyond its half (>= 2n shared per sibling pair)
    root: torch.Tensor          # (N_p,) initial arrangement of token ids (ids >= num_tokens are padding)
    moves: Tuple[torch.Tensor, ...]  # per level < K - 1: (2^l, cap) source slot of each child slot
    kv_pos: torch.Tensor        # (2^K, m + n) positions of each leaf's keys / values (real tokens only)
    q_pos: torch.Tensor         # (2^K, Lq) positions of each leaf's queries
    pos_slots: torch.Tensor     # (2, N_p) the (first, second) query slot whose output a position takes
    pos_weights: Optional[torch.Tensor]  # (2, N_p) their weights (0.5 / 0.5 if shared); None: one slot each


def cluster_levels(num_tokens: int, leaf_size: int) -> int:
    """K binary levels giving leaves of about ``leaf_size`` tokens: round(log2(N / leaf_size)), at least 0."""
    if leaf_size < 2:
        raise ConfigError(f'leaf_size must be >= 2, got {leaf_size}')
    return max(0, round(math.log2(num_tokens / leaf_size))) if num_tokens > leaf_size else 0


def _half_balanced(c: torch.Tensor, s: int):
    """Slots of nodes of capacity ``s`` holding ``c`` (nodes, 1) real tokens in halves-balanced order: the first
    ceil(c/2) real tokens, padding, the other real tokens, padding (each half of a node then holds the real
    tokens of one of its future children). Returns (is_real, index among the real, index among the padding)."""
    r = torch.arange(s)[None]
    h, a = s // 2, (c + 1) // 2
    b = c - a
    is_real = (r < a) | ((r >= h) & (r < h + b))
    return is_real, torch.where(r < h, r, a + r - h), torch.where(r < h, r - a, h - a + r - h - b)


def _child_slots(n: torch.Tensor, cap: int) -> torch.Tensor:
    """(nodes, cap) source slot of every slot of the two children of nodes holding ``n`` real tokens sorted
    first (padding after): child 1 gets the first ceil(n/2) real tokens, child 2 the others, each child laid
    out halves-balanced (see :func:`_half_balanced`)."""
    s = cap // 2
    n = n[:, None]
    c1 = (n + 1) // 2
    real1, ri1, pi1 = _half_balanced(c1, s)
    real2, ri2, pi2 = _half_balanced(n - c1, s)
    first = torch.where(real1, ri1, n + pi1)
    second = torch.where(real2, c1 + ri2, n + s - c1 + pi2)
    return torch.cat([first, second], 1)


def _layout_on(layout: ClusterLayout, device: Optional[torch.device]) -> ClusterLayout:
    """The layout's index tensors on ``device`` (q_pos stays the same object as kv_pos where it is)."""
    if device is None or torch.device(device) == layout.root.device:
        return layout
    moved = {name: value.to(device) for name, value in layout._asdict().items()
             if isinstance(value, torch.Tensor) and name != 'q_pos'}
    moved['q_pos'] = moved['kv_pos'] if layout.q_pos is layout.kv_pos else layout.q_pos.to(device)
    moved['moves'] = tuple(m.to(device) for m in layout.moves)
    return layout._replace(**moved)


@functools.lru_cache(maxsize=128)
def balanced_cluster_layout(num_tokens: int, num_levels: int, overlap: int = 0, shared_queries: bool = True,
                            device: Optional[torch.device] = None) -> ClusterLayout:
    """Index maps for clustering ``num_tokens`` tokens into 2^num_levels balanced leaves, on ``device``
    (built once per device: no host-to-device copies in the forward pass).

    Every leaf is the first or the last m + n tokens of its sorted parent (m = ceil(N / 2^K), n =
    ``overlap``, capped so that m + n never exceeds a parent), so sibling clusters share 2n tokens (one or
    two more when the parent has fewer than 2m). With ``shared_queries`` every token of a leaf is also one of
    its queries (the paper's overlapping clusters) and a token in two leaves gets the mean of its two outputs
    (the paper does not say how the two combine; the mean is vitdense's choice: a shared token sits at the
    boundary of the two clusters' ranking, so neither output is preferred, and the mean of two attention
    outputs stays a convex combination of values like every other token's); otherwise a token is the query
    of the leaf of its own half only (the first ceil(n_parent / 2) sorted tokens / the others) and only keys /
    values overlap (pytorch-boat).
    """
    N, K = int(num_tokens), int(num_levels)
    if N < 1 or K < 0:
        raise ValueError(f'need num_tokens >= 1 and num_levels >= 0, got {num_tokens}, {num_levels}')
    if K == 0:
        ids = torch.arange(N)
        return _layout_on(ClusterLayout(N, 0, N, N, 0, ids, (), ids[None], ids[None], torch.stack([ids, ids]), None),
                          device)
    m = -(-N // 2 ** K)
    if m < 2:
        raise ValueError(f'{N} tokens cannot be split {K} times into leaves of at least 2 tokens')
    padded = m * 2 ** K
    # real tokens per node, level by level, as Python ints: no tensor-to-int reads, so torch.compile traces
    # the layout without graph breaks
    counts = [[N]]
    for _ in range(K):
        counts.append([c for parent in counts[-1] for c in ((parent + 1) // 2, parent // 2)])
    real, real_idx, pad_idx = _half_balanced(torch.tensor([[N]]), padded)
    root = torch.where(real, real_idx, N + pad_idx)[0]  # token ids, halves-balanced
    moves = tuple(_child_slots(torch.tensor(counts[level]), padded >> level) for level in range(K - 1))

    n = torch.tensor(counts[K - 1])[:, None]        # real tokens of each last-level parent (capacity 2m)
    ov = max(0, min(int(overlap), min(counts[K - 1]) - m))
    size = m + ov
    parents = n.shape[0]
    offset = torch.arange(parents)[:, None, None] * 2 * m
    j = torch.arange(size)[None]
    kv_pos = (torch.stack([j.expand(parents, -1), n - size + j], 1) + offset).reshape(2 * parents, size)
    p = torch.arange(2 * m)[None]                   # positions inside a parent
    if shared_queries:
        q_pos = kv_pos
        in_first, in_second = p < size, p >= n - size
        second_slot = size + p - (n - size)         # parent-local slot of position p in the second leaf
        slot_a = torch.where(in_first, p, second_slot)
        slot_b = torch.where(in_second, second_slot, p)
        both = (in_first & in_second).float()
        shared = any(c < 2 * size for c in counts[K - 1])  # some parent puts a token in both leaves
        weights = torch.stack([1 - 0.5 * both, 0.5 * both]) if shared else None
    else:  # query rows: [0, m) and [n - m, n); a position takes its output from the leaf of its own half
        c1 = (n + 1) // 2
        jq = torch.arange(m)[None]
        q_pos = (torch.stack([jq.expand(parents, -1), n - m + jq], 1) + offset).reshape(2 * parents, m)
        slot_a = slot_b = torch.where(p < c1, p, m + p - (n - m))
        weights = None
    leaf_rows = q_pos.shape[1]
    valid = p < n                                   # padded positions take nothing (slot 0, never read)
    base = torch.arange(parents)[:, None] * 2 * leaf_rows
    slots = torch.stack([torch.where(valid, s + base, 0).flatten() for s in (slot_a, slot_b)])
    if weights is not None:
        weights = (weights * valid).reshape(2, -1)
    return _layout_on(ClusterLayout(N, K, padded, m, ov, root, moves, kv_pos, q_pos, slots, weights), device)


def split_ratio(unit: torch.Tensor, raw: Optional[torch.Tensor] = None, invalid: Optional[torch.Tensor] = None,
                iters: int = 2, seeding: str = 'farthest', temperature: float = 0.01) -> torch.Tensor:
    """Two-centroid score of every token of a batch of nodes: r = (1 + cos(t, c0)) / (1 + cos(t, c1)).

    unit: (..., n, d) L2-normalised tokens, or None to take cosines from ``raw`` directly (each similarity
    scaled by 1 / |t|: no normalised copy of the nodes is written); raw: the tokens before normalisation, or
    None to average unit vectors (spherical k-means); invalid: (..., n) True on padded slots (zero vectors),
    which get r = +inf.
    Centroids are seeded ('halves': the means of the node's first and second half, as pytorch-boat;
    'farthest': the token least similar to the node's mean direction m and its reflection about m, which
    does not depend on token order) and refined ``iters`` times with nearest-centroid (softmax / temperature)
    assignments in cosine similarity. Similarities are computed as (2, d) @ (d, n) (the (n, d) @ (d, 2)
    orientation takes a ~10x slower path in MKL).
    """
    if unit is None and raw is None:
        raise ValueError('split_ratio needs unit or raw tokens')
    if unit is None and seeding == 'halves':
        inv_norm = raw.norm(dim=-1).clamp_min(1e-12).reciprocal().unsqueeze(-2)        # (..., 1, n)
        raw_t = raw.transpose(-1, -2)

        def cosines(c):
            return (c @ raw_t) * inv_norm
    else:
        unit = F.normalize(raw, dim=-1) if unit is None else unit
        unit_t = unit.transpose(-1, -2)

        def cosines(c):
            return c @ unit_t
    n, d = raw.shape[-2:] if unit is None else unit.shape[-2:]
    raw = unit if raw is None else raw
    if seeding == 'halves':
        c = torch.stack([raw[..., :n // 2, :].mean(-2), raw[..., n // 2:, :].mean(-2)], -2)   # (..., 2, d)
    elif seeding == 'farthest':
        mean = F.normalize(unit.sum(-2, keepdim=True), dim=-1)                            # (..., 1, d)
        s = cosines(mean).squeeze(-2)
        if invalid is not None:
            s = s.masked_fill(invalid, float('inf'))
        far = unit.gather(-2, s.argmin(-1)[..., None, None].expand(*s.shape[:-1], 1, d))
        c = torch.cat([far, 2 * (far * mean).sum(-1, keepdim=True) * mean - far], -2)  # and its mirror
    else:
        raise ConfigError(f"seeding must be 'halves' or 'farthest', got '{seeding}'")
    c = F.normalize(c, dim=-1)
    for _ in range(iters):
        assign = torch.softmax(cosines(c) / temperature, dim=-2)                           # (..., 2, n)
        c = F.normalize(assign @ raw, dim=-1)
    sim = cosines(c)
    ratio = (1 + sim[..., 0, :]) / (1 + sim[..., 1, :]).clamp_min(1e-6)
    return ratio if invalid is None else ratio.masked_fill(invalid, float('inf'))


def balanced_binary_split(unit: torch.Tensor, raw: Optional[torch.Tensor] = None,
                          invalid: Optional[torch.Tensor] = None, iters: int = 2, seeding: str = 'farthest',
                          sort: bool = True) -> torch.Tensor:
    """One level of balanced binary clustering for a batch of nodes: (..., n) slot order whose first n // 2
    entries form the first child (the tokens with the lowest :func:`split_ratio`, i.e. relatively closest
    to c1), the rest the second.

    sort=True: the ascending argsort of the ratio, padded slots last (the within-child order is the sorted
    one, which pytorch-boat's 'halves' seeding of the next level depends on). sort=False: an unordered
    partition with ``topk`` (~10x cheaper than a sort on long rows); the padded slots are then shared so that
    the first child holds ceil(n_real / 2) real tokens.
    """
    ratio = split_ratio(unit, raw, invalid, iters, seeding)
    if sort:
        return torch.sort(ratio, dim=-1).indices
    return _topk_partition(ratio, invalid)


def _first_half(score: torch.Tensor, invalid: Optional[torch.Tensor]) -> torch.Tensor:
    """(..., n // 2) slots of lowest ``score`` (unordered, with ``topk``). Padded slots (score +inf) are
    shared so that they include the ceil(n_real / 2) real tokens of lowest score."""
    n = score.shape[-1]
    if invalid is not None:  # hand the first child the padding it needs: -inf on its share of the padded slots
        first_real = ((~invalid).sum(-1, keepdim=True) + 1) // 2
        pad_rank = invalid.cumsum(-1) - 1
        score = score.masked_fill(invalid & (pad_rank < n // 2 - first_real), float('-inf'))
    return torch.topk(score, n // 2, dim=-1, largest=False, sorted=False).indices


def _topk_partition(score: torch.Tensor, invalid: Optional[torch.Tensor]) -> torch.Tensor:
    """(..., n) slot order: :func:`_first_half`, then the other slots in slot order."""
    n = score.shape[-1]
    first = _first_half(score, invalid)
    # the complement, in slot order: each remaining slot goes to column (its rank among the remaining)
    rest = torch.ones_like(score, dtype=torch.bool).scatter_(-1, first, False)
    column = torch.where(rest, rest.cumsum(-1) - 1, n - n // 2)          # taken slots -> a spare column
    slots = torch.arange(n, device=score.device).expand_as(column)
    second = slots.new_empty(*score.shape[:-1], n - n // 2 + 1).scatter_(-1, column, slots)[..., :-1]
    return torch.cat([first, second], -1)


def balanced_kmeans_split(raw: torch.Tensor, invalid: Optional[torch.Tensor] = None, iters: int = 2,
                          seeding: str = 'farthest', sort: bool = True, return_history: bool = False):
    """The paper's balanced binary clustering for a batch of nodes (BOAT, arXiv 2201.13027): (..., n) slot
    order whose first n // 2 entries form the first child (cluster c1), the rest the second (c2).

    Every iteration is a balanced k-means step: each token's ratio r = s(t, c1) / s(t, c2) is computed, the
    tokens are ranked by decreasing r, the first ceil(n_real / 2) go to c1 and the others to c2, and (except
    after the last assignment) each centroid becomes the mean of its tokens. ``iters`` centroid updates, so
    ``iters + 1`` assignments, every one of them balanced; the result is the last one.

    raw: (..., n, d) tokens (the features to cluster, not normalised); invalid: (..., n) True on padded slots
    (zero vectors), which are never assigned, averaged or seeded from. sort=True: the final order is by
    decreasing r, padded slots last (the last tree level takes its overlapping leaves from both ends of it);
    sort=False: an unordered partition (``topk``; the padded slots shared as in :func:`_topk_partition`).
    return_history=True also returns a bool (iters + 1, ..., n) tensor: per iteration, True on the real
    tokens assigned to c1 (padded slots False).

    Where the paper is silent the choices are vitdense's: s(t, c) = 1 + cos(t, c) (positive, so the ratio is
    defined and ordered like the cosines; as pytorch-boat), and 'farthest' seeding, the token least similar to
    the node's mean direction and its mirror image about that direction (deterministic and independent of
    token order, so the clustering is equivariant to a permutation of the tokens; random seeds would make
    inference non-deterministic, pytorch-boat's 'halves' seeds depend on the raster order). 'halves' (the
    means of the node's first and second half of slots) is accepted too.
    """
    n, d = raw.shape[-2:]
    inv_norm = raw.norm(dim=-1).clamp_min(1e-12).reciprocal().unsqueeze(-2)        # (..., 1, n)
    raw_t = raw.transpose(-1, -2)

    def cosines(c):  # (..., k, d) unit centroids -> (..., k, n), as (k, d) @ (d, n) (see the speed notes)
        return (c @ raw_t) * inv_norm
    if seeding == 'farthest':
        mean = F.normalize(inv_norm @ raw, dim=-1)                   # (..., 1, d): direction of the unit vectors' sum
        s = cosines(mean).squeeze(-2)
        if invalid is not None:
            s = s.masked_fill(invalid, float('inf'))
        far = F.normalize(raw.gather(-2, s.argmin(-1)[..., None, None].expand(*s.shape[:-1], 1, d)), dim=-1)
        c = torch.cat([far, 2 * (far * mean).sum(-1, keepdim=True) * mean - far], -2)  # and its mirror
    elif seeding == 'halves':
        c = torch.stack([raw[..., :n // 2, :].mean(-2), raw[..., n // 2:, :].mean(-2)], -2)
    else:
        raise ConfigError(f"seeding must be 'halves' or 'farthest', got '{seeding}'")
    c = F.normalize(c, dim=-1)
    n_real = torch.full(raw.shape[:-2], n, device=raw.device) if invalid is None else (~invalid).sum(-1)
    first_real = ((n_real + 1) // 2)[..., None]
    sizes = torch.stack([first_real, n_real[..., None] - first_real], -2).clamp_min(1).to(raw.dtype)  # (..., 2, 1)
    total = raw.sum(-2, keepdim=True)                                  # padded rows are zero: real tokens only
    history = []
    for step in range(iters + 1):
        sim = cosines(c)
        score = -(1 + sim[..., 0, :]) / (1 + sim[..., 1, :]).clamp_min(1e-6)  # ascending score = decreasing r
        if invalid is not None:
            score = score.masked_fill(invalid, float('inf'))
        last = step == iters
        in_first = None
        if last and sort:
            order = torch.sort(score, dim=-1).indices
            if return_history:  # c1: the first ceil(n_real / 2) sorted slots (padded slots sort last)
                arange = torch.arange(n, device=raw.device).expand_as(order)
                in_first = torch.empty_like(order).scatter_(-1, order, arange) < first_real
        else:  # unordered (top-k); an intermediate assignment needs only c1's slots
            order = _topk_partition(score, invalid) if last else None
            first = order[..., :n // 2] if last else _first_half(score, invalid)
            if return_history or not last:
                in_first = torch.zeros_like(score, dtype=torch.bool).scatter_(-1, first, True)
                if invalid is not None:
                    in_first &= ~invalid
        if return_history:
            history.append(in_first)
        if not last:  # each centroid: the mean of its half (c2's as the node's total minus c1's sum)
            first_sum = in_first.to(raw.dtype).unsqueeze(-2) @ raw        # (..., 1, d)
            c = F.normalize(torch.cat([first_sum, total - first_sum], -2) / sizes, dim=-1)
    return (order, torch.stack(history)) if return_history else order


class SplitHistory(NamedTuple):
    """The assignments of one tree level (see :func:`hierarchical_cluster_permutation`)."""
    tokens: torch.Tensor    # (G, nodes, cap) token id of every slot of every node (ids >= N: padding)
    in_first: torch.Tensor  # (iters + 1, G, nodes, cap) per iteration True on the real tokens given to c1


def _flat_rows(ids: torch.Tensor, rows_per_group: int) -> torch.Tensor:
    """(G, n) row ids within each group -> ids into the (G * rows_per_group) flattened rows."""
    return (ids + torch.arange(ids.shape[0], device=ids.device)[:, None] * rows_per_group).flatten()


def hierarchical_cluster_permutation(x: torch.Tensor, layout: ClusterLayout, iters: int = 2,
                                     seeding: str = 'farthest', assignment: str = 'soft',
                                     return_history: bool = False):
    """Token ids (G, N_p) of each group (image x head) in clustered order, ids >= N on padded slots.

    x: (G, N, d) clustering features (e.g. the queries of every head). K levels of binary splits, each on all
    groups and nodes at once; positions ``layout.kv_pos`` / ``layout.q_pos`` of the result are the leaves.
    assignment='balanced': :func:`balanced_kmeans_split` (the paper: hard, balanced assignments in every
    iteration, centroids the means of the halves, on the raw features). assignment='soft':
    :func:`balanced_binary_split` (pytorch-boat's scheme: soft nearest-centroid refinement, balanced only in
    the final split); with order-independent seeding ('farthest') it works on unit vectors (spherical
    k-means), with 'halves' seeding (pytorch-boat) on raw vectors. Levels before the last are unordered top-k
    partitions unless the seeding depends on token order ('halves': a sort per level). No gradient flows.

    return_history=True also returns one :class:`SplitHistory` per level (assignment='balanced' only): the
    token of every slot and, per iteration, which of them went to the first child.
    """
    if assignment not in ('soft', 'balanced'):
        raise ConfigError(f"assignment must be 'soft' or 'balanced', got '{assignment}'")
    if return_history and assignment != 'balanced':
        raise ValueError("return_history needs assignment='balanced' (the soft scheme has one hard split per level)")
    G, N, d = x.shape
    if N != layout.num_tokens:
        raise ValueError(f'layout is for {layout.num_tokens} tokens, got {N}')
    ordered = seeding == 'halves'
    balanced = assignment == 'balanced'
    history = []
    with torch.no_grad():
        x = x.detach()
        padded = layout.padded
        if padded > N:
            x = F.pad(x, (0, 0, 0, padded - N))
        # one table gathered per level (raw vectors where the split takes cosines from them, see split_ratio);
        # contiguous, as the batched matmuls are much slower on strided rows
        raw_table = ordered or balanced
        table = x.reshape(G * padded, d) if raw_table else F.normalize(x.reshape(G * padded, d), dim=-1)
        perm = layout.root.to(x.device).expand(G, padded)
        for level in range(layout.num_levels):
            nodes, cap = 2 ** level, padded >> level
            last = level == layout.num_levels - 1
            if level == 0 and padded == N:  # the root is the identity arrangement: nothing to move
                node_table = table.view(G, 1, cap, d)
            else:
                node_table = table.index_select(0, _flat_rows(perm, padded)).view(G, nodes, cap, d)
            invalid = (perm >= N).view(G, nodes, cap) if padded > N else None
            if balanced:
                order = balanced_kmeans_split(node_table, invalid, iters, seeding, sort=ordered or last,
                                              return_history=return_history)
                if return_history:
                    order, in_first = order
                    history.append(SplitHistory(perm.reshape(G, nodes, cap), in_first))
            else:
                node_unit, node_raw = (None, node_table) if ordered else (node_table, None)
                order = balanced_binary_split(node_unit, node_raw, invalid, iters, seeding, sort=ordered or last)
            if ordered and not last:  # lay the two sorted children out side by side, padding balanced
                order = order.gather(2, layout.moves[level].to(x.device).expand(G, -1, -1))
            perm = perm.reshape(G, nodes, cap).gather(2, order).reshape(G, padded)
    return (perm, history) if return_history else perm


def clustered_attention(qkv: torch.Tensor, perm: torch.Tensor, layout: ClusterLayout,
                        scale: Optional[float] = None, dropout_p: float = 0.0) -> torch.Tensor:
    """Self-attention inside every leaf of a clustering, all images, heads and leaves in one SDPA call.

    qkv: (B, N, 3, heads, d), e.g. a fused qkv projection viewed so; perm: (B * heads, N_p) from
    :func:`hierarchical_cluster_permutation` (group g = image g // heads, head g % heads). A token that is a
    query in two leaves gets the mean of its two outputs. Returns (B, N, heads, d) in token order.
    """
    B, N, three, heads, d = qkv.shape
    G, device = B * heads, qkv.device
    if perm.shape != (G, layout.padded) or three != 3:
        raise ValueError(f'qkv {tuple(qkv.shape)} / perm {tuple(perm.shape)} do not fit a layout of '
                         f'{layout.num_tokens} tokens ({layout.padded} slots)')
    table = qkv.reshape(B * N * 3 * heads, d)       # row ((b * N + t) * 3 + s) * heads + h
    group = torch.arange(G, device=device)
    first_row = ((group // heads) * N * 3 * heads + group % heads)[:, None]

    def rows(positions):  # (leaves, L) static positions -> q rows of their tokens in every group
        tokens = perm[:, positions.to(device).flatten()]
        return (first_row + tokens * 3 * heads).flatten()
    leaves = layout.kv_pos.shape[0]
    kv_rows = rows(layout.kv_pos)
    k = table.index_select(0, kv_rows + heads).view(G, leaves, -1, d)
    v = table.index_select(0, kv_rows + 2 * heads).view(G, leaves, -1, d)
    q_rows = kv_rows if layout.q_pos is layout.kv_pos else rows(layout.q_pos)
    q = table.index_select(0, q_rows).view(G, leaves, -1, d)
    out = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, scale=scale).reshape(-1, d)
    # every token's position, then the slot(s) holding its output; gathered straight into (B, N, heads) order
    position = torch.empty_like(perm).scatter_(1, perm, torch.arange(layout.padded, device=device).expand(G, -1))
    position = position[:, :N].reshape(B, heads, N).transpose(1, 2)               # (B, N, heads)
    slots_per_group = out.shape[0] // G
    offset = (torch.arange(B, device=device)[:, None, None] * heads
              + torch.arange(heads, device=device)[None, None, :]) * slots_per_group
    position = position.flatten()
    slots = layout.pos_slots.to(device)
    first = slots[0].index_select(0, position).view(B, N, heads) + offset
    result = out.index_select(0, first.flatten()).view(B, N, heads, d)
    if layout.pos_weights is not None:  # tokens in two leaves: the mean of their two outputs
        weights = layout.pos_weights.to(device=device, dtype=out.dtype).index_select(1, position)
        second = slots[1].index_select(0, position).view(B, N, heads) + offset
        result = torch.addcmul(result * weights[0].view(B, N, heads, 1),
                               out.index_select(0, second.flatten()).view(B, N, heads, d),
                               weights[1].view(B, N, heads, 1))
    return result
