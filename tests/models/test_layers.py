"""Balanced hierarchical clustering helpers (BOAT's FSLA) in vitdense.models.layers.

The batched implementation is checked against a naive reference written independently below: one
(image, head) group at a time, real tokens only (no padding), recursion over the tree, a loop over leaves.
"""
import pytest
import torch
import torch.nn.functional as F

from vitdense.models.layers import (balanced_binary_split, balanced_cluster_layout, balanced_kmeans_split,
                                    cluster_levels, clustered_attention, hierarchical_cluster_permutation,
                                    split_ratio)


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
