"""Box matching and clustering shared by the aggregators and the rater report (numpy only).

Primitives:

* :func:`match_boxes`: one-to-one matching of two box sets (greedy by IoU, or Hungarian),
  used to score a rater against a consensus or against another rater.
* :func:`cluster_boxes`: group several raters' boxes on one image into objects, at most one
  box per rater per object (greedy agglomerative clustering on IoU), used by ``mv`` and
  ``em`` to put boxes of different labels but the same place into one cluster.
* :func:`iou_pairs` and :func:`overlap_components`: the pairs of boxes with IoU > thr and
  the connected components of that graph, without an N x N matrix (sweep over x1); used
  by :func:`cluster_boxes` and the rater report.

Boxes are xyxy in pixels. Two boxes *match* when IoU > ``iou_thr`` (strict, as in WBF and
the PASCAL VOC criterion; IoU from :mod:`earl_core.boxes`).
"""

from __future__ import annotations

import numpy as np

from earl_core.boxes import as_boxes, box_iou, paired_box_iou
from earl_core.fusion.base import check_iou_thr

__all__ = [
    'LINKAGES',
    'cluster_boxes',
    'cluster_ids',
    'cluster_segments',
    'iou_pairs',
    'match_boxes',
    'overlap_components',
    'segment_iou_pairs',
]

#: Cluster-to-cluster IoU linkages accepted by :func:`cluster_boxes`.
LINKAGES = ('average', 'complete', 'single')


