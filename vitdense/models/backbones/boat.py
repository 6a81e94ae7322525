"""BOAT: Bilateral Local Attention Vision Transformer (Yu et al., arXiv 2201.13027) as dense-prediction backbones.

A bilateral local attention block is ``T1 = T + ISLA(LN(T))``, ``T2 = T1 + FSLA(LN(T1))``,
``T3 = T2 + MLP(LN(T2))``: image-space local attention (Swin's (shifted) windows in :class:`BOATSwin`,
CSWin's cross-shaped stripes in :class:`BOATCSWin`) followed by feature-space local attention, which groups
tokens by content and attends inside each group.

FSLA (:class:`FeatureSpaceLocalAttention`), for any H x W and any batch size (its clustering
functions are in this module too):

* every (image, head) clusters its own queries (detached, no gradient) with K = round(log2(N / leaf_size))
  levels of balanced binary clustering, each level for all images, heads and nodes at once. Per node two
  centroids and every token's ratio ``r = s(t, c1) / s(t, c2)``, ``s = 1 + cos``; the tokens ranked by r
  make two equal halves. 'paper' layout (the paper's balanced binary clustering,
  :func:`balanced_kmeans_split`): ``cluster_iters`` balanced k-means steps, every
  assignment hard and balanced (first half of the ranking -> c1, second -> c2), each centroid the mean of
  its half. 'pytorch-boat' layout (:func:`split_ratio`): ``cluster_iters`` soft
  nearest-centroid refinements, balanced only in the final split. ``cluster_dim`` optionally clusters a
  fixed random projection of the queries (cheaper).
* token counts that do not halve evenly: a node of n real tokens gives ceil(n/2) to its first child and
  floor(n/2) to its second (m = ceil(N / 2^K) per leaf, or m - 1). Inside the tree the difference is made of
  zero "padded slots" on a static layout, with ratio +inf (sorted last, never a seed or a centroid weight).
  Leaves hold real tokens only: each is the first / last ``m + overlap`` sorted tokens of its parent, so all
  have the same size, no attention mask is needed and a padded slot never gives or receives attention; the
  result equals a clustering of the real tokens alone (tested against such a reference).
* at the last level sibling clusters overlap: 2n shared tokens (n = ``overlap``, 20 in the paper; one or two
  more when a parent holds fewer than 2m). 'paper' layout: a shared token is a query in both clusters and
  gets the mean of its two outputs (the paper does not say how the two outputs combine: the mean is
  vitdense's choice, see :func:`balanced_cluster_layout`). 'pytorch-boat' layout:
  every token is the query of its own half only and just keys / values overlap (what the public code does).
* all leaves of all images and heads go through one ``scaled_dot_product_attention`` call, rows gathered
  straight from the fused qkv projection; a depthwise 3x3 conv on V over the spatial map (locally-enhanced
  positional encoding) is added before the output projection.

Layouts (``layout=``):

* ``'paper'`` (default): FSLA in every block, with drop path; the paper's balanced iterations (above).
  Where the paper is silent the choices are vitdense's: centroids seeded from the token least similar to
  the node's mean direction and its mirror image about it (deterministic and independent of token order, so
  the clustering is equivariant to a permutation of the tokens), s = 1 + cos (positive, so the ratio is
  defined), shared tokens' two outputs averaged, and 2 iterations by default (``cluster_iters``, as many
  refinements as pytorch-boat runs).
* ``'pytorch-boat'``: the block placement and quirks of mahaoyuHKU/pytorch-boat, whose ImageNet weights are
  the only public ones. BOAT-Swin: FSLA (``attnC`` / ``norm4`` there) only in the shifted blocks of stages
  1-3 (at 224 the 7x7 stage has no shift, hence no FSLA), without drop path. BOAT-CSWin: FSLA
  (``content_attn`` / ``norm3``) in the even blocks of every stage, with drop path, q.k unscaled (its
  ``qk_scale=qkv_bias`` makes the scale 1). Both: centroids seeded from the means of the node's two halves,
  2 soft k-means steps on raw vectors, a sort per level, keys-only overlap of 20, leaves of 49. At
  N = 49 * 2^k this is the public computation (tested against a restatement of it); at N = 49 (BOAT-CSWin's
  last stage at 224) pytorch-boat lets an image attend to 20 tokens of the next image in the batch, here
  the 49 tokens attend to each other.

Image-space attention: BOAT-Swin is :class:`~vitdense.models.backbones.SwinTransformer` (its constructor, window
attention, padding, shift masks, patch merging) with BOAT blocks chosen by ``build_block``; BOAT-CSWin has a batched cross-shaped window attention: half the heads in vertical stripes
(full height, width sw), half in horizontal ones, all stripes of all images in one SDPA call per direction,
maps zero-padded to a whole number of stripes with the padded keys masked, LePE (depthwise 3x3 conv on V
inside each stripe); the last stage attends globally. Stem: conv 7x7 stride 4 + LN, merging: conv 3x3
stride 2 + LN (pytorch-boat / CSWin names are remapped by the classes' ``adapt_checkpoint``).
"""
import inspect
import math
from functools import lru_cache
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from mmengine.model import BaseModule
from timm.layers import DropPath, Mlp, trunc_normal_

