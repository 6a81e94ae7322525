"""Balanced hierarchical clustering helpers (BOAT's FSLA) in vitdense.models.layers.

The batched implementation is checked against a naive reference written independently below: one
(image, head) group at a time, real tokens only (no padding), recursion over the tree, a loop over leaves.
"""
import pytest
import torch
import torch.nn.functional as F

from vitdense.models.layers import (balanced_binary_split, balanced_cluster_layout, cluster_levels,
                                    clustered_attention, hierarchical_cluster_permutation, split_ratio)


# ---- naive reference ----------------------------------------------------------------------------------
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


def ref_leaves(x, levels, seeding, iters, overlap, shared):
    """[(query ids, key ids, query weights)] of one group x (N, d), real tokens only."""
    N = x.shape[0]
    m = -(-N // 2 ** levels)
    counts = [N]
    for _ in range(levels - 1):
        counts = [c for n in counts for c in ((n + 1) // 2, n // 2)]
    size = m + max(0, min(overlap, min(counts) - m))   # every leaf: m + n tokens of its sorted parent
    leaves = []

    def visit(ids, level):
        order = ref_split(x, ids, seeding, iters)
        c1 = (len(ids) + 1) // 2
        if level < levels - 1:
            visit(order[:c1], level + 1)
            visit(order[c1:], level + 1)
            return
        first, second = order[:size], order[len(order) - size:]
        if shared:
            both = set(first) & set(second)
            leaves.extend((kv, kv, [0.5 if i in both else 1.0 for i in kv]) for kv in (first, second))
        else:
            leaves.append((order[:c1], first, [1.0] * c1))
            leaves.append((order[c1:], second, [1.0] * (len(order) - c1)))
    visit(list(range(N)), 0)
    return leaves


def ref_clustered_attention(q, k, v, levels, seeding, iters, overlap, shared, scale):
    """q, k, v: (G, N, d) -> (G, N, d)."""
    out = torch.zeros_like(q)
    for g in range(q.shape[0]):
        for qi, ki, w in ref_leaves(q[g], levels, seeding, iters, overlap, shared):
            attn = torch.softmax(q[g, qi] @ k[g, ki].T * scale, -1) @ v[g, ki]
            out[g, qi] += attn * torch.tensor(w, dtype=q.dtype)[:, None]
    return out


def batched(q, k, v, layout, seeding, iters=2, scale=0.3, heads=2):
    """clustered_attention on (G, N, d) tensors laid out as (B = G / heads, N, 3, heads, d)."""
    G, N, d = q.shape
    perm = hierarchical_cluster_permutation(q, layout, iters, seeding)
    qkv = torch.stack([q, k, v]).view(3, G // heads, heads, N, d).permute(1, 3, 0, 2, 4)
    out = clustered_attention(qkv, perm, layout, scale=scale)            # (B, N, heads, d)
    return out.permute(0, 2, 1, 3).reshape(G, N, d), perm


def leaf_tokens(perm, positions):
    """(G, leaves, L) token ids at the given layout positions."""
    return perm[:, positions.flatten()].view(perm.shape[0], *positions.shape)


# ---- tests -----------------------------------------------------------------------------------------------
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


@pytest.mark.parametrize('N', [784, 1001, 13 * 17])  # 13 x 17: a 50 x 68 image at stride 4
@pytest.mark.parametrize('shared', [True, False])
def test_leaves_are_balanced_and_overlap_exactly(N, shared):
    G = 3
    levels = cluster_levels(N, 49)
    layout = balanced_cluster_layout(N, levels, 20, shared)
    perm = hierarchical_cluster_permutation(torch.randn(G, N, 16), layout)
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


def test_each_head_clusters_its_own_queries():
    N = 784
    layout = balanced_cluster_layout(N, cluster_levels(N, 49), 20, True)
    q = torch.randn(1, N, 16).repeat(4, 1, 1)
    q[2] = torch.randn(N, 16)                                             # group 2 differs
    perm = hierarchical_cluster_permutation(q, layout)
    assert torch.equal(perm[0], perm[1]) and torch.equal(perm[0], perm[3])
    leaves = [set(map(tuple, leaf_tokens(perm[g:g + 1], layout.q_pos)[0].sort(-1).values.tolist()))
              for g in (0, 2)]
    assert leaves[0] != leaves[1]


def test_outputs_follow_a_permutation_of_the_tokens():
    """Order-independent seeding: shuffling the tokens shuffles the outputs (no positional term here)."""
    N, G = 1001, 4
    layout = balanced_cluster_layout(N, cluster_levels(N, 49), 20, True)
    q, k, v = torch.randn(3, G, N, 8, dtype=torch.float64).unbind(0)
    shuffle = torch.randperm(N)
    out, _ = batched(q, k, v, layout, 'farthest')
    out_shuffled, _ = batched(q[:, shuffle], k[:, shuffle], v[:, shuffle], layout, 'farthest')
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