def match_boxes(
    boxes_a: np.ndarray,
    boxes_b: np.ndarray,
    iou_thr: float = 0.5,
    labels_a: np.ndarray | None = None,
    labels_b: np.ndarray | None = None,
    method: str = 'greedy',
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One-to-one matching of two box sets by IoU.

    A pair can match only if IoU > ``iou_thr`` and, when labels are given, the labels are
    equal. ``greedy`` takes pairs in decreasing IoU (ties: lower index of ``a``, then of
    ``b``); ``hungarian`` maximises the summed IoU of the matched pairs
    (``scipy.optimize.linear_sum_assignment``).

    Args:
        boxes_a (np.ndarray): (N, 4) xyxy pixels.
        boxes_b (np.ndarray): (M, 4) xyxy pixels.
        iou_thr (float): pairs need IoU > iou_thr. Defaults to 0.5.
        labels_a (np.ndarray | None): (N,) labels; None = class-agnostic.
        labels_b (np.ndarray | None): (M,) labels; given together with ``labels_a``.
        method (str): ``'greedy'`` or ``'hungarian'``. Defaults to ``'greedy'``.

    Returns:
        tuple[np.ndarray, np.ndarray, np.ndarray]: indices into ``a`` (K,), indices into
        ``b`` (K,) and their IoUs (K,), sorted by the index into ``a``.

    Examples:
        >>> a = np.array([[0, 0, 10, 10], [20, 20, 30, 30]])
        >>> b = np.array([[21, 20, 31, 30], [0, 1, 10, 11]])
        >>> ia, ib, _ = match_boxes(a, b, 0.5)
        >>> ia.tolist(), ib.tolist()
        ([0, 1], [1, 0])
    """
    if method not in ('greedy', 'hungarian'):
        raise ValueError(f"method must be 'greedy' or 'hungarian', got {method!r}")
    check_iou_thr(iou_thr, 'match_boxes')
    if (labels_a is None) != (labels_b is None):
        raise ValueError('give both labels_a and labels_b, or neither')
    empty = (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float64))
    if len(boxes_a) == 0 or len(boxes_b) == 0:
        return empty
    iou = box_iou(boxes_a, boxes_b)
    n, m = iou.shape
    ok = iou > iou_thr
    if labels_a is not None:
        la = np.asarray(labels_a).reshape(-1)
        lb = np.asarray(labels_b).reshape(-1)
        if la.shape[0] != n or lb.shape[0] != m:
            raise ValueError(
                f'labels_a/labels_b lengths {la.shape[0]}/{lb.shape[0]} do not match the '
                f'boxes {n}/{m}'
            )
        ok &= la[:, None] == lb[None, :]
    if not ok.any():
        return empty
    if method == 'hungarian':
        from scipy.optimize import linear_sum_assignment

        # Forbidden pairs get a cost that no allowed set of pairs can beat.
        cost = np.where(ok, -iou, 1.0)
        rows, cols = linear_sum_assignment(cost)
        keep = ok[rows, cols]
        ia, ib = rows[keep].astype(np.int64), cols[keep].astype(np.int64)
    else:
        cand_a, cand_b = np.nonzero(ok)
        # lexsort: last key is primary -> decreasing IoU, then index a, then index b.
        order = np.lexsort((cand_b, cand_a, -iou[cand_a, cand_b]))
        used_a = np.zeros(n, bool)
        used_b = np.zeros(m, bool)
        pa, pb = [], []
        for k in order:
            i, j = cand_a[k], cand_b[k]
            if used_a[i] or used_b[j]:
                continue
            used_a[i] = used_b[j] = True
            pa.append(i)
            pb.append(j)
        ia, ib = np.asarray(pa, np.int64), np.asarray(pb, np.int64)
    order = np.argsort(ia, kind='stable')
    ia, ib = ia[order], ib[order]
    return ia, ib, iou[ia, ib]


def cluster_boxes(
    boxes: np.ndarray,
    groups: np.ndarray,
    iou_thr: float = 0.4,
    labels: np.ndarray | None = None,
    linkage: str = 'average',
) -> list[np.ndarray]:
    """Group boxes of several raters into objects, at most one box per rater per object.

    Greedy agglomerative clustering: start from one cluster per box, then repeatedly merge
    the two clusters with the highest linkage IoU, as long as it is > ``iou_thr``, the two
    clusters hold no box of the same rater (group) and, when ``labels`` is given, they carry
    the same label. ``average`` linkage = mean IoU over all cross pairs (UPGMA),
    ``complete`` = lowest, ``single`` = highest. Unlike WBF's sequential matching, the result
    does not depend on the order of the raters (up to exact IoU ties, broken by box index).

    Args:
        boxes (np.ndarray): (N, 4) xyxy pixels.
        groups (np.ndarray): (N,) rater id of each box (any hashable dtype).
        iou_thr (float): merge only while linkage IoU > iou_thr. Defaults to 0.4.
        labels (np.ndarray | None): (N,) labels; None = class-agnostic clustering.
        linkage (str): ``'average'``, ``'complete'`` or ``'single'``. Defaults to
            ``'average'``.

    Returns:
        list[np.ndarray]: clusters as sorted int64 index arrays into ``boxes``, ordered by
        their smallest index; every box is in exactly one cluster.

    Examples:
        >>> b = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [0, 1, 10, 11], [50, 50, 60, 60]])
        >>> [c.tolist() for c in cluster_boxes(b, np.array(['a', 'b', 'a', 'b']))]
        [[0, 1], [2], [3]]
    """
    b, g_idx, lab = _check_cluster_args(boxes, groups, iou_thr, labels, linkage)
    n = b.shape[0]
    if n <= 1:
        return [np.arange(n, dtype=np.int64)] if n else []
    # Two clusters merge only if some cross pair has IoU > iou_thr (for all three linkages,
    # linkage > iou_thr implies it), from different raters and with the same label: clusters
    # never cross the connected components of that sparse graph, and merges in different
    # components do not interact. So the greedy runs per component, on the component's
    # boxes in index order (same row-major tie-breaking): the same clusters in O(N) memory
    # for well-separated objects.
    # A component whose boxes are pairwise joined (a clique) is one cluster, for every
    # linkage: no greedy needed (most objects on well-marked images).
    comp, clique = overlap_components(b, g_idx, float(iou_thr), lab)
    order = np.argsort(comp, kind='stable')
    bounds = np.flatnonzero(np.diff(comp[order])) + 1
    clusters: list[np.ndarray] = []
    for idx in np.split(order.astype(np.int64), bounds):
        if clique[comp[idx[0]]]:
            clusters.append(idx)
            continue
        sub_lab = None if lab is None else lab[idx]
        for m in _greedy_merge(b[idx], g_idx[idx], sub_lab, iou_thr, linkage):
            clusters.append(idx[m])
    clusters.sort(key=lambda m: int(m[0]))
    return clusters


#: Up to this many boxes, :func:`overlap_components` and :func:`iou_pairs` work on the
#: dense IoU matrix (a few numpy calls) instead of the sweep and scipy's graph routines,
#: whose fixed cost dominates on the small images of a crowd file (measured, 2-core
#: x86-64: clustering 3 raters' boxes of 1-3 objects, 0.14 ms against 0.7 ms per image).
_SMALL = 64


def _components_small(
    b: np.ndarray, groups: np.ndarray, iou_thr: float, labels: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`overlap_components` of a few boxes, on the dense IoU matrix."""
    n = b.shape[0]
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, bool)
    adj = (box_iou(b, b) > iou_thr) & (groups[:, None] != groups[None, :])
    if labels is not None:
        adj &= labels[:, None] == labels[None, :]
    # Propagate the smallest index through the edges: each box ends with the smallest
    # index of its component.
    low = np.arange(n)
    while True:
        new = np.minimum(np.where(adj, low[None, :], n).min(1), low)
        if np.array_equal(new, low):
            break
        low = new
    _, comp = np.unique(low, return_inverse=True)  # 0.. in order of the smallest index
    comp = comp.reshape(-1)
    size = np.bincount(comp)
    edges = np.bincount(comp, weights=adj.sum(1)) / 2
    return comp, edges == size * (size - 1) // 2