from vitdense.checkpoint.adaptation import CheckpointAdaptation
from vitdense.checkpoint.io import extract_state_dict, load_checkpoint_file
from vitdense.errors import CheckpointError, ConfigError
from vitdense.registry import MODELS
from ..cpu_layers import use_fast_cpu_layers
from ..layers import (init_transformer_weights, pad_to_multiple, window_padding_mask, window_partition,
                      window_reverse)
from .base import DenseBackbone, stochastic_depth
from .swin import SwinBlock, SwinTransformer

LAYOUTS = ('paper', 'pytorch-boat')


def _check_layout(layout: str) -> None:
    if layout not in LAYOUTS:
        raise ConfigError(f"layout must be one of {LAYOUTS}, got '{layout}'")


# ---------------------------------------------------------------------------------------------------------
# Balanced hierarchical clustering (FSLA's grouping of tokens by content)
# ---------------------------------------------------------------------------------------------------------
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


@lru_cache(maxsize=128)
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


# ---------------------------------------------------------------------------------------------------------
# Feature-space local attention
# ---------------------------------------------------------------------------------------------------------
class FeatureSpaceLocalAttention(nn.Module):
    """FSLA on an NHWC map of any size: attention inside balanced content clusters (see the module doc).

    Args:
        leaf_size: target tokens per cluster (K = round(log2(N / leaf_size)) levels; below sqrt(2) leaves:
            one cluster, i.e. full attention over the map).
        overlap: tokens each of two sibling clusters takes from the other at the last level (n in the paper).
        shared_queries: True: shared tokens are queries in both clusters, outputs averaged (paper);
            False: keys / values only (pytorch-boat).
        cluster_iters / seeding: centroid updates and seeding, see
            :func:`balanced_kmeans_split` / :func:`split_ratio`.
        assignment: 'balanced' (the paper: hard, balanced assignments in every iteration) | 'soft'
            (pytorch-boat: soft refinement, balanced final split), see
            :func:`hierarchical_cluster_permutation`.
        cluster_dim: cluster on the queries projected to this many dims per head (a fixed random orthonormal
            projection folded into the query weights: cheaper, approximately the same cosines); None: the
            full head dim.
        qk_scale: None -> head_dim ** -0.5.
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True, qk_scale: Optional[float] = None,
                 leaf_size: int = 49, overlap: int = 20, shared_queries: bool = True, cluster_iters: int = 2,
                 seeding: str = 'farthest', assignment: str = 'balanced', cluster_dim: Optional[int] = None,
                 attn_drop: float = 0.0, proj_drop: float = 0.0):
        super().__init__()
        if dim % num_heads:
            raise ConfigError(f'dim {dim} is not divisible by num_heads {num_heads}')
        head_dim = dim // num_heads
        self.num_heads = num_heads
        self.scale = qk_scale if qk_scale is not None else head_dim ** -0.5
        self.leaf_size = leaf_size
        self.overlap = overlap
        self.shared_queries = shared_queries
        self.cluster_iters = cluster_iters
        self.seeding = seeding
        if assignment not in ('soft', 'balanced'):
            raise ConfigError(f"assignment must be 'soft' or 'balanced', got '{assignment}'")
        self.assignment = assignment
        self.attn_drop = attn_drop
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.lepe = nn.Conv2d(dim, dim, kernel_size=3, padding=1, groups=dim)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        if cluster_dim is not None and cluster_dim < head_dim:
            gen = torch.Generator().manual_seed(head_dim * 1000 + cluster_dim)
            basis = torch.linalg.qr(torch.randn(num_heads, head_dim, cluster_dim, generator=gen))[0]
            self.register_buffer('cluster_proj', basis, persistent=False)   # (heads, head_dim, cluster_dim)
        else:
            self.cluster_proj = None

    def cluster_features(self, x: torch.Tensor, qkv: torch.Tensor) -> torch.Tensor:
        """(B * heads, N, r) detached features to cluster: each head's queries (qkv: (B, N, 3, heads, d)),
        or their projection, computed straight from x with the projected query weights (one small GEMM)."""
        B, N, _, h, d = qkv.shape
        if self.cluster_proj is None:
            return qkv[:, :, 0].detach().transpose(1, 2).reshape(B * h, N, d)
        r = self.cluster_proj.shape[-1]
        weight = self.qkv.weight.detach()[:h * d].view(h, d, -1)
        proj = self.cluster_proj.to(weight.dtype)
        w = torch.einsum('hdr,hdc->hrc', proj, weight).reshape(h * r, -1)
        b = None if self.qkv.bias is None else torch.einsum('hdr,hd->hr', proj,
                                                            self.qkv.bias.detach()[:h * d].view(h, d)).flatten()
        feats = F.linear(x.detach().reshape(B, N, -1), w, b).view(B, N, h, r)
        return feats.transpose(1, 2).reshape(B * h, N, r)

    def cluster(self, x: torch.Tensor, qkv: torch.Tensor):
        """-> (permutation (B * heads, N_p), layout), or (None, None) when N fits one cluster."""
        N = qkv.shape[1]
        levels = cluster_levels(N, self.leaf_size)
        if levels == 0:
            return None, None
        # under torch.compile, trace the (pure) layout builder itself: dynamo ignores lru_cache and warns
        build = balanced_cluster_layout.__wrapped__ if torch.compiler.is_compiling() else balanced_cluster_layout
        layout = build(N, levels, self.overlap, self.shared_queries, qkv.device)
        feats = self.cluster_features(x, qkv)
        feats = feats.float() if feats.dtype in (torch.float16, torch.bfloat16) else feats  # float32 at least
        perm = hierarchical_cluster_permutation(feats, layout, self.cluster_iters, self.seeding, self.assignment)
        return perm, layout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, H, W, C = x.shape
        h, N = self.num_heads, H * W
        qkv = self.qkv(x)                                                      # (B, H, W, 3C): [q | k | v]
        heads = qkv.view(B, N, 3, h, C // h)
        dropout = self.attn_drop if self.training else 0.0
        perm, layout = self.cluster(x, heads)
        if perm is None:  # one cluster: plain attention over all tokens
            q, k, v = heads.permute(2, 0, 3, 1, 4).unbind(0)
            out = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, scale=self.scale).transpose(1, 2)
        else:
            out = clustered_attention(heads, perm, layout, scale=self.scale, dropout_p=dropout)
        out = out.reshape(B, H, W, C)
        lepe = self.lepe(qkv[..., 2 * C:].permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return self.proj_drop(self.proj(out + lepe))


def fsla_settings(layout: str, family: str) -> dict:
    """FSLA keyword arguments of a layout ('paper' | 'pytorch-boat') for a family ('swin' | 'cswin')."""
    _check_layout(layout)
    if layout == 'paper':
        return dict(shared_queries=True, seeding='farthest', assignment='balanced')
    settings = dict(shared_queries=False, seeding='halves', assignment='soft', leaf_size=49, overlap=20,
                    cluster_iters=2, cluster_dim=None)
    if family == 'cswin':
        settings['qk_scale'] = 1.0  # pytorch-boat passes qk_scale=qkv_bias (True)
    return settings


# ---------------------------------------------------------------------------------------------------------
# BOAT-Swin
# ---------------------------------------------------------------------------------------------------------
class BOATSwinBlock(SwinBlock):
    """Swin block + FSLA between the window attention and the MLP (``fsla=None``: a plain Swin block).

    ``always_shift`` as in :class:`SwinBlock`: False gives classification Swin's windows (no shift and the
    window shrunk to the map where the map fits in one window), as pytorch-boat has at 224; the dense
    default keeps mmdet's always-shift behaviour.
    """

    def __init__(self, dim: int, num_heads: int, window_size: int = 7, shifted: bool = False,
                 mlp_ratio: float = 4.0, qkv_bias: bool = True, drop_path: float = 0.0, norm_layer=nn.LayerNorm,
                 fsla: Optional[dict] = None, fsla_on: str = 'all', fsla_drop_path: bool = True,
                 always_shift: bool = True):
        super().__init__(dim, num_heads, window_size=window_size, shifted=shifted, mlp_ratio=mlp_ratio,
                         qkv_bias=qkv_bias, drop_path=drop_path, norm_layer=norm_layer, always_shift=always_shift)
        with_fsla = fsla is not None and (fsla_on == 'all' or (fsla_on == 'shifted' and shifted))
        if with_fsla:
            self.norm_fsla = norm_layer(dim)
            self.fsla = FeatureSpaceLocalAttention(dim, num_heads, qkv_bias=qkv_bias, **fsla)
            self.drop_path_fsla = DropPath(drop_path) if drop_path > 0 and fsla_drop_path else nn.Identity()
        else:
            self.fsla = None

    def forward(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        x = x + self.drop_path1(self.window_attention(self.norm1(x), mask))
        if self.fsla is not None:
            x = x + self.drop_path_fsla(self.fsla(self.norm_fsla(x)))
        return x + self.drop_path2(self.mlp(self.norm2(x)))


@MODELS.register_module()
class BOATSwin(SwinTransformer):
    """BOAT-Swin-T/S/B: Swin's pyramid with a FSLA in each block (see the module doc for ``layout``).

    Args:
        arch: 'tiny' | 'small' | 'base' (Swin's settings) or dict(embed_dim=, depths=, num_heads=).
        layout: 'paper' | 'pytorch-boat' (FSLA placement, scaling and clustering of the public weights).
        leaf_size / overlap / cluster_iters / cluster_dim: FSLA clustering, see
            :class:`FeatureSpaceLocalAttention` ('pytorch-boat' fixes them to 49 / 20 / 2 / None).
        always_shift: False reproduces classification Swin (no shift, window shrunk to the map, where the map
            fits in one window: the 7 x 7 last stage at 224), see :class:`SwinTransformer`.
        Others: see :class:`SwinTransformer` / :class:`DenseBackbone`.
    """
    arch_settings = {k: v for k, v in SwinTransformer.arch_settings.items() if k != 'large'}

    def __init__(self, arch='tiny', in_channels: int = 3, patch_size: int = 4, window_size: int = 7,
                 mlp_ratio: float = 4.0, qkv_bias: bool = True, drop_path_rate: float = 0.2,
                 layout: str = 'paper', leaf_size: int = 49, overlap: int = 20, cluster_iters: int = 2,
                 cluster_dim: Optional[int] = None,
                 always_shift: bool = True, out_indices=(0, 1, 2, 3), frozen_stages: int = -1,
                 with_cp: bool = False, init_cfg=None):
        # set before Swin's constructor, which calls build_block for every block (plain values: nn.Module
        # allows them before its own __init__)
        self.layout = layout
        self.fsla_options = {'leaf_size': leaf_size, 'overlap': overlap, 'cluster_iters': cluster_iters,
                             'cluster_dim': cluster_dim, **fsla_settings(layout, 'swin')}  # the layout's win
        super().__init__(arch=arch, in_channels=in_channels, patch_size=patch_size, window_size=window_size,
                         mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, drop_path_rate=drop_path_rate,
                         always_shift=always_shift, out_indices=out_indices, frozen_stages=frozen_stages,
                         with_cp=with_cp, init_cfg=init_cfg)

    def build_block(self, stage: int, index: int, **block_args) -> nn.Module:
        """A :class:`BOATSwinBlock`; 'paper': FSLA in every block, with drop path; 'pytorch-boat': FSLA in the
        shifted blocks of the stages larger than a window at 224 (all but the last), without drop path."""
        if self.layout == 'paper':
            placement = dict(fsla_on='all', fsla_drop_path=True)
        else:
            placement = dict(fsla_on='shifted' if stage < self.num_stages - 1 else 'none', fsla_drop_path=False)
        return BOATSwinBlock(**block_args, fsla=self.fsla_options, always_shift=self.always_shift, **placement)

    def adapt_checkpoint(self, state_dict: Dict[str, torch.Tensor]) -> CheckpointAdaptation:
        """Swin's layouts (:meth:`SwinTransformer.adapt_checkpoint`), then pytorch-boat's FSLA names
        (``attnC`` -> ``fsla``, ``attnC.get_v`` -> ``fsla.lepe``, ``norm4`` -> ``norm_fsla``); a note says when the
        checkpoint has its FSLA in other blocks than this ``layout`` (the load is then partial)."""
        adaptation = super().adapt_checkpoint(state_dict)
        if any('.attnC.' in k for k in adaptation.state_dict):
            note_fsla_placement(adaptation, self, 'attnC')
            adaptation.rename(PYTORCH_BOAT_SWIN_RENAMES, note='pytorch-boat BOAT-Swin layout remapped '
                                                               '(attnC -> fsla, norm4 -> norm_fsla, get_v -> lepe)')
        elif 'layers.0.downsample.reduction.weight' in state_dict:  # a plain official Swin release
            note_fsla_placement(adaptation, self, 'fsla')
        return adaptation


# ---------------------------------------------------------------------------------------------------------
# CSWin pieces and BOAT-CSWin
# ---------------------------------------------------------------------------------------------------------
def stripe_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, window: Tuple[int, int],
                     num_heads: int, lepe: nn.Module, scale: float, dropout_p: float = 0.0) -> torch.Tensor:
    """Attention inside (wh x ww) windows of NHWC q / k / v (B, H, W, c), all windows in one SDPA call.

    The map is zero-padded to whole windows; padded keys are masked, padded queries cropped. ``lepe``
    (depthwise conv) runs on V inside each window (zeros beyond it), as CSWin's LePE, and is added per token.
    """
    B, H, W, c = q.shape
    wh, ww = window
    L = wh * ww
    qkv = pad_to_multiple(torch.cat([q, k, v], -1), window, channels_last=True)
    Hp, Wp = qkv.shape[1:3]
    windows = window_partition(qkv, window)                                        # (B nW, L, 3c)
    BW = windows.shape[0]
    qw, kw, vw = windows.view(BW, L, 3, num_heads, c // num_heads).permute(2, 0, 3, 1, 4).unbind(0)
    pos = lepe(windows[..., 2 * c:].transpose(1, 2).reshape(BW, c, wh, ww)).view(BW, num_heads, -1, L)
    mask = None
    if Hp != H or Wp != W:
        valid = window_padding_mask(H, W, window, device=q.device)                 # (nW, L)
        mask = valid[None].expand(B, -1, -1).reshape(BW, 1, 1, L)
    out = F.scaled_dot_product_attention(qw, kw, vw, attn_mask=mask, dropout_p=dropout_p, scale=scale)
    out = (out + pos.transpose(-1, -2)).transpose(1, 2).reshape(BW, L, c)
    return window_reverse(out, window, Hp, Wp)[:, :H, :W]


class CrossShapedWindowAttention(nn.Module):
    """CSWin's cross-shaped window self-attention with LePE on an NHWC map of any size.

    Half of the heads (and channels) attend inside vertical stripes (full height, ``stripe_width`` columns),
    the other half inside horizontal ones; ``full=True`` (CSWin's last stage) is one branch attending over
    the whole map.
    """

    def __init__(self, dim: int, num_heads: int, stripe_width: int, full: bool = False, qkv_bias: bool = True,
                 qk_scale: Optional[float] = None, attn_drop: float = 0.0):
        super().__init__()
        branches = 1 if full else 2
        if num_heads % branches or dim % num_heads:
            raise ConfigError(f'CSWin attention needs dim ({dim}) divisible by num_heads ({num_heads}) and an '
                              'even num_heads outside the last stage')
        self.num_heads = num_heads
        self.stripe_width = stripe_width
        self.full = full
        self.scale = qk_scale if qk_scale is not None else (dim // num_heads) ** -0.5
        self.attn_drop = attn_drop
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.lepe = nn.ModuleList([
            nn.Conv2d(dim // branches, dim // branches, 3, padding=1, groups=dim // branches)
            for _ in range(branches)])
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, H, W, C = x.shape
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        dropout = self.attn_drop if self.training else 0.0
        if self.full:
            out = stripe_attention(q, k, v, (H, W), self.num_heads, self.lepe[0], self.scale, dropout)
        else:
            h, sw, heads = C // 2, self.stripe_width, self.num_heads // 2
            out = torch.cat([
                stripe_attention(q[..., :h], k[..., :h], v[..., :h], (H, sw), heads, self.lepe[0], self.scale,
                                 dropout),
                stripe_attention(q[..., h:], k[..., h:], v[..., h:], (sw, W), heads, self.lepe[1], self.scale,
                                 dropout)], dim=-1)
        return self.proj(out)


class BOATCSWinBlock(nn.Module):
    """CSWin block + optional FSLA between the cross-shaped attention and the MLP (NHWC in and out)."""

    def __init__(self, dim: int, num_heads: int, stripe_width: int, full: bool = False, mlp_ratio: float = 4.0,
                 qkv_bias: bool = True, drop_path: float = 0.0, fsla: Optional[dict] = None,
                 norm_layer=nn.LayerNorm):
        super().__init__()
        self.norm1 = norm_layer(dim)
        self.attn = CrossShapedWindowAttention(dim, num_heads, stripe_width, full=full, qkv_bias=qkv_bias)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        if fsla is not None:
            self.norm_fsla = norm_layer(dim)
            self.fsla = FeatureSpaceLocalAttention(dim, num_heads, qkv_bias=qkv_bias, **fsla)
        else:
            self.fsla = None
        self.norm2 = norm_layer(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=nn.GELU)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        if self.fsla is not None:
            x = x + self.drop_path(self.fsla(self.norm_fsla(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class ConvStem(nn.Module):
    """CSWin's stem: conv 7x7 stride 4 (input zero-padded to a multiple of 4) + LayerNorm, NCHW -> NHWC."""

    def __init__(self, in_channels: int, dim: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, dim, kernel_size=7, stride=4, padding=2)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(pad_to_multiple(x, 4)).permute(0, 2, 3, 1))


class ConvMerging(nn.Module):
    """CSWin's merge block: conv 3x3 stride 2 (ceil(H / 2) x ceil(W / 2) out) + LayerNorm, NHWC."""

    def __init__(self, dim: int, out_dim: int):
        super().__init__()
        self.conv = nn.Conv2d(dim, out_dim, kernel_size=3, stride=2, padding=1)
        self.norm = nn.LayerNorm(out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1))


