"""BOAT-Swin / BOAT-CSWin: the balanced clustering and FSLA vs references, any input size, pytorch-boat layout
and checkpoints, training steps."""
import math
import os
import re

import pytest
import timm
import torch
import torch.nn.functional as F

from tests.conftest import REPO, build_model, det_batch, expected_shapes, randomize, rel_err, seg_batch, training_step
from vitdense.checkpoint import load_pretrained
from vitdense.models.backbones import BOATClassifier, BOATCSWin, BOATSwin
from vitdense.models.backbones.boat import (BOATSwinBlock, CrossShapedWindowAttention, FeatureSpaceLocalAttention,
                                            balanced_binary_split, balanced_cluster_layout, balanced_kmeans_split,
                                            cluster_levels, clustered_attention, fsla_settings,
                                            hierarchical_cluster_permutation, split_ratio)

SMALL_SWIN = dict(embed_dim=32, depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8))
SMALL_CSWIN = dict(embed_dim=32, depths=(1, 2, 2, 1), num_heads=(2, 2, 4, 8))


# ---- balanced hierarchical clustering: references ---------------------------------------------------------
# The batched implementation is checked against a naive reference written independently here: one (image,
# head) group at a time, real tokens only (no padding), recursion over the tree, a loop over leaves.
def ref_split(x, ids, seeding, iters):
    """Token ids of one node, sorted by the two-centroid ratio (first half = first child)."""
    xs = x[ids]
    xn = F.normalize(xs, dim=-1)
    n = len(ids)
    if seeding == 'halves':
        c = torch.stack([xs[:(n + 1) // 2].mean(0), xs[(n + 1) // 2:].mean(0)], 1)
    else:
        m = F.normalize(xn.sum(0), dim=0)
        far = xn[(xn @ m).argmin()]
        c = torch.stack([far, 2 * (far @ m) * m - far], 1)
    c = F.normalize(c, dim=0)
    for _ in range(iters):
        assign = torch.softmax((xn @ c) / 0.01, -1)
        c = F.normalize((xs if seeding == 'halves' else xn).T @ assign, dim=0)
    sim = xn @ c
    return [ids[i] for i in torch.sort((1 + sim[:, 0]) / (1 + sim[:, 1])).indices.tolist()]


def ref_paper_split(x, ids, iters):
    """The paper's balanced binary clustering of one node, token by token: rank by r = s(t, c1) / s(t, c2)
    (decreasing), first ceil(n / 2) -> c1, the rest -> c2, centroids the means of their tokens, ``iters``
    updates. s = 1 + cos and the seeds (the token least similar to the mean direction of the unit tokens,
    and its mirror image about that direction) are vitdense's choices.
    Returns (token ids by decreasing r under the last centroids, [set of c1's token ids per iteration])."""
    tokens = [x[i] for i in ids]
    n = len(tokens)

    def cos(a, b):
        return float(a @ b) / (float(a.norm()) * float(b.norm()))
    mean = sum(t / t.norm() for t in tokens)
    mean = mean / mean.norm()
    far = tokens[min(range(n), key=lambda i: cos(tokens[i], mean))]
    far = far / far.norm()
    c1, c2 = far, 2 * float(far @ mean) * mean - far
    history = []
    for step in range(iters + 1):
        r = [(1 + cos(t, c1)) / (1 + cos(t, c2)) for t in tokens]
        order = sorted(range(n), key=lambda i: -r[i])
        first, second = order[:(n + 1) // 2], order[(n + 1) // 2:]
        history.append({ids[i] for i in first})
        c1 = sum(tokens[i] for i in first) / len(first)
        c2 = sum(tokens[i] for i in second) / len(second)
    return [ids[i] for i in order], history


def ref_leaves(x, levels, seeding, iters, overlap, shared, assignment='soft', history=None):
    """[(query ids, key ids, query weights)] of one group x (N, d), real tokens only. assignment='balanced':
    the paper's split (:func:`ref_paper_split`), whose per-iteration c1 sets go to ``history[(level, node)]``
    (nodes numbered breadth-first from 0 at each level)."""
    N = x.shape[0]
    m = -(-N // 2 ** levels)
    counts = [N]
    for _ in range(levels - 1):
        counts = [c for n in counts for c in ((n + 1) // 2, n // 2)]
    size = m + max(0, min(overlap, min(counts) - m))   # every leaf: m + n tokens of its sorted parent
    leaves = []

    def visit(ids, level, node):
        if assignment == 'soft':
            order = ref_split(x, ids, seeding, iters)
        else:
            order, steps = ref_paper_split(x, ids, iters)
            if history is not None:
                history[(level, node)] = steps
        c1 = (len(ids) + 1) // 2
        if level < levels - 1:
            visit(order[:c1], level + 1, 2 * node)
            visit(order[c1:], level + 1, 2 * node + 1)
            return
        first, second = order[:size], order[len(order) - size:]
        if shared:
            both = set(first) & set(second)
            leaves.extend((kv, kv, [0.5 if i in both else 1.0 for i in kv]) for kv in (first, second))
        else:
            leaves.append((order[:c1], first, [1.0] * c1))
            leaves.append((order[c1:], second, [1.0] * (len(order) - c1)))
    visit(list(range(N)), 0, 0)
    return leaves


def ref_clustered_attention(q, k, v, levels, seeding, iters, overlap, shared, scale, assignment='soft',
                            histories=None):
    """q, k, v: (G, N, d) -> (G, N, d); ``histories`` (a list) gets each group's ref_leaves history."""
    out = torch.zeros_like(q)
    for g in range(q.shape[0]):
        history = {}
        if histories is not None:
            histories.append(history)
        for qi, ki, w in ref_leaves(q[g], levels, seeding, iters, overlap, shared, assignment, history):
            attn = torch.softmax(q[g, qi] @ k[g, ki].T * scale, -1) @ v[g, ki]
            out[g, qi] += attn * torch.tensor(w, dtype=q.dtype)[:, None]
    return out


def batched(q, k, v, layout, seeding, iters=2, scale=0.3, heads=2, assignment='soft'):
    """clustered_attention on (G, N, d) tensors laid out as (B = G / heads, N, 3, heads, d)."""
    G, N, d = q.shape
    perm = hierarchical_cluster_permutation(q, layout, iters, seeding, assignment)
    qkv = torch.stack([q, k, v]).view(3, G // heads, heads, N, d).permute(1, 3, 0, 2, 4)
    out = clustered_attention(qkv, perm, layout, scale=scale)            # (B, N, heads, d)
    return out.permute(0, 2, 1, 3).reshape(G, N, d), perm


def leaf_tokens(perm, positions):
    """(G, leaves, L) token ids at the given layout positions."""
    return perm[:, positions.flatten()].view(perm.shape[0], *positions.shape)


# ---- balanced hierarchical clustering ---------------------------------------------------------------------
@pytest.mark.parametrize('N,leaf,overlap,shared,seeding', [
    (130, 16, 5, True, 'farthest'),     # 130 = 8 leaves of 16 or 17: padded slots inside the tree
    (130, 16, 5, False, 'halves'),
    (221, 20, 5, True, 'halves'),
    (1001, 7, 5, False, 'farthest'),    # 128 leaves, 23 padded slots
    (784, 49, 20, True, 'farthest'),    # 49 * 2^4: no padding
])
def test_batched_clustering_equals_naive_unpadded_reference(N, leaf, overlap, shared, seeding):
    """Padded slots never give or receive attention: outputs equal a clustering of the real tokens only."""
    q, k, v = torch.randn(3, 2, N, 8, dtype=torch.float64).unbind(0)
    levels = cluster_levels(N, leaf)
    layout = balanced_cluster_layout(N, levels, overlap, shared)
    out, _ = batched(q, k, v, layout, seeding)
    ref = ref_clustered_attention(q, k, v, levels, seeding, 2, overlap, shared, 0.3)
    assert (out - ref).abs().max() < 1e-12


@pytest.mark.parametrize('N,leaf,overlap,shared,iters', [
    (130, 16, 5, True, 2),      # padded slots inside the tree
    (221, 20, 5, False, 3),
    (301, 7, 5, True, 2),       # 32 leaves of 9 or 10, 19 padded slots
    (784, 49, 20, True, 2),     # 49 * 2^4: no padding
    (196, 49, 20, True, 0),     # no update: the seeds' balanced split
])
def test_paper_clustering_equals_a_plain_restatement_of_the_paper(N, leaf, overlap, shared, iters):
    """assignment='balanced' is the paper's iteration: every level's and every iteration's c1 (per node) and
    the attention outputs equal a token-by-token restatement on the real tokens only."""
    torch.manual_seed(0)
    G = 2
    q, k, v = torch.randn(3, G, N, 8, dtype=torch.float64).unbind(0)
    levels = cluster_levels(N, leaf)
    layout = balanced_cluster_layout(N, levels, overlap, shared)
    out, perm = batched(q, k, v, layout, 'farthest', iters=iters, assignment='balanced')
    _, history = hierarchical_cluster_permutation(q, layout, iters, 'farthest', 'balanced', return_history=True)
    assert torch.equal(perm, hierarchical_cluster_permutation(q, layout, iters, 'farthest', 'balanced'))
    ref_histories = []
    ref = ref_clustered_attention(q, k, v, levels, 'farthest', iters, overlap, shared, 0.3, 'balanced',
                                  ref_histories)
    assert (out - ref).abs().max() < 1e-12
    assert len(history) == levels
    for level, step in enumerate(history):
        assert step.tokens.shape == (G, 2 ** level, layout.padded >> level)
        assert step.in_first.shape == (iters + 1, *step.tokens.shape)
        for g in range(G):
            for node in range(2 ** level):
                tokens = step.tokens[g, node]
                got = [set(tokens[in_first].tolist()) for in_first in step.in_first[:, g, node]]
                assert got == ref_histories[g][(level, node)], (level, node)


@pytest.mark.parametrize('N,iters', [(784, 2), (1001, 3), (13 * 17, 2), (130, 1)])
def test_every_iteration_of_the_paper_clustering_is_balanced(N, iters):
    """Every assignment of every iteration at every level gives c1 ceil(n / 2) and c2 floor(n / 2) of a node's
    n real tokens (padded slots never assigned), and each level's children are its last assignment."""
    G = 3
    levels = cluster_levels(N, 16)
    layout = balanced_cluster_layout(N, levels, 5, True)
    # clustered data, so that assignments change between iterations
    x = torch.randn(4, 16)[torch.randint(4, (G, N))] + 0.5 * torch.randn(G, N, 16)
    perm, history = hierarchical_cluster_permutation(x, layout, iters, 'farthest', 'balanced', return_history=True)
    changed = 0
    for level, step in enumerate(history):
        real = step.tokens < N                                             # (G, nodes, cap)
        n_real = real.sum(-1)
        assert bool((step.in_first <= real).all())                        # only real tokens are assigned
        assert torch.equal(step.in_first.sum(-1), ((n_real + 1) // 2).expand(iters + 1, -1, -1))
        changed += int((step.in_first[1:] != step.in_first[:-1]).any(-1).sum())
        if level + 1 < levels:  # the next level's nodes are the two halves of the last assignment
            nxt = history[level + 1].tokens.reshape(G, 2 ** level, 2, -1)
            for g in range(G):
                for node in range(2 ** level):
                    tokens, in_first = step.tokens[g, node], step.in_first[-1, g, node]
                    children = [set(c[c < N].tolist()) for c in nxt[g, node]]
                    assert children == [set(tokens[in_first].tolist()), set(tokens[real[g, node] & ~in_first].tolist())]
    assert changed > 0                                                     # the iterations really moved tokens
    assert sorted(perm[0][perm[0] < N].tolist()) == list(range(N))


@pytest.mark.parametrize('N', [784, 1001, 13 * 17])  # 13 x 17: a 50 x 68 image at stride 4
@pytest.mark.parametrize('shared', [True, False])
@pytest.mark.parametrize('assignment', ['soft', 'balanced'])
def test_leaves_are_balanced_and_overlap_exactly(N, shared, assignment):
    G = 3
    levels = cluster_levels(N, 49)
    layout = balanced_cluster_layout(N, levels, 20, shared)
    perm = hierarchical_cluster_permutation(torch.randn(G, N, 16), layout, assignment=assignment)
    m = -(-N // 2 ** levels)
    assert layout.capacity == m and layout.padded == m * 2 ** levels
    kv = leaf_tokens(perm, layout.kv_pos)                                 # (G, 2^K, m + n)
    assert kv.shape == (G, 2 ** levels, m + layout.overlap)               # every leaf the same size
    assert bool((kv < N).all())                                           # real tokens only
    assert all(len(set(leaf.tolist())) == kv.shape[-1] for leaf in kv.reshape(-1, kv.shape[-1]))
    # siblings share exactly 2n tokens when their parent is full (N = 49 * 2^k), 2n + 1 or 2 otherwise
    pairs = kv.view(G, -1, 2, kv.shape[-1])
    shared_counts = torch.tensor([[len(set(p[0].tolist()) & set(p[1].tolist())) for p in grp] for grp in pairs])
    if N == 784:
        assert layout.overlap == 20 and bool((shared_counts == 40).all())
    else:
        assert bool((shared_counts >= 2 * layout.overlap).all())
        assert bool((shared_counts <= 2 * layout.overlap + 2).all())
    # every real token is a key of one or two leaves, and takes its output from its own leaf (or two)
    per_token = torch.zeros(G, N, dtype=torch.long).scatter_add_(1, kv.flatten(1), torch.ones_like(kv.flatten(1)))
    assert bool((per_token >= 1).all()) and bool((per_token <= 2).all())
    # each position's output slot(s) hold that position's own token, with weights summing to one
    real = perm[0] < N
    q_flat = leaf_tokens(perm[:1], layout.q_pos)[0].flatten()
    for slots in layout.pos_slots:
        assert torch.equal(q_flat[slots[real]], perm[0][real])
    if shared:
        weights = layout.pos_weights[:, real]
        assert torch.allclose(weights.sum(0), torch.ones(N, dtype=weights.dtype))
        assert int((weights[1] > 0).sum()) == int((per_token[0] == 2).sum())   # shared keys = shared queries
    else:   # query halves: a partition of the tokens, m or m - 1 per leaf
        own = layout.pos_slots[0][real]
        assert layout.pos_weights is None and len(set(own.tolist())) == N
        per_leaf = torch.bincount(own // m, minlength=2 ** levels)
        assert bool(((per_leaf == m) | (per_leaf == m - 1)).all())


def test_split_separates_two_groups_into_equal_halves():
    torch.manual_seed(1)
    a, b = torch.randn(2, 16) * 3
    x = torch.cat([a + 0.1 * torch.randn(20, 16), b + 0.1 * torch.randn(20, 16)])[torch.randperm(40)]
    for seeding in ('halves', 'farthest'):
        for sort in (True, False):
            order = balanced_binary_split(F.normalize(x, dim=-1), x, None, 2, seeding, sort=sort)
            first = x[order[:20]]
            groups = (first @ a > first @ b)
            assert order.sort().values.tolist() == list(range(40))
            assert bool(groups.all()) or not bool(groups.any()), (seeding, sort)
            order = balanced_kmeans_split(x, None, 2, seeding, sort=sort)
            first = x[order[:20]]
            groups = (first @ a > first @ b)
            assert order.sort().values.tolist() == list(range(40))
            assert bool(groups.all()) or not bool(groups.any()), ('balanced', seeding, sort)


def test_split_with_padding_hands_padding_to_both_children():
    """sort=True: padded slots last; sort=False: the first child gets ceil(n_real / 2) real tokens."""
    x = torch.randn(5, 16, 8)
    invalid = torch.zeros(5, 16, dtype=torch.bool)
    invalid[:, -3:] = True                                                # 13 real tokens, 3 padded slots
    x[invalid] = 0
    order = balanced_binary_split(F.normalize(x, dim=-1), None, invalid, sort=True)
    assert bool(invalid.gather(1, order)[:, -3:].all())
    order = balanced_binary_split(F.normalize(x, dim=-1), None, invalid, sort=False)
    real_first = (~invalid.gather(1, order[:, :8])).sum(1)
    assert real_first.tolist() == [7] * 5
    assert sorted(order[0].tolist()) == list(range(16))
    # padded slots are never ranked as tokens
    ratio = split_ratio(F.normalize(x, dim=-1), None, invalid)
    assert bool(torch.isinf(ratio[invalid]).all()) and bool(torch.isfinite(ratio[~invalid]).all())


def test_split_ratio_from_raw_vectors_equals_the_normalised_computation():
    """unit=None ('halves'): cosines taken from the raw rows (scaled by 1 / |t|) give the same ratios, padded
    zero rows included."""
    torch.manual_seed(0)
    raw = torch.randn(3, 4, 40, 8, dtype=torch.float64) * torch.rand(3, 4, 40, 1, dtype=torch.float64) * 5
    invalid = torch.zeros(3, 4, 40, dtype=torch.bool)
    invalid[..., -5:] = True
    raw[invalid] = 0
    expected = split_ratio(F.normalize(raw, dim=-1), raw, invalid, seeding='halves')
    ratio = split_ratio(None, raw, invalid, seeding='halves')
    assert torch.equal(torch.isinf(ratio), invalid)
    assert torch.allclose(ratio[~invalid], expected[~invalid], rtol=1e-12, atol=0)
    with pytest.raises(ValueError, match='needs unit or raw'):
        split_ratio(None, None)


@pytest.mark.parametrize('assignment', ['soft', 'balanced'])
def test_each_head_clusters_its_own_queries(assignment):
    N = 784
    layout = balanced_cluster_layout(N, cluster_levels(N, 49), 20, True)
    q = torch.randn(1, N, 16).repeat(4, 1, 1)
    q[2] = torch.randn(N, 16)                                             # group 2 differs
    perm = hierarchical_cluster_permutation(q, layout, assignment=assignment)
    assert torch.equal(perm[0], perm[1]) and torch.equal(perm[0], perm[3])
    leaves = [set(map(tuple, leaf_tokens(perm[g:g + 1], layout.q_pos)[0].sort(-1).values.tolist()))
              for g in (0, 2)]
    assert leaves[0] != leaves[1]


@pytest.mark.parametrize('assignment', ['soft', 'balanced'])
def test_outputs_follow_a_permutation_of_the_tokens(assignment):
    """Order-independent seeding: shuffling the tokens shuffles the outputs (no positional term here)."""
    N, G = 1001, 4
    layout = balanced_cluster_layout(N, cluster_levels(N, 49), 20, True)
    q, k, v = torch.randn(3, G, N, 8, dtype=torch.float64).unbind(0)
    shuffle = torch.randperm(N)
    out, _ = batched(q, k, v, layout, 'farthest', assignment=assignment)
    out_shuffled, _ = batched(q[:, shuffle], k[:, shuffle], v[:, shuffle], layout, 'farthest',
                              assignment=assignment)
    assert (out_shuffled - out[:, shuffle]).abs().max() < 1e-12


def test_one_leaf_and_bad_arguments():
    assert cluster_levels(49, 49) == 0 and cluster_levels(69, 49) == 0 and cluster_levels(70, 49) == 1
    assert cluster_levels(3136, 49) == 6 and cluster_levels(200 * 304, 49) == 10
    with pytest.raises(ValueError, match='leaf_size must be >= 2'):
        cluster_levels(100, 1)
    with pytest.raises(ValueError, match='cannot be split 5 times'):
        balanced_cluster_layout(20, 5)
    with pytest.raises(ValueError, match="seeding must be 'halves' or 'farthest'"):
        split_ratio(torch.randn(1, 8, 4), seeding='kmeans++')
    layout = balanced_cluster_layout(100, 1, 20)
    with pytest.raises(ValueError, match='layout is for 100 tokens, got 99'):
        hierarchical_cluster_permutation(torch.randn(1, 99, 4), layout)
    with pytest.raises(ValueError, match="assignment must be 'soft' or 'balanced', got 'hard'"):
        hierarchical_cluster_permutation(torch.randn(1, 100, 4), layout, assignment='hard')
    with pytest.raises(ValueError, match="return_history needs assignment='balanced'"):
        hierarchical_cluster_permutation(torch.randn(1, 100, 4), layout, return_history=True)
    with pytest.raises(ValueError, match="seeding must be 'halves' or 'farthest'"):
        balanced_kmeans_split(torch.randn(1, 8, 4), seeding='kmeans++')


@pytest.mark.parametrize('shared', [True, False])
def test_layout_is_built_once_on_the_tokens_device(shared):
    """FSLA asks for the layout on its input's device, so a GPU forward pass copies no index maps from the host
    (the meta device stands in for a GPU here)."""
    cpu = balanced_cluster_layout(1000, 4, 20, shared)
    meta = balanced_cluster_layout(1000, 4, 20, shared, torch.device('meta'))
    assert balanced_cluster_layout(1000, 4, 20, shared, torch.device('meta')) is meta       # cached per device
    assert meta[:5] == cpu[:5]  # num_tokens, num_levels, padded, capacity, overlap

    def index_maps(layout):
        return [layout.root, *layout.moves, layout.kv_pos, layout.q_pos, layout.pos_slots, layout.pos_weights]
    assert len(meta.moves) == len(cpu.moves) == 3
    for t, ref in zip(index_maps(meta), index_maps(cpu)):
        if ref is None:  # pos_weights without shared queries
            assert t is None
        else:
            assert t.device.type == 'meta' and t.shape == ref.shape and t.dtype == ref.dtype
    assert (meta.q_pos is meta.kv_pos) == shared


# ---- FSLA and CSWin references ---------------------------------------------------------------------------
def pytorch_boat_content_attention(attn, x, H, W):
    """mahaoyuHKU/pytorch-boat's ContentAttention restated (N = 49 * 2^k, pairs of 49-token clusters).

    Per head: log2(N / 49) levels; each splits every node in two by 2 soft k-means steps (softmax(100 cos),
    centroids seeded from the node's halves, raw-vector sums), then sorts (1 + s0) / (1 + s1) ascending.
    Cluster 2j gets the first 20 keys of cluster 2j + 1, which gets the last 20 of cluster 2j.
    """
    B, N, C = x.shape
    h = attn.num_heads
    d = C // h
    qkv = attn.qkv(x).reshape(B, N, 3, h, d).permute(2, 0, 3, 1, 4)
    feats = qkv[0].reshape(B * h, N, d).transpose(1, 2)
    ids = torch.arange(N).expand(B * h, N)
    for _ in range(int(math.log2(N // 49))):
        g, dd, n = feats.shape
        cent = F.normalize(feats.reshape(g, dd, 2, n // 2).mean(-1), dim=1)
        for _ in range(2):
            assign = torch.softmax(F.normalize(feats.transpose(1, 2), dim=-1) @ cent * 100, -1)
            cent = F.normalize(feats @ assign, dim=1)
        sim = F.normalize(feats.transpose(1, 2), dim=-1) @ cent
        order = torch.sort((sim[..., 0] + 1) / (sim[..., 1] + 1), -1).indices
        ids = ids.gather(1, order).reshape(g * 2, n // 2)
        feats = feats.gather(2, order[:, None].expand(-1, dd, -1)).reshape(g, dd, 2, n // 2)
        feats = feats.permute(0, 2, 1, 3).reshape(g * 2, dd, n // 2)
    ids = ids.reshape(B, h, N)
    srt = qkv.gather(3, ids[None, ..., None].expand(3, -1, -1, -1, d))
    q, k, v = srt.reshape(3, B, h, N // 49, 49, d).permute(0, 1, 3, 2, 4, 5).reshape(3, -1, h, 49, d)

    def extend(t):
        t = t.reshape(-1, 2, h, 49, d)
        extra = torch.stack([t[:, 1, :, :20], t[:, 0, :, 29:]], 1)
        return torch.cat([t, extra], 3).reshape(-1, h, 69, d)
    w = torch.softmax(q @ extend(k).transpose(-2, -1) * attn.scale, -1)
    out = (w @ extend(v)).reshape(B, N // 49, h, 49, d).permute(0, 2, 1, 3, 4).reshape(B, h, N, d)
    out = out.gather(2, ids.argsort(-1)[..., None].expand(-1, -1, -1, d)).transpose(1, 2).reshape(B, N, C)
    v_map = qkv[2].transpose(1, 2).reshape(B, H, W, C).permute(0, 3, 1, 2)
    return attn.proj(out + attn.lepe(v_map).flatten(2).transpose(1, 2))


def naive_cross_shaped_attention(attn, x):
    """CSWin attention with a loop over stripes, each stripe cut to the image (no padding at all)."""
    B, H, W, C = x.shape
    q, k, v = attn.qkv(x).chunk(3, dim=-1)
    out = torch.zeros_like(q)
    if attn.full:
        branches = [(slice(0, C), attn.num_heads, [(slice(0, H), slice(0, W))], attn.lepe[0])]
    else:
        sw, half = attn.stripe_width, C // 2
        vertical = [(slice(0, H), slice(j, min(j + sw, W))) for j in range(0, W, sw)]
        horizontal = [(slice(i, min(i + sw, H)), slice(0, W)) for i in range(0, H, sw)]
        branches = [(slice(0, half), attn.num_heads // 2, vertical, attn.lepe[0]),
                    (slice(half, C), attn.num_heads // 2, horizontal, attn.lepe[1])]
    for ch, heads, regions, conv in branches:
        for rows, cols in regions:
            qr, kr, vr = (t[:, rows, cols, ch] for t in (q, k, v))
            h_r, w_r, c = qr.shape[1:]
            split = lambda t: t.reshape(B, h_r * w_r, heads, c // heads).transpose(1, 2)  # noqa: E731
            a = torch.softmax(split(qr) @ split(kr).transpose(-1, -2) * attn.scale, -1) @ split(vr)
            pos = F.conv2d(vr.permute(0, 3, 1, 2), conv.weight, conv.bias, padding=1, groups=c)
            out[:, rows, cols, ch] = (a.transpose(1, 2).reshape(B, h_r, w_r, c) + pos.permute(0, 2, 3, 1))
    return attn.proj(out)


# ---- FSLA ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize('family', ['swin', 'cswin'])
@pytest.mark.parametrize('hw,batch', [((28, 28), 1), ((7, 28), 3)])
def test_fsla_pytorch_boat_layout_equals_the_public_computation(family, hw, batch):
    torch.manual_seed(0)
    attn = FeatureSpaceLocalAttention(64, 4, **fsla_settings('pytorch-boat', family)).double().eval()
    assert attn.scale == (1.0 if family == 'cswin' else 16 ** -0.5)
    x = torch.randn(batch, *hw, 64, dtype=torch.float64)
    with torch.no_grad():
        ours = attn(x).flatten(1, 2)
        ref = pytorch_boat_content_attention(attn, x.flatten(1, 2), *hw)
    assert rel_err(ours, ref) < 1e-12


@pytest.mark.parametrize('hw', [(28, 28), (10, 13)])
def test_fsla_paper_layout_clusters_as_the_paper(hw):
    """The paper layout's FSLA equals leaf attention over a token-by-token restatement of the paper's balanced
    iterations (the clustering references above), plus LePE and the output projection."""
    torch.manual_seed(0)
    settings = fsla_settings('paper', 'swin')
    attn = FeatureSpaceLocalAttention(32, 2, leaf_size=16, overlap=4, **settings).double().eval()
    assert attn.assignment == 'balanced' and attn.shared_queries
    B, N, C = 2, hw[0] * hw[1], 32
    x = torch.randn(B, *hw, C, dtype=torch.float64)
    with torch.no_grad():
        qkv = attn.qkv(x).view(B, N, 3, 2, 16).permute(2, 0, 3, 1, 4).reshape(3, B * 2, N, 16)
        levels = cluster_levels(N, 16)
        out = ref_clustered_attention(*qkv.unbind(0), levels, 'farthest', attn.cluster_iters, 4, True,
                                      attn.scale, 'balanced')
        out = out.view(B, 2, N, 16).transpose(1, 2).reshape(B, *hw, C)
        lepe = attn.lepe(qkv[2].view(B, 2, N, 16).transpose(1, 2).reshape(B, *hw, C).permute(0, 3, 1, 2))
        ref = attn.proj(out + lepe.permute(0, 2, 3, 1))
        assert rel_err(attn(x), ref) < 1e-12


def test_fsla_with_one_cluster_is_full_attention():
    attn = FeatureSpaceLocalAttention(48, 3, leaf_size=49).eval()
    x = torch.randn(2, 6, 8, 48)                                            # 48 tokens: one cluster
    with torch.no_grad():
        qkv = attn.qkv(x).view(2, 48, 3, 3, 16).permute(2, 0, 3, 1, 4)
        full = F.scaled_dot_product_attention(*qkv.unbind(0)).transpose(1, 2).reshape(2, 6, 8, 48)
        lepe = attn.lepe(qkv[2].transpose(1, 2).reshape(2, 6, 8, 48).permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        assert rel_err(attn(x), attn.proj(full + lepe)) < 1e-6


@pytest.mark.parametrize('hw', [(5, 7), (10, 13), (9, 16)])
def test_fsla_any_size_and_no_mixing_across_the_batch(hw):
    """Odd sizes (padding inside the tree) work for batch 1 and 3, and each image's output is what it gets
    alone: pytorch-boat's 49-token case mixes pairs of images, this must not."""
    attn = FeatureSpaceLocalAttention(32, 2, leaf_size=8, overlap=3).eval()
    x = torch.randn(3, *hw, 32)
    with torch.no_grad():
        together = attn(x)
        alone = torch.cat([attn(x[i:i + 1]) for i in range(3)])
    assert together.shape == x.shape and bool(torch.isfinite(together).all())
    assert rel_err(together, alone) < 1e-5


def test_fsla_cluster_dim_projection_is_the_projected_queries():
    attn = FeatureSpaceLocalAttention(64, 2, cluster_dim=8).eval()
    x = torch.randn(1, 9, 11, 64)
    qkv = attn.qkv(x).view(1, 99, 3, 2, 32)
    feats = attn.cluster_features(x, qkv)
    expected = torch.einsum('bnhd,hdr->bhnr', qkv[:, :, 0], attn.cluster_proj).reshape(2, 99, 8)
    assert feats.shape == (2, 99, 8) and rel_err(feats, expected) < 1e-5
    assert 'cluster_proj' not in attn.state_dict()                       # fixed, not a checkpoint tensor


# ---- CSWin attention -----------------------------------------------------------------------------------
@pytest.mark.parametrize('hw,sw,full', [((14, 14), 7, False), ((13, 10), 7, False), ((9, 11), 2, False),
                                        ((5, 7), 7, True)])
def test_cross_shaped_attention_equals_per_stripe_loop(hw, sw, full):
    """Batched stripes with padding equal stripes cut to the image: padding never takes part."""
    attn = CrossShapedWindowAttention(32, 4, sw, full=full).eval()
    x = torch.randn(2, *hw, 32)
    with torch.no_grad():
        assert rel_err(attn(x), naive_cross_shaped_attention(attn, x)) < 1e-5


# ---- backbones -------------------------------------------------------------------------------------------
SHAPE_CASES = ([(cls, arch, hw) for cls, arch in ((BOATSwin, SMALL_SWIN), (BOATCSWin, SMALL_CSWIN))
                for hw in ((32, 32), (50, 68), (56, 112))]
               + [(BOATSwin, 'tiny', (50, 68)), (BOATCSWin, 'tiny', (50, 68))])


@pytest.mark.parametrize('cls,arch,hw', SHAPE_CASES)
def test_pyramid_shapes_any_size_batch_one(cls, arch, hw):
    model = cls(arch=arch, drop_path_rate=0.0).eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, *hw))
    assert [tuple(o.shape[1:]) for o in outs] == expected_shapes(*hw, model.num_features)
    assert all(bool(torch.isfinite(o).all()) for o in outs)


def test_boat_block_is_isla_then_fsla_then_mlp():
    block = BOATSwinBlock(32, 2, window_size=4, shifted=True, fsla=dict(leaf_size=8, overlap=2)).eval()
    x = torch.randn(1, 9, 10, 32)
    mask = block.attention_mask(9, 10, x)
    with torch.no_grad():
        t1 = x + block.window_attention(block.norm1(x), mask)
        t2 = t1 + block.fsla(block.norm_fsla(t1))
        assert rel_err(block(x, mask), t2 + block.mlp(block.norm2(t2))) < 1e-6


@pytest.mark.parametrize('cls,arch', [(BOATSwin, SMALL_SWIN), (BOATCSWin, SMALL_CSWIN)])
def test_gradients_reach_every_parameter(cls, arch):
    torch.manual_seed(0)
    model = cls(arch=arch, drop_path_rate=0.0, leaf_size=8)
    outs = model(torch.randn(1, 3, 64, 64))
    sum((o * torch.randn_like(o)).sum() for o in outs).backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None or not bool(p.grad.abs().sum() > 0)]
    assert not no_grad
    assert all(b.fsla is not None for stage in (model.layers if cls is BOATSwin else model.stages)
               for b in stage.blocks)


def test_layouts_place_fsla_as_described():
    swin = BOATSwin(arch=SMALL_SWIN, layout='pytorch-boat')
    assert [[b.fsla is not None for b in layer.blocks] for layer in swin.layers] == \
        [[False, True], [False, True], [False, True], [False, False]]
    assert all(isinstance(b.drop_path_fsla, torch.nn.Identity) for layer in swin.layers[:3]
               for b in layer.blocks[1:])
    cswin = BOATCSWin(arch=dict(embed_dim=32, depths=(1, 3, 2, 1), num_heads=(2, 2, 4, 8)), layout='pytorch-boat')
    assert [[b.fsla is not None for b in s.blocks] for s in cswin.stages] == \
        [[True], [True, False, True], [True, False], [True]]
    assert cswin.stages[0].blocks[0].fsla.scale == 1.0 and not cswin.stages[0].blocks[0].fsla.shared_queries
    assert all(b.fsla.assignment == 'soft' and b.fsla.seeding == 'halves' for model in (swin, cswin)
               for stage in (model.layers if model is swin else model.stages) for b in stage.blocks if b.fsla)
    assert all(b.fsla.assignment == 'balanced' for b in BOATCSWin(arch=SMALL_CSWIN).stages[1].blocks)
    paper = BOATSwin(arch=SMALL_SWIN, drop_path_rate=0.3)
    rates = [b.drop_path_fsla.drop_prob if hasattr(b.drop_path_fsla, 'drop_prob') else 0.0
             for layer in paper.layers for b in layer.blocks]
    assert rates[0] == 0.0 and abs(rates[-1] - 0.3) < 1e-6
    with pytest.raises(ValueError, match="layout must be one of"):
        BOATSwin(layout='official')



def test_boat_swin_is_swins_constructor_with_boat_blocks(monkeypatch):
    """BOATSwin runs SwinTransformer's constructor (stem, merging, drop path, init, freezing) and only chooses the
    blocks; a typo in its config is an unknown keyword of BOATSwin."""
    from vitdense.models.backbones.swin import SwinTransformer
    from vitdense.registry import MODELS
    constructed = []
    swin_init = SwinTransformer.__init__

    def recording_init(self, *args, **kwargs):
        constructed.append(type(self).__name__)
        swin_init(self, *args, **kwargs)
    monkeypatch.setattr(SwinTransformer, '__init__', recording_init)
    model = BOATSwin(arch=SMALL_SWIN, layout='pytorch-boat', frozen_stages=1, drop_path_rate=0.3)
    assert constructed == ['BOATSwin']
    assert all(type(b) is BOATSwinBlock for layer in model.layers for b in layer.blocks)
    assert model.layout == 'pytorch-boat' and model.always_shift and model.depths == (2, 2, 2, 2)
    assert not model.layers[0].blocks[1].fsla.qkv.weight.requires_grad and not model.layers[0].training
    assert model.layers[1].blocks[1].fsla.qkv.weight.requires_grad and model.layers[1].training
    with pytest.raises(TypeError, match=r"BOATSwin.__init__\(\) got an unexpected keyword argument 'leaf_sise'"):
        MODELS.build(dict(type='BOATSwin', arch=SMALL_SWIN, leaf_sise=16))

def test_frozen_stages_and_layer_depth():
    torch.manual_seed(0)
    model = BOATCSWin(arch=SMALL_CSWIN, frozen_stages=1, drop_path_rate=0.0, leaf_size=8)
    model.train()
    frozen = list(model.stem.parameters()) + list(model.stages[0].parameters())
    assert all(not p.requires_grad for p in frozen) and not model.stages[0].training
    x = torch.randn(1, 3, 32, 64)
    outs = model(x)
    sum(o.sum() for o in outs).backward()
    assert all(p.grad is None for p in frozen)
    tiny = BOATCSWin(arch=dict(embed_dim=32, depths=(1, 2, 21, 1), num_heads=(2, 2, 4, 8)))  # T's depths
    assert tiny.get_layer_depth('stem.conv.weight') == (0, 27)
    assert tiny.get_layer_depth('stages.1.downsample.conv.weight') == (2, 27)
    assert tiny.get_layer_depth('stages.2.blocks.3.fsla.qkv.weight') == (7, 27)
    assert tiny.get_layer_depth('out_norms.3.weight') == (26, 27)
    assert tiny.get_layer_depth('stages.3.blocks.0.attn.lepe.0.weight', 'stage_wise') == (4, 6)
    swin_t_depths = BOATSwin(arch=dict(embed_dim=32, depths=(2, 2, 6, 2), num_heads=(1, 2, 4, 8)))
    assert swin_t_depths.get_layer_depth('layers.2.blocks.5.fsla.lepe.weight') == (10, 14)


def test_input_errors_are_one_clear_line():
    with pytest.raises(ValueError, match='smaller than its total stride 32'):
        BOATCSWin(arch=SMALL_CSWIN)(torch.randn(1, 3, 24, 64))
    with pytest.raises(ValueError, match="unknown BOATCSWin arch 'large'"):
        BOATCSWin(arch='large')
    with pytest.raises(ValueError, match='stripe_widths needs one width per stage'):
        BOATCSWin(stripe_widths=(1, 2, 7))


# ---- pytorch-boat checkpoints ------------------------------------------------------------------------------
def pytorch_boat_swin_state_dict(arch=SMALL_SWIN, seed=0):
    """A random BOAT-Swin state dict in pytorch-boat's layout (official Swin + attnC / norm4 in the shifted
    blocks of stages 0-2, which are larger than a window at 224)."""
    timm_model = timm.create_model('swin_tiny_patch4_window7_224', embed_dim=arch['embed_dim'],
                                   depths=arch['depths'], num_heads=arch['num_heads'], num_classes=10)
    sd = {}
    for k, v in randomize(timm_model.state_dict(), seed=seed).items():
        k = re.sub(r'^layers\.(\d+)\.downsample', lambda m: f'layers.{int(m.group(1)) - 1}.downsample', k)
        sd[k.replace('head.fc.', 'head.')] = v
    g = torch.Generator().manual_seed(seed + 1)
    for i, depth in enumerate(arch['depths'][:3]):
        dim = arch['embed_dim'] * 2 ** i
        for j in range(1, depth, 2):
            p = f'layers.{i}.blocks.{j}.'
            shapes = {'attnC.qkv.weight': (3 * dim, dim), 'attnC.qkv.bias': (3 * dim,),
                      'attnC.proj.weight': (dim, dim), 'attnC.proj.bias': (dim,),
                      'attnC.get_v.weight': (dim, 1, 3, 3), 'attnC.get_v.bias': (dim,),
                      'norm4.weight': (dim,), 'norm4.bias': (dim,)}
            sd.update({p + k: torch.randn(s, generator=g) * 0.05 for k, s in shapes.items()})
            sd[p + 'attn_mask'] = torch.zeros(1)
    return sd


def pytorch_boat_cswin_state_dict(embed_dim=32, depths=(1, 2, 2, 1), seed=0):
    """A random BOAT-CSWin state dict with pytorch-boat's (CSWin's) key names and shapes."""
    g = torch.Generator().manual_seed(seed)
    shapes = {'stage1_conv_embed.0.weight': (embed_dim, 3, 7, 7), 'stage1_conv_embed.0.bias': (embed_dim,),
              'stage1_conv_embed.2.weight': (embed_dim,), 'stage1_conv_embed.2.bias': (embed_dim,)}
    for s, depth in enumerate(depths, start=1):
        dim = embed_dim * 2 ** (s - 1)
        branches = 1 if s == len(depths) else 2
        for j in range(depth):
            p = f'stage{s}.{j}.'
            shapes.update({p + 'qkv.weight': (3 * dim, dim), p + 'qkv.bias': (3 * dim,),
                           p + 'norm1.weight': (dim,), p + 'norm1.bias': (dim,),
                           p + 'proj.weight': (dim, dim), p + 'proj.bias': (dim,),
                           p + 'mlp.fc1.weight': (4 * dim, dim), p + 'mlp.fc1.bias': (4 * dim,),
                           p + 'mlp.fc2.weight': (dim, 4 * dim), p + 'mlp.fc2.bias': (dim,),
                           p + 'norm2.weight': (dim,), p + 'norm2.bias': (dim,)})
            for b in range(branches):
                shapes.update({p + f'attns.{b}.get_v.weight': (dim // branches, 1, 3, 3),
                               p + f'attns.{b}.get_v.bias': (dim // branches,)})
            if j % 2 == 0:
                shapes.update({p + 'content_attn.qkv.weight': (3 * dim, dim), p + 'content_attn.qkv.bias': (3 * dim,),
                               p + 'content_attn.proj.weight': (dim, dim), p + 'content_attn.proj.bias': (dim,),
                               p + 'content_attn.get_v.weight': (dim, 1, 3, 3),
                               p + 'content_attn.get_v.bias': (dim,),
                               p + 'norm3.weight': (dim,), p + 'norm3.bias': (dim,)})
        if s < len(depths):
            shapes.update({f'merge{s}.conv.weight': (2 * dim, dim, 3, 3), f'merge{s}.conv.bias': (2 * dim,),
                           f'merge{s}.norm.weight': (2 * dim,), f'merge{s}.norm.bias': (2 * dim,)})
    last = embed_dim * 2 ** (len(depths) - 1)
    shapes.update({'norm.weight': (last,), 'norm.bias': (last,), 'head.weight': (10, last), 'head.bias': (10,)})
    return {k: torch.randn(s, generator=g) * 0.05 for k, s in shapes.items()}


def test_pytorch_boat_swin_checkpoint_maps_onto_every_tensor(tmp_path):
    sd = pytorch_boat_swin_state_dict()
    path = tmp_path / 'tiny.pth'
    torch.save({'model': sd}, path)
    model = BOATSwin(arch=SMALL_SWIN, layout='pytorch-boat')
    report = load_pretrained(model, str(path))
    assert not report.dropped
    assert sorted(report.missing) == sorted(f'out_norms.{i}.{p}' for i in range(4) for p in ('weight', 'bias'))
    state = model.state_dict()
    assert torch.equal(state['layers.1.blocks.1.fsla.qkv.weight'], sd['layers.1.blocks.1.attnC.qkv.weight'])
    assert torch.equal(state['layers.2.blocks.1.fsla.lepe.bias'], sd['layers.2.blocks.1.attnC.get_v.bias'])
    assert torch.equal(state['layers.0.blocks.1.norm_fsla.weight'], sd['layers.0.blocks.1.norm4.weight'])
    assert torch.equal(state['layers.2.downsample.reduction.weight'], sd['layers.1.downsample.reduction.weight'])
    # the paper layout takes the same file partially and says why
    report = load_pretrained(BOATSwin(arch=SMALL_SWIN), str(path))
    assert any("layout='pytorch-boat'" in n for n in report.notes)
    assert all('.fsla.' in k or '.norm_fsla.' in k or k.startswith('out_norms.') for k in report.missing)


def test_pytorch_boat_cswin_checkpoint_maps_onto_every_tensor(tmp_path):
    sd = pytorch_boat_cswin_state_dict()
    path = tmp_path / 'cswin_tiny.pth.tar'
    torch.save({'state_dict': sd}, path)
    model = BOATCSWin(arch=SMALL_CSWIN, layout='pytorch-boat')
    report = load_pretrained(model, str(path))
    assert not report.dropped
    assert sorted(report.missing) == sorted(f'out_norms.{i}.{p}' for i in range(4) for p in ('weight', 'bias'))
    state = model.state_dict()
    pairs = {'stem.conv.weight': 'stage1_conv_embed.0.weight', 'stem.norm.bias': 'stage1_conv_embed.2.bias',
             'stages.1.blocks.1.attn.qkv.weight': 'stage2.1.qkv.weight',
             'stages.1.blocks.1.attn.lepe.1.weight': 'stage2.1.attns.1.get_v.weight',
             'stages.3.blocks.0.attn.lepe.0.weight': 'stage4.0.attns.0.get_v.weight',
             'stages.2.blocks.0.fsla.proj.weight': 'stage3.0.content_attn.proj.weight',
             'stages.2.blocks.0.fsla.lepe.weight': 'stage3.0.content_attn.get_v.weight',
             'stages.0.blocks.0.norm_fsla.weight': 'stage1.0.norm3.weight',
             'stages.2.downsample.conv.weight': 'merge2.conv.weight'}
    for ours, theirs in pairs.items():
        assert torch.equal(state[ours], sd[theirs]), ours


def test_classifier_loads_head_and_final_norm(tmp_path):
    sd = pytorch_boat_swin_state_dict()
    path = tmp_path / 'tiny.pth'
    torch.save({'model': sd}, path)
    clf = BOATClassifier(dict(type='BOATSwin', arch=SMALL_SWIN, layout='pytorch-boat', drop_path_rate=0.0),
                         num_classes=10, init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    clf.init_weights()
    clf.eval()
    assert torch.equal(clf.head.weight, sd['head.weight'])
    assert torch.equal(clf.backbone.out_norms[3].weight, sd['norm.weight'])
    assert not clf.backbone.layers[3].blocks[1].always_shift                # classification: no shift at 7x7
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        logits = clf(x)
        feats = clf.backbone(x)[0]
    assert logits.shape == (2, 10) and rel_err(logits, clf.head(feats.mean((2, 3)))) < 1e-6
    with pytest.raises(Exception, match='set num_classes to match'):
        BOATClassifier(dict(type='BOATSwin', arch=SMALL_SWIN, layout='pytorch-boat'), num_classes=5,
                       init_cfg=dict(type='Pretrained', checkpoint=str(path))).init_weights()


# ---- detection / segmentation --------------------------------------------------------------------------------
def build_from_config(name, small_arch):
    """The model of a configs/boat file, its backbone shrunk to ``small_arch`` (and the head's inputs to match)
    so that a CPU step stays short; tests/test_configs.py runs the configs as they are."""
    from mmengine.config import Config
    cfg = Config.fromfile(os.path.join(REPO, 'configs', 'boat', name))
    channels = [small_arch['embed_dim'] * 2 ** i for i in range(4)]
    cfg.model.backbone.arch = small_arch
    if cfg.default_scope == 'mmdet':
        cfg.model.neck.in_channels = channels
    else:
        cfg.model.decode_head.in_channels = channels
        cfg.model.auxiliary_head.in_channels = channels[2]
    return cfg, build_model(cfg)


def test_mask_rcnn_training_step_on_cpu():
    torch.manual_seed(0)
    cfg, model = build_from_config('mask-rcnn_boat-swin-t-p4-w7_fpn_mini-coco.py', SMALL_SWIN)
    assert cfg.model.backbone.layout == 'pytorch-boat'
    fsla = model.backbone.layers[0].blocks[1].fsla                      # pytorch-boat: FSLA in the shifted blocks
    training_step(model, cfg.optim_wrapper, det_batch(model), [fsla.qkv.weight, fsla.lepe.weight])


def test_upernet_training_step_on_cpu():
    torch.manual_seed(0)
    cfg, model = build_from_config('upernet_boat-cswin-t_mini-ade20k.py', SMALL_CSWIN)
    model.data_preprocessor.size, model.data_preprocessor.size_divisor = None, 32
    fsla = model.backbone.stages[0].blocks[0].fsla
    training_step(model, cfg.optim_wrapper, seg_batch(model, (64, 96)), [fsla.qkv.weight, fsla.lepe.weight])


def test_configs_name_the_intended_backbones():
    from mmengine.config import Config
    names = sorted(n for n in os.listdir(os.path.join(REPO, 'configs', 'boat'))
                   if n.startswith(('mask-rcnn', 'upernet')))                # det / seg (the folder has more)
    assert len(names) == 22 and sum('mini' in n for n in names) == 4
    for name in ('mask-rcnn_boat-swin-b-p4-w7_fpn_ms-crop-3x_coco.py',
                 'upernet_boat-swin-s-p4-w7_4xb4-160k_ade20k-512x512.py', 'mask-rcnn_boat-cswin-s_fpn_1x_coco.py',
                 'upernet_boat-cswin-b_4xb4-160k_ade20k-512x512.py',
                 'upernet_boat-swin-t-p4-w7_mini-ade20k.py', 'mask-rcnn_boat-cswin-t_fpn_mini-coco.py',
                 'mask-rcnn_boat-swin-t-p4-w7_fpn_mini-coco.py', 'upernet_boat-cswin-t_mini-ade20k.py'):
        cfg = Config.fromfile(os.path.join(REPO, 'configs', 'boat', name))
        backbone = cfg.model.backbone
        family = 'BOATCSWin' if 'cswin' in name else 'BOATSwin'
        size = {'-t': 'tiny', '-s': 'small', '-b': 'base'}[re.search(r'swin(-[tsb])', name).group(1)]
        assert backbone.type == f'vitdense.{family}' and backbone.arch == size, name
        assert backbone.layout == 'pytorch-boat', name                  # as the README says: every config
        assert (backbone.init_cfg.checkpoint is None) == ('mini' in name), name
        channels = cfg.model.neck.in_channels if 'mask-rcnn' in name else cfg.model.decode_head.in_channels
        embed = {'BOATSwin': {'tiny': 96, 'small': 96, 'base': 128},
                 'BOATCSWin': {'tiny': 64, 'small': 64, 'base': 96}}[family][size]
        assert list(channels) == [embed * 2 ** i for i in range(4)], name


def test_in1k_config_backbone_is_timm_swin_plus_restated_content_attention_at_224(tmp_path):
    """The classifier config's BOAT-Swin, a random pytorch-boat file loaded through its init_cfg, against a
    composed reference at 224: timm's Swin-T blocks (classification windows: the 7x7 stage unshifted) with the
    restatement of pytorch-boat's ContentAttention (attnC / norm4, no drop path) between window attention and
    MLP in the shifted blocks of stages 0-2. (pytorch-boat's own model, built on the official Swin code, is not
    a dependency here; these two parts are what it computes.)"""
    from types import SimpleNamespace
    from tests.conftest import config_backbone
    # float64 throughout: each split cuts a node at its median ratio, and two tokens there can lie closer than
    # float32 resolves (a few 1e-8 apart at Swin-T width), which two float32 implementations may order differently
    sd = {k: v.double() if v.is_floating_point() else v
          for k, v in pytorch_boat_swin_state_dict(SMALL_SWIN, seed=2).items()}
    torch.save({'model': sd}, tmp_path / 'boat_swin_tiny.pth')
    ours = config_backbone('boat/boat-swin-t-p4-w7_in1k.py', tmp_path / 'boat_swin_tiny.pth', arch=SMALL_SWIN,
                           out_indices=(0, 1, 2, 3))  # the config's options, BOAT-Swin-T's layout at a smaller width
    assert ours.layout == 'pytorch-boat' and ours.always_shift is False
    ref = timm.create_model('swin_tiny_patch4_window7_224', num_classes=10, embed_dim=SMALL_SWIN['embed_dim'],
                            depths=SMALL_SWIN['depths'], num_heads=SMALL_SWIN['num_heads']).eval()
    ref.load_state_dict(randomize(ref.state_dict(), seed=2))  # the tensors pytorch_boat_swin_state_dict renamed
    ours, ref = ours.double(), ref.double()

    def content_attention(prefix, heads):
        p = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
        dim = p['attnC.proj.weight'].shape[0]
        attn = SimpleNamespace(
            num_heads=heads, scale=(dim // heads) ** -0.5,
            qkv=lambda t: F.linear(t, p['attnC.qkv.weight'], p['attnC.qkv.bias']),
            proj=lambda t: F.linear(t, p['attnC.proj.weight'], p['attnC.proj.bias']),
            lepe=lambda t: F.conv2d(t, p['attnC.get_v.weight'], p['attnC.get_v.bias'], padding=1, groups=dim))
        return lambda x, H, W: pytorch_boat_content_attention(
            attn, F.layer_norm(x, (dim,), p['norm4.weight'], p['norm4.bias']), H, W)

    x = torch.randn(1, 3, 224, 224, dtype=torch.float64)
    with torch.no_grad():
        y, expected = ref.patch_embed(x), []
        for i, stage in enumerate(ref.layers):
            y = stage.downsample(y)
            B, H, W, C = y.shape
            for j, block in enumerate(stage.blocks):
                y = y + block._attn(block.norm1(y))
                if i < 3 and j % 2 == 1:
                    fsla = content_attention(f'layers.{i}.blocks.{j}.', stage.blocks[0].attn.num_heads)
                    y = y + fsla(y.reshape(B, H * W, C), H, W).reshape(B, H, W, C)
                y = y + block.mlp(block.norm2(y))
            expected.append(F.layer_norm(y, (C,)).permute(0, 3, 1, 2))
        outs = ours(x)
    for a, b in zip(outs, expected):
        assert a.shape == b.shape and rel_err(a, b) <= 1e-5


def test_boat_swin_adaptation_extends_swins():
    """BOATSwin.adapt_checkpoint is Swin's (patch merging moved, classifier dropped) plus its own FSLA renames,
    every rename recorded against the checkpoint's name."""
    sd = pytorch_boat_swin_state_dict()
    adaptation = BOATSwin(arch=SMALL_SWIN, layout='pytorch-boat').adapt_checkpoint(sd)
    renamed = adaptation.renamed
    assert renamed['layers.2.downsample.reduction.weight'] == 'layers.1.downsample.reduction.weight'  # Swin's
    assert renamed['layers.1.blocks.1.fsla.lepe.bias'] == 'layers.1.blocks.1.attnC.get_v.bias'        # BOAT's
    assert renamed['layers.0.blocks.1.norm_fsla.weight'] == 'layers.0.blocks.1.norm4.weight'
    assert set(renamed.values()) == {k for k in sd if '.downsample.' in k or '.attnC.' in k or '.norm4.' in k}
    buffers = [k for k in sd if k.endswith(('attn_mask', 'relative_position_index'))]
    assert buffers and adaptation.dropped == {
        **{k: 'buffer the backbone rebuilds' for k in buffers},
        **{k: 'classifier head and its final norm' for k in ('norm.weight', 'norm.bias', 'head.weight', 'head.bias')}}
    assert adaptation.resized == {}
    assert adaptation.notes[0].startswith('official microsoft/Swin-Transformer layout remapped')
    assert adaptation.notes[-1].startswith('pytorch-boat BOAT-Swin layout remapped')
    for key, origin in renamed.items():
        assert adaptation.state_dict[key] is sd[origin]