def cluster_ids(clusters: list[np.ndarray], n: int) -> np.ndarray:
    """(n,) int64: the cluster of each of ``n`` boxes, from clusters as index arrays (as
    :func:`cluster_boxes` returns them; every box in one cluster)."""
    out = np.zeros(n, np.int64)
    if clusters:
        sizes = [len(c) for c in clusters]
        out[np.concatenate(clusters)] = np.repeat(np.arange(len(clusters)), sizes)
    return out


def _check_cluster_args(
    boxes: np.ndarray,
    groups: np.ndarray,
    iou_thr: float,
    labels: np.ndarray | None,
    linkage: str,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Validate :func:`cluster_boxes`' inputs: boxes (N, 4), group indices and labels (N,)."""
    if linkage not in LINKAGES:
        raise ValueError(f'linkage must be one of {LINKAGES}, got {linkage!r}')
    check_iou_thr(iou_thr, 'cluster_boxes')
    b = as_boxes(boxes, 'boxes')
    n = b.shape[0]
    g = np.asarray(groups).reshape(-1)
    if g.shape[0] != n:
        raise ValueError(f'groups has {g.shape[0]} entries for {n} boxes')
    if g.dtype.kind in 'iu':
        g_idx = g  # only compared for equality
    else:
        _, g_idx = np.unique(g, return_inverse=True)
    lab = None
    if labels is not None and n > 1:  # (one box or none: labels are not looked at)
        lab = np.asarray(labels).reshape(-1)
        if lab.shape[0] != n:
            raise ValueError(f'labels has {lab.shape[0]} entries for {n} boxes')
    return b, g_idx.reshape(-1), lab


def iou_pairs(
    boxes: np.ndarray,
    iou_thr: float = 0.0,
    groups: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    max_pairs: int = 1 << 18,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs of boxes with IoU > ``iou_thr``, found without the N x N matrix.

    Candidate pairs come from a sweep over the boxes sorted by x1 (a pair can have IoU > 0
    only if the later box starts left of the earlier one's x2), generated in chunks of at
    most about ``max_pairs`` pairs and filtered on y overlap, groups and labels before the
    IoU is computed, so memory stays bounded by the chunk and the pairs kept. The IoUs are
    those of :func:`box_iou` (the same arithmetic, bit for bit).

    Args:
        boxes (np.ndarray): (N, 4) xyxy.
        iou_thr (float): keep pairs with IoU > iou_thr (strict). Defaults to 0.0.
        groups (np.ndarray | None): (N,) group (rater) codes; keep pairs of different
            groups only. None = no condition.
        labels (np.ndarray | None): (N,) labels; keep pairs of equal labels only. None =
            no condition.
        max_pairs (int): candidate pairs per chunk. Defaults to 2^18.

    Returns:
        tuple[np.ndarray, np.ndarray, np.ndarray]: i (K,) and j (K,) int64 with i < j,
        sorted by (i, j), and their IoUs (K,) float64.

    Examples:
        >>> b = np.array([[0, 0, 10, 10], [50, 0, 60, 10], [1, 0, 11, 10.]])
        >>> i, j, iou = iou_pairs(b, 0.5)
        >>> i.tolist(), j.tolist(), iou.round(3).tolist()
        ([0], [2], [0.818])
    """
    b = as_boxes(boxes, 'boxes')
    n = b.shape[0]
    if n <= _SMALL:
        iou = box_iou(b, b)
        keep = np.triu(iou > iou_thr, 1)
        if groups is not None:
            g = np.asarray(groups).reshape(-1)
            keep &= g[:, None] != g[None, :]
        if labels is not None:
            lab = np.asarray(labels).reshape(-1)
            keep &= lab[:, None] == lab[None, :]
        i, j = np.nonzero(keep)  # row-major: sorted by (i, j)
        return i.astype(np.int64), j.astype(np.int64), iou[i, j]
    order = np.argsort(b[:, 0], kind='stable')
    bs = b[order]
    gs = None if groups is None else np.asarray(groups).reshape(-1)[order]
    ls = None if labels is None else np.asarray(labels).reshape(-1)[order]
    # Positions q > p with x1[q] < x2[p] are the candidates of p.
    end = np.searchsorted(bs[:, 0], bs[:, 2], side='left')
    count = np.maximum(end - np.arange(n) - 1, 0)
    cum = np.cumsum(count)
    found: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    p0 = 0
    while p0 < n:
        # Rows p0..p1-1 hold at most max_pairs candidates (at least one row).
        base = cum[p0 - 1] if p0 else 0
        p1 = max(int(np.searchsorted(cum, base + max_pairs, side='right')), p0 + 1)
        cnt = count[p0:p1]
        p = np.repeat(np.arange(p0, p1), cnt)
        q = p + 1 + (np.arange(p.shape[0]) - np.repeat(np.cumsum(cnt) - cnt, cnt))
        keep = (bs[q, 1] < bs[p, 3]) & (bs[p, 1] < bs[q, 3])
        if gs is not None:
            keep &= gs[p] != gs[q]
        if ls is not None:
            keep &= ls[p] == ls[q]
        p, q = p[keep], q[keep]
        iou = paired_box_iou(bs[p], bs[q])
        keep = iou > iou_thr
        found.append((order[p[keep]], order[q[keep]], iou[keep]))
        p0 = p1
    if not found:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    a, c, iou = (np.concatenate(x) for x in zip(*found))
    i, j = np.minimum(a, c).astype(np.int64), np.maximum(a, c).astype(np.int64)
    srt = np.lexsort((j, i))
    return i[srt], j[srt], iou[srt]


def overlap_components(
    boxes: np.ndarray,
    groups: np.ndarray,
    iou_thr: float,
    labels: np.ndarray | None = None,
    max_pairs: int = 1 << 18,
) -> tuple[np.ndarray, np.ndarray]:
    """Connected components of the graph IoU > iou_thr, different group, same label.

    Args:
        boxes (np.ndarray): (N, 4) xyxy.
        groups (np.ndarray): (N,) group (rater) codes.
        iou_thr (float): edge threshold (strict).
        labels (np.ndarray | None): (N,) labels; None = class-agnostic.
        max_pairs (int): see :func:`iou_pairs`. Defaults to 2^18.

    Returns:
        tuple[np.ndarray, np.ndarray]: (N,) component of each box, and per component
        whether it is a *clique* (every two of its boxes are joined by an edge: then
        :func:`cluster_boxes` makes it one cluster, for every linkage, and so does it for
        any subset of it).
    """
    b = as_boxes(boxes, 'boxes')
    n = b.shape[0]
    g = np.asarray(groups).reshape(-1)
    if n <= _SMALL:
        return _components_small(b, g, iou_thr, None if labels is None else np.asarray(labels))
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    r, c, _ = iou_pairs(b, iou_thr, g, labels, max_pairs)
    graph = coo_matrix((np.ones(r.shape[0], np.int8), (r, c)), shape=(n, n))
    num, comp = connected_components(graph, directed=False)
    size = np.bincount(comp, minlength=num)
    edges = np.bincount(comp[r], minlength=num)
    return comp, edges == size * (size - 1) // 2


def segment_iou_pairs(
    boxes: np.ndarray,
    sizes: np.ndarray,
    iou_thr: float = 0.0,
    groups: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    chunk: int = 1 << 18,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`iou_pairs` of many box sets at once (e.g. every image of a dataset).

    The sets are consecutive segments of ``boxes``; pairs never cross segments. Segments
    of up to 64 boxes are handled together, size by size, as (segments, pairs) arrays of
    at most about ``chunk`` pairs: no Python loop over the images of a crowd file. Larger
    segments go through :func:`iou_pairs` one by one. The IoUs are those of
    :func:`box_iou`, bit for bit.

    Args:
        boxes (np.ndarray): (N, 4) xyxy, the segments one after the other.
        sizes (np.ndarray): (S,) boxes per segment (sum N).
        iou_thr (float): keep pairs with IoU > iou_thr (strict). Defaults to 0.0.
        groups (np.ndarray | None): (N,) group codes; pairs of different groups only.
        labels (np.ndarray | None): (N,) labels; pairs of equal labels only.
        chunk (int): pairs per batch of small segments. Defaults to 2^18.

    Returns:
        tuple[np.ndarray, np.ndarray, np.ndarray]: i (K,) and j (K,) int64 indices into
        ``boxes``, i < j in one segment, sorted by (i, j), and their IoUs (K,) float64.
    """
    b = as_boxes(boxes, 'boxes')
    sizes = np.asarray(sizes, np.int64).reshape(-1)
    if int(sizes.sum()) != b.shape[0]:
        raise ValueError(f'segment sizes sum to {int(sizes.sum())} for {b.shape[0]} boxes')
    starts = np.cumsum(sizes) - sizes
    g = None if groups is None else np.asarray(groups).reshape(-1)
    lab = None if labels is None else np.asarray(labels).reshape(-1)
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for n in np.unique(sizes).tolist():
        if n < 2:
            continue
        st = starts[sizes == n]
        if n > _SMALL:
            for s in st.tolist():
                sl = slice(s, s + n)
                i, j, v = iou_pairs(
                    b[sl], iou_thr, None if g is None else g[sl], None if lab is None else lab[sl]
                )
                parts.append((i + s, j + s, v))
            continue
        iu, ju = np.triu_indices(n, 1)  # the pairs of one segment, row-major
        per = max(1, chunk // len(iu))
        for c0 in range(0, len(st), per):
            base = st[c0 : c0 + per, None]
            i, j = base + iu, base + ju  # (segments, pairs)
            v = paired_box_iou(b[i], b[j])
            keep = v > iou_thr
            if g is not None:
                keep &= g[i] != g[j]
            if lab is not None:
                keep &= lab[i] == lab[j]
            parts.append((i[keep], j[keep], v[keep]))
    if not parts:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    i, j, v = (np.concatenate(x) for x in zip(*parts))
    order = np.lexsort((j, i))
    return i[order].astype(np.int64), j[order].astype(np.int64), v[order]


def cluster_segments(
    boxes: np.ndarray,
    sizes: np.ndarray,
    groups: np.ndarray,
    iou_thr: float = 0.4,
    labels: np.ndarray | None = None,
    linkage: str = 'average',
) -> np.ndarray:
    """:func:`cluster_boxes` of many box sets at once (e.g. every image of a dataset).

    The sets are consecutive segments of ``boxes``. One graph holds every segment's pairs
    (:func:`segment_iou_pairs`), one call finds its components; a clique is one cluster,
    the other components go through the greedy merge of :func:`cluster_boxes`. The same
    clusters as :func:`cluster_boxes` on each segment, without a Python loop over the
    segments.

    Args:
        boxes (np.ndarray): (N, 4) xyxy, the segments one after the other.
        sizes (np.ndarray): (S,) boxes per segment.
        groups (np.ndarray): (N,) rater of each box (compared within a segment).
        iou_thr (float): merge only while linkage IoU > iou_thr. Defaults to 0.4.
        labels (np.ndarray | None): (N,) labels; None = class-agnostic.
        linkage (str): see :func:`cluster_boxes`. Defaults to ``'average'``.

    Returns:
        np.ndarray: (N,) int64 cluster of each box, numbered in the order of the clusters'
        smallest box index (so segment by segment, and within a segment as
        :func:`cluster_boxes` orders them).
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    b, g, lab = _check_cluster_args(boxes, groups, iou_thr, labels, linkage)
    n = b.shape[0]
    if n == 0:
        return np.zeros(0, np.int64)
    i, j, _ = segment_iou_pairs(b, sizes, float(iou_thr), g, lab)
    graph = coo_matrix((np.ones(i.shape[0], np.int8), (i, j)), shape=(n, n))
    num, comp = connected_components(graph, directed=False)
    size = np.bincount(comp, minlength=num)
    clique = np.bincount(comp[i], minlength=num) == size * (size - 1) // 2
    cid = comp.astype(np.int64)
    nxt = num
    bad = np.flatnonzero(~clique)
    if bad.size:
        order = np.argsort(comp, kind='stable')
        start = np.cumsum(size) - size
        for c in bad.tolist():
            idx = order[start[c] : start[c] + size[c]]
            sub = None if lab is None else lab[idx]
            for m in _greedy_merge(b[idx], g[idx], sub, iou_thr, linkage):
                cid[idx[m]] = nxt
                nxt += 1
    first = np.full(nxt, n)
    np.minimum.at(first, cid, np.arange(n))
    used = np.flatnonzero(first < n)
    rank = np.zeros(nxt, np.int64)
    rank[used[np.argsort(first[used])]] = np.arange(used.shape[0])
    return rank[cid]


def merge_pair(a: int, c: int, linkage: str, members: list[list[int]], *arrays: np.ndarray) -> None:
    """Cluster c joins cluster a in place (one merge step of :func:`cluster_boxes`).
    ``arrays``: ``link_sum`` (a's row and column become summed IoU for ``average``, min for
    ``complete``, max for ``single``), ``conflict``, ``size``, ``active`` (c turns off)."""
    link_sum, conflict, size, active = arrays
    members[a].extend(members[c])
    if linkage == 'average':
        link_sum[a, :] += link_sum[c, :]
    else:
        pick = np.minimum if linkage == 'complete' else np.maximum
        link_sum[a, :] = pick(link_sum[a, :], link_sum[c, :])
    link_sum[:, a] = link_sum[a, :]
    conflict[a, :] |= conflict[c, :]
    conflict[:, a] = conflict[a, :]
    size[a] += size[c]
    active[c] = False


def _greedy_merge(
    b: np.ndarray,
    g_idx: np.ndarray,
    lab: np.ndarray | None,
    iou_thr: float,
    linkage: str,
) -> list[np.ndarray]:
    """The greedy agglomerative merge of :func:`cluster_boxes` on one component.

    Each step merges the pair of active clusters (a < c) with the highest linkage, the
    first in row-major order on a tie, among the pairs that share no rater (nor differ in
    label) and have linkage > ``iou_thr``; c joins a. Each row a caches its best partner
    c > a, so a step updates row a and the cached entries that point at a or c, instead
    of rescanning the (N, N) matrix: O(N^2) time for N boxes that merge one by one (a
    crowd of raters on one object) instead of O(N^3). The linkage values are computed
    as the dense formula computes them, so the merges are the same, ties included.

    Returns:
        list[np.ndarray]: clusters as sorted int64 index arrays into ``b``, ordered by their
        smallest index.
    """
    n = b.shape[0]
    link_sum = box_iou(b, b)  # average: summed cross IoU; complete/single: the min/max
    # conflict[a, c]: clusters a and c share a rater (or a label differs) -> never merge.
    conflict = g_idx[:, None] == g_idx[None, :]
    if lab is not None:
        conflict |= lab[:, None] != lab[None, :]
    size = np.ones(n)
    active = np.ones(n, bool)
    average = linkage == 'average'
    members: list[list[int]] = [[i] for i in range(n)]
    best = np.full(n, -np.inf)  # per row a: the highest valid linkage to a column c > a
    arg = np.full(n, n, np.int64)  # ... and its first column (n: none)

    def rescan(a: int) -> None:
        """Row a's best valid column c > a (a active), from its row of the matrices."""
        if a == n - 1:
            best[a], arg[a] = -np.inf, n
            return
        link = link_sum[a, a + 1 :]
        if average:
            link = link / (size[a] * size[a + 1 :])
        ok = active[a + 1 :] & ~conflict[a, a + 1 :] & (link > iou_thr)
        v = np.where(ok, link, -np.inf)
        j = int(np.argmax(v))  # first maximum
        best[a], arg[a] = v[j], (a + 1 + j if v[j] > -np.inf else n)

    v0 = np.where(np.triu(~conflict, 1) & (link_sum > iou_thr), link_sum, -np.inf)
    arg[:] = v0.argmax(1)
    best[:] = v0[np.arange(n), arg]
    arg[best == -np.inf] = n
    del v0
    while True:
        a = int(np.argmax(best))  # first row holding the maximum, then its first column
        if best[a] == -np.inf:
            break
        c = int(arg[a])
        merge_pair(a, c, linkage, members, link_sum, conflict, size, active)
        best[c], arg[c] = -np.inf, n
        rescan(a)
        # Rows before a: their entry in column a changed, the one in column c is gone.
        if a:
            old = arg[:a]
            pointed = (old == a) | (old == c)
            link = link_sum[:a, a]
            if average:
                link = link / (size[:a] * size[a])
            ok = active[:a] & ~conflict[:a, a] & (link > iou_thr)
            v = np.where(ok, link, -np.inf)
            better = (v > best[:a]) | ((v == best[:a]) & (v > -np.inf) & (a < old))
            better &= ~pointed
            best[:a] = np.where(better, v, best[:a])
            arg[:a] = np.where(better, a, old)
            for r in np.flatnonzero(active[:a] & pointed).tolist():
                rescan(r)
        # Rows between a and c: only the entry in column c is gone.
        for r in (a + 1 + np.flatnonzero(arg[a + 1 : c] == c)).tolist():
            rescan(r)
    clusters = [np.asarray(sorted(members[i]), np.int64) for i in np.flatnonzero(active)]
    clusters.sort(key=lambda m: int(m[0]))
    return clusters