class CSWinStage(nn.Module):
    def __init__(self, dim: int, out_dim: int, depth: int, num_heads: int, stripe_width: int, full: bool,
                 downsample: bool, drop_path: Sequence[float], fsla: Optional[dict], fsla_on: str,
                 mlp_ratio: float = 4.0, qkv_bias: bool = True, with_cp: bool = False):
        super().__init__()
        self.downsample = ConvMerging(dim, out_dim) if downsample else nn.Identity()
        self.blocks = nn.ModuleList([
            BOATCSWinBlock(out_dim, num_heads, stripe_width, full=full, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias,
                           drop_path=drop_path[i],
                           fsla=fsla if fsla_on == 'all' or (fsla_on == 'even' and i % 2 == 0) else None)
            for i in range(depth)])
        self.with_cp = with_cp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.downsample(x)
        for block in self.blocks:
            x = cp.checkpoint(block, x, use_reentrant=False) if self.with_cp and x.requires_grad else block(x)
        return x


@MODELS.register_module()
class BOATCSWin(DenseBackbone):
    """BOAT-CSWin-T/S/B: CSWin's pyramid (cross-shaped windows, conv stem / merging) with FSLA.

    Args:
        arch: 'tiny' | 'small' | 'base' (CSWin's settings) or dict(embed_dim=, depths=, num_heads=).
        stripe_widths: per stage; the last stage attends over the whole map (CSWin's ``last_stage``).
        layout: 'paper' (FSLA in every block) | 'pytorch-boat' (even blocks, q.k unscaled; see module doc).
        leaf_size / overlap / cluster_iters / cluster_dim: as for :class:`BOATSwin`.
        drop_path_rate: stochastic depth (CSWin det/seg: T 0.2, S 0.3, B 0.4 in vitdense's configs).
    """
    arch_settings = {
        'tiny': dict(embed_dim=64, depths=(1, 2, 21, 1), num_heads=(2, 4, 8, 16)),
        'small': dict(embed_dim=64, depths=(2, 4, 32, 2), num_heads=(2, 4, 8, 16)),
        'base': dict(embed_dim=96, depths=(2, 4, 32, 2), num_heads=(4, 8, 16, 32)),
    }

    def __init__(self, arch='tiny', in_channels: int = 3, stripe_widths: Sequence[int] = (1, 2, 7, 7),
                 mlp_ratio: float = 4.0, qkv_bias: bool = True, drop_path_rate: float = 0.2,
                 layout: str = 'paper', leaf_size: int = 49, overlap: int = 20, cluster_iters: int = 2,
                 cluster_dim: Optional[int] = None,
                 out_indices=(0, 1, 2, 3), frozen_stages: int = -1, with_cp: bool = False, init_cfg=None):
        super().__init__(out_indices, frozen_stages, in_channels, init_cfg)
        settings = self.resolve_arch(arch)
        embed_dim, depths, num_heads = settings['embed_dim'], settings['depths'], settings['num_heads']
        if len(stripe_widths) != self.num_stages:
            raise ConfigError(f'stripe_widths needs one width per stage ({self.num_stages}), got {stripe_widths}')
        self.layout = layout
        fsla = dict(leaf_size=leaf_size, overlap=overlap, cluster_iters=cluster_iters, cluster_dim=cluster_dim)
        fsla.update(fsla_settings(layout, 'cswin'))
        self.depths = tuple(depths)
        self.stem = ConvStem(in_channels, embed_dim)
        dims = [embed_dim * 2 ** i for i in range(self.num_stages)]
        self.num_features = dims
        dpr = stochastic_depth(drop_path_rate, depths)
        self.stages = nn.ModuleList([
            CSWinStage(dims[max(i - 1, 0)], dims[i], depths[i], num_heads[i], stripe_widths[i],
                       full=i == self.num_stages - 1, downsample=i > 0, drop_path=dpr[i], fsla=fsla,
                       fsla_on='all' if layout == 'paper' else 'even', mlp_ratio=mlp_ratio, qkv_bias=qkv_bias,
                       with_cp=with_cp)
            for i in range(self.num_stages)])
        self.out_norms = self.build_out_norms(nn.LayerNorm, dims)
        self.apply(init_transformer_weights)
        use_fast_cpu_layers(self)
        self._freeze()

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        return self.nhwc_stage_pyramid(x, self.stem, self.stages)

    def frozen_modules(self) -> List[nn.Module]:
        return self.stem_and_stages(self.stem, self.stages)

    def param_depth(self, param_name: str, mode: str) -> Tuple[int, int]:
        """Per block (layer_wise) or per stage (stage_wise), as Swin's; see
        :meth:`DenseBackbone.stage_layer_depth`."""
        return self.stage_layer_depth(param_name, mode, 'stem', 'stages')

    def adapt_checkpoint(self, state_dict: Dict[str, torch.Tensor]) -> CheckpointAdaptation:
        """pytorch-boat BOAT-CSWin and official microsoft/CSWin-Transformer names (``stage1_conv_embed``,
        ``stage{s}.{j}``, ``merge{s}``, ``attns.b.get_v``, ``content_attn``, ``norm3``) -> vitdense's; the
        classifier is dropped."""
        adaptation = super().adapt_checkpoint(state_dict)
        if 'stage1_conv_embed.0.weight' in adaptation.state_dict:
            note_fsla_placement(adaptation, self, 'content_attn')
            adaptation.rename(CSWIN_RENAMES, note='pytorch-boat BOAT-CSWin / official CSWin layout remapped')
        adaptation.drop_prefix(CLASSIFIER_KEYS, 'classifier head and its final norm')
        return adaptation


