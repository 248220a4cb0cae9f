"""The clusters of many images as one sparse table of observations (numpy only).

Both EM models (:mod:`earl_core.fusion.em`, :mod:`earl_core.fusion.presence_em`) see a
cluster through the raters who read its image: each rater drew a box in it (with a label)
or drew nothing there. A dense table, clusters x all raters of the file, grows with the
crowd (50,000 images read by 3 of 1,000 raters: 150 million cells for 450,000
observations). This table grows with the boxes and the (image, rater) pairs instead:

* **entries**: one per box drawn in a cluster: its rater column and its label;
* **rater sets**: the distinct sets of raters of the images, each with the number of
  images it read; a sum over the raters of a cluster's image is a sum over its set;
* **patterns**: clusters read by the same set with the same (rater, label) entries have
  the same likelihood, hence the same posterior. The EM runs once per pattern, weighted by
  the number of its clusters (one image with 20,000 lone boxes drawn by 3 raters in 3
  classes has 9 patterns).

A rater who drew nothing in a cluster is never stored: a sum over those raters is the
sum over the rater set minus the sum over the cluster's entries.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from earl_core.deprecation import renamed_attribute, renamed_kwargs

__all__ = ['ClusterTable', 'bincount_rows', 'build_cluster_table']


def bincount_rows(index: np.ndarray, weights: np.ndarray, size: int) -> np.ndarray:
    """Sums of the rows of ``weights`` (N, M) by ``index`` (N,): (size, M) float64."""
    weights = np.asarray(weights, np.float64)
    if weights.ndim == 1:
        return np.bincount(index, weights=weights, minlength=size)
    out = np.empty((size, weights.shape[1]))
    for m in range(weights.shape[1]):
        out[:, m] = np.bincount(index, weights=weights[:, m], minlength=size)
    return out


@dataclass
class ClusterTable:
    """The observations of every cluster of some images, sparse (see the module docstring).

    Columns are rater codes 0..C-1 (a fit's raters; for one image's posterior its
    raters). All index arrays are int64, all counts float64.

    Args:
        k (int): K, the number of classes (labels 0..K-1).
        num_columns (int): C.
        set_images (np.ndarray): (S,) images read by each rater set.
        set_size (np.ndarray): (S,) raters in each set.
        pair_set (np.ndarray): (P,) the set of each (set, rater) pair.
        pair_column (np.ndarray): (P,) the rater's column.
        pattern_set (np.ndarray): (U,) the rater set of each pattern.
        pattern_count (np.ndarray): (U,) clusters with that pattern.
        entry_pattern (np.ndarray): (E,) the pattern of each entry (a box drawn in the
            pattern's clusters).
        entry_column (np.ndarray): (E,) its rater column.
        entry_label (np.ndarray): (E,) its label (< K).
        cluster_pattern (np.ndarray): (J,) the pattern of each cluster, in the order of the
            images and of their clusters.
    """

    k: int
    num_columns: int
    set_images: np.ndarray
    set_size: np.ndarray
    pair_set: np.ndarray
    pair_column: np.ndarray
    pattern_set: np.ndarray
    pattern_count: np.ndarray
    entry_pattern: np.ndarray
    entry_column: np.ndarray
    entry_label: np.ndarray
    cluster_pattern: np.ndarray

    @property
    def num_clusters(self) -> int:
        return int(self.cluster_pattern.shape[0])

    @property
    def num_patterns(self) -> int:
        return int(self.pattern_set.shape[0])

    @property
    def num_sets(self) -> int:
        return int(self.set_images.shape[0])

    def per_set(self, by_column: np.ndarray) -> np.ndarray:
        """Sum over each rater set's columns of ``by_column`` (C,) or (C, M): (S, ...)."""
        return bincount_rows(self.pair_set, by_column[self.pair_column], self.num_sets)

    def per_column(self, by_set: np.ndarray) -> np.ndarray:
        """Sum over the rater sets holding each column of ``by_set`` (S,) or (S, M):
        (C, ...) (``by_set`` already summed over the set's images)."""
        return bincount_rows(self.pair_column, by_set[self.pair_set], self.num_columns)

    def per_pattern(self, by_entry: np.ndarray) -> np.ndarray:
        """Sum over each pattern's entries of ``by_entry`` (E,) or (E, M): (U, ...)."""
        return bincount_rows(self.entry_pattern, by_entry, self.num_patterns)

    def set_total(self, by_pattern: np.ndarray) -> np.ndarray:
        """Sum over the clusters read by each set of ``by_pattern`` (U,) or (U, M): (S, ...)
        (each pattern counted ``pattern_count`` times)."""
        count = self.pattern_count if by_pattern.ndim == 1 else self.pattern_count[:, None]
        return bincount_rows(self.pattern_set, by_pattern * count, self.num_sets)

    def images_read(self) -> np.ndarray:
        """(C,) images read by each column."""
        return self.per_column(self.set_images)

    def raters_read(self) -> np.ndarray:
        """(U,) raters who read each pattern's clusters (drew a box in them or not)."""
        return self.set_size[self.pattern_set].astype(np.float64)

    readers = renamed_attribute('raters_read')

    def drawers(self) -> np.ndarray:
        """(U,) entries (boxes) of each pattern's clusters."""
        return np.bincount(self.entry_pattern, minlength=self.num_patterns).astype(np.float64)


@renamed_kwargs('build_cluster_table', box_reader='box_rater')
def build_cluster_table(
    k: int,
    num_columns: int,
    image_columns: Sequence[np.ndarray],
    box_cluster: Sequence[np.ndarray],
    box_rater: Sequence[np.ndarray],
    box_label: Sequence[np.ndarray],
    num_clusters: Sequence[int],
) -> ClusterTable:
    """Build the table of some clustered images.

    Args:
        k (int): K.
        num_columns (int): C.
        image_columns (Sequence[np.ndarray]): per image, (R_i,) the column of each rater
            (distinct).
        box_cluster (Sequence[np.ndarray]): per image, (N_i,) the cluster of each box
            (0..J_i-1; at most one box per rater per cluster).
        box_rater (Sequence[np.ndarray]): per image, (N_i,) the rater (0..R_i-1) of each
            box.
        box_label (Sequence[np.ndarray]): per image, (N_i,) labels < K.
        num_clusters (Sequence[int]): per image, J_i.

    Returns:
        ClusterTable: the table; clusters numbered image after image.
    """
    # Rater sets: the sorted columns of each image.
    set_of: dict[tuple[int, ...], int] = {}
    image_set = np.empty(len(image_columns), np.int64)
    for i, cols in enumerate(image_columns):
        image_set[i] = set_of.setdefault(tuple(sorted(cols.tolist())), len(set_of))
    keys = list(set_of)
    set_size = np.array([len(t) for t in keys], np.int64)
    pair_set = np.repeat(np.arange(len(keys), dtype=np.int64), set_size)
    pair_column = np.fromiter((c for t in keys for c in t), np.int64, count=int(set_size.sum()))
    set_images = np.bincount(image_set, minlength=len(keys)).astype(np.float64)

    # Entries of every cluster: (cluster, column, label), clusters numbered image by image.
    j_img = np.asarray(num_clusters, np.int64)
    offset = np.concatenate([[0], np.cumsum(j_img)[:-1]]) if len(j_img) else j_img
    n_box = np.fromiter((len(b) for b in box_cluster), np.int64, count=len(box_cluster))
    if n_box.sum():
        cl = np.concatenate(box_cluster).astype(np.int64) + np.repeat(offset, n_box)
        col = np.concatenate(
            [cols[r] for cols, r in zip(image_columns, box_rater) if len(r)]
        ).astype(np.int64)
        lab = np.concatenate(box_label).astype(np.int64)
    else:
        cl = col = lab = np.zeros(0, np.int64)
    num_j = int(j_img.sum())
    cluster_set = np.repeat(image_set, j_img)
    order = np.lexsort((col, cl))  # by cluster, then column: a canonical key per cluster
    cl, code = cl[order], col[order] * k + lab[order]
    size = np.bincount(cl, minlength=num_j)
    start = np.concatenate([[0], np.cumsum(size)[:-1]]) if num_j else size

    # Patterns: clusters of one size with the same set and codes, found by np.unique.
    cluster_pattern = np.empty(num_j, np.int64)
    p_set: list[np.ndarray] = []
    p_count: list[np.ndarray] = []
    p_codes: list[np.ndarray] = []
    p_entry: list[np.ndarray] = []
    n_pat = 0
    for m in np.unique(size).tolist():
        sel = np.flatnonzero(size == m)
        rows = code[start[sel][:, None] + np.arange(m)]
        key = np.concatenate([cluster_set[sel][:, None], rows], 1)
        uniq, inv, cnt = np.unique(key, axis=0, return_inverse=True, return_counts=True)
        cluster_pattern[sel] = n_pat + inv.reshape(-1)
        p_set.append(uniq[:, 0])
        p_count.append(cnt)
        p_codes.append(uniq[:, 1:].reshape(-1))
        p_entry.append(np.repeat(np.arange(n_pat, n_pat + uniq.shape[0], dtype=np.int64), m))
        n_pat += uniq.shape[0]
    if n_pat:
        pattern_set = np.concatenate(p_set).astype(np.int64)
        pattern_count = np.concatenate(p_count).astype(np.float64)
        codes = np.concatenate(p_codes).astype(np.int64)
        entry_pattern = np.concatenate(p_entry)
    else:
        pattern_set = codes = entry_pattern = np.zeros(0, np.int64)
        pattern_count = np.zeros(0)
    return ClusterTable(
        k=int(k),
        num_columns=int(num_columns),
        set_images=set_images,
        set_size=set_size,
        pair_set=pair_set,
        pair_column=pair_column,
        pattern_set=pattern_set,
        pattern_count=pattern_count,
        entry_pattern=entry_pattern,
        entry_column=codes // k,
        entry_label=codes % k,
        cluster_pattern=cluster_pattern,
    )