# ---------------------------------------------------------------------------------------------------------
# ImageNet classifiers
# ---------------------------------------------------------------------------------------------------------
@MODELS.register_module()
class BOATClassifier(BaseModule):
    """ImageNet classifier on a BOAT backbone: last-stage map -> its output norm (the classification
    model's final LayerNorm) -> global average pool -> linear head.

    ``init_cfg=dict(type='Pretrained', checkpoint=PATH)`` loads a pytorch-boat (or vitdense) classification
    checkpoint, head and final norm included. BOAT-Swin classifiers default to ``always_shift=False`` (no
    shift on maps that fit one window), the classification recipe the public weights were trained with.
    """

    def __init__(self, backbone: dict, num_classes: int = 1000, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        backbone = dict(backbone, out_indices=(3,))
        # a backbone with two window semantics gets the classification one, the windows the weights learned
        backbone_cls = backbone.get('type')
        backbone_cls = MODELS.get(backbone_cls) if isinstance(backbone_cls, str) else backbone_cls
        if 'always_shift' in inspect.signature(backbone_cls).parameters:
            backbone.setdefault('always_shift', False)
        self.backbone = MODELS.build(backbone)
        self.num_classes = num_classes
        self.head = nn.Linear(self.backbone.num_features[-1], num_classes)
        trunc_normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x)[-1].mean(dim=(2, 3)))

    def init_weights(self):
        cfg = self.init_cfg
        if isinstance(cfg, dict) and cfg.get('type') == 'Pretrained':
            self.load_classification_checkpoint(cfg['checkpoint'])
            self._is_init = True
            return
        super().init_weights()

    def load_classification_checkpoint(self, path: str):
        """Load a classification checkpoint (pytorch-boat or vitdense) with its head and final norm: the backbone
        through its own :meth:`adapt_checkpoint`, the final norm as its last output norm. Raises
        :class:`CheckpointError` when the head or the backbone does not fit."""
        sd = extract_state_dict(load_checkpoint_file(path), str(path), None)
        if any(k.startswith('backbone.') for k in sd):  # a vitdense BOATClassifier state dict
            return self.load_state_dict(sd, strict=True)
        head = {k[len('head.'):]: v for k, v in sd.items() if k.startswith('head.')}
        final_norm = {k[len('norm.'):]: v for k, v in sd.items() if k.startswith('norm.')}
        backbone_sd = self.backbone.adapt_checkpoint(sd).state_dict
        backbone_sd.update({f'out_norms.3.{k}': v for k, v in final_norm.items()})
        result = self.backbone.load_state_dict(backbone_sd, strict=False)
        if result.missing_keys:
            raise CheckpointError(f'{path} does not fill {len(result.missing_keys)} backbone tensors of the '
                                  f'classifier (first: {result.missing_keys[0]}); check the arch and layout')
        weight = head.get('weight')
        if weight is None or tuple(weight.shape) != tuple(self.head.weight.shape):
            raise CheckpointError(f'{path}: classifier head {None if weight is None else tuple(weight.shape)} '
                                  f'does not fit {tuple(self.head.weight.shape)}; set num_classes to match')
        self.head.load_state_dict(head)
        return result


# ---------------------------------------------------------------------------------------------------------
# checkpoint layouts: pytorch-boat BOAT-Swin is microsoft/Swin-Transformer's layout (patch merging at the end of
# a stage, handled by Swin) plus ``layers.i.blocks.j.attnC.{qkv,proj,get_v}`` and ``norm4`` in the shifted blocks
# of stages 0-2. BOAT-CSWin is microsoft/CSWin-Transformer's layout (``stage1_conv_embed.{0,2}``,
# ``stage{s}.{j}.{qkv,proj,attns.b.get_v}``, ``merge{s}``) plus ``content_attn`` / ``norm3`` in the even blocks.
# Plain Swin / CSWin ImageNet checkpoints load too (every FSLA then stays at its init, listed as missing).
# ---------------------------------------------------------------------------------------------------------
PYTORCH_BOAT_SWIN_RENAMES = (
    (r'\.attnC\.get_v\.', '.fsla.lepe.'),
    (r'\.attnC\.', '.fsla.'),
    (r'\.norm4\.', '.norm_fsla.'),
)
CSWIN_RENAMES = (
    (r'^stage1_conv_embed\.0\.', 'stem.conv.'),
    (r'^stage1_conv_embed\.2\.', 'stem.norm.'),
    (r'^merge(\d+)\.', lambda m: f'stages.{m.group(1)}.downsample.'),
    (r'^stage(\d+)\.(\d+)\.', lambda m: f'stages.{int(m.group(1)) - 1}.blocks.{m.group(2)}.'),
    (r'^(stages\.\d+\.blocks\.\d+\.)(qkv|proj)\.', r'\1attn.\2.'),
    (r'^(stages\.\d+\.blocks\.\d+\.)attns\.(\d+)\.get_v\.', r'\1attn.lepe.\2.'),
    (r'^(stages\.\d+\.blocks\.\d+\.)content_attn\.get_v\.', r'\1fsla.lepe.'),
    (r'^(stages\.\d+\.blocks\.\d+\.)content_attn\.', r'\1fsla.'),
    (r'^(stages\.\d+\.blocks\.\d+\.)norm3\.', r'\1norm_fsla.'),
)
CLASSIFIER_KEYS = ('head.', 'norm.')  # the classification model's final norm and head (BOATClassifier maps them)


def note_fsla_placement(adaptation: CheckpointAdaptation, model: nn.Module, fsla_key: str) -> None:
    """Say when a checkpoint's FSLA placement is not the model's: the load is then partial."""
    blocks_with_fsla = {k.split(f'.{fsla_key}.')[0] for k in adaptation.state_dict if f'.{fsla_key}.' in k}
    model_blocks = {k.split('.fsla.')[0] for k in model.state_dict() if '.fsla.' in k}
    if not blocks_with_fsla:
        adaptation.note('no feature-space attention weights in this checkpoint (plain Swin / CSWin?): every FSLA '
                        'keeps its initialisation')
    elif blocks_with_fsla != model_blocks:
        adaptation.note(f"the checkpoint has FSLA in {len(blocks_with_fsla)} blocks, this {type(model).__name__} "
                        f"(layout='{model.layout}') in {len(model_blocks)}; build it with "
                        "layout='pytorch-boat' to use pytorch-boat weights as they were trained")
