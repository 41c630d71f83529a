"""Locality-sensitive hashing for cosine similarity [Indyk & Motwani 1998]: random hyperplanes.

    index = HyperplaneLSH(d=64, bits=12, tables=8).add(database)
    indices, n_candidates = index.search(queries, k=10)

A vector's hash in one table is the signs of its dot products with `bits` random directions.
Two vectors at angle theta agree on one sign with probability 1 - theta/pi, so near vectors
tend to share a bucket. A query looks in its bucket of each table, and the candidates found
there are ranked by exact cosine similarity. More bits: smaller buckets, fewer candidates,
lower recall; more tables: more chances to meet the true neighbours.
"""

from __future__ import annotations

import torch
from torch import Tensor

from fromscratch.cluster._checks import check_count, check_points, row_batches


def unit(x: Tensor) -> Tensor:
    return x / x.norm(dim=1, keepdim=True).clamp(min=1e-12)


class HyperplaneLSH:
    """`tables` hash tables, each keyed by `bits` random-hyperplane signs of the vector."""

    def __init__(self, d: int, bits: int = 12, tables: int = 8, seed: int = 0) -> None:
        check_count(d, "d")
        check_count(bits, "bits", 1, 62, "62 bits per table key")
        check_count(tables, "tables")
        generator = torch.Generator().manual_seed(seed)
        self.d, self.bits, self.tables = d, bits, tables
        self.planes = torch.randn(tables, d, bits, generator=generator)
        self.powers = 2 ** torch.arange(bits, dtype=torch.long)
        self.database: Tensor | None = None

    def hash(self, x: Tensor) -> Tensor:
        """(tables, n) integer keys: bit j of key t is the sign of x . plane_{t, j}."""
        x = check_points(x)
        if x.shape[1] != self.d:
            raise ValueError(f"vectors have {x.shape[1]} coordinates, the index was made for {self.d}")
        signs = torch.einsum("nd,tdb->tnb", x, self.planes.to(x)) > 0
        return (signs.long() * self.powers.to(x.device)).sum(2)

    def add(self, database: Tensor) -> HyperplaneLSH:
        """Hash the database and sort each table's keys, so a bucket is a contiguous run."""
        self.database = unit(check_points(database, "database"))
        keys = self.hash(self.database)
        self.sorted_keys, self.order = keys.sort(dim=1)
        self.planes = self.planes.to(self.database)
        return self

    def candidates(self, queries: Tensor) -> tuple[Tensor, Tensor]:
        """(query, database index) pairs that share a bucket in at least one table, deduplicated."""
        if self.database is None:
            raise RuntimeError("the index is empty; call .add(database) first")
        n = len(self.database)
        keys = self.hash(queries)
        pairs = []
        for t in range(self.tables):
            start = torch.searchsorted(self.sorted_keys[t], keys[t])
            stop = torch.searchsorted(self.sorted_keys[t], keys[t], right=True)
            sizes = stop - start
            query = torch.repeat_interleave(torch.arange(len(queries), device=keys.device), sizes)
            run_start = torch.repeat_interleave(start - (sizes.cumsum(0) - sizes), sizes)
            position = torch.arange(len(query), device=keys.device) + run_start
            pairs.append(query * n + self.order[t][position])
        unique = torch.unique(torch.cat(pairs))
        return unique // n, unique % n

    def search(self, queries: Tensor, k: int = 10, batch_size: int = 1024) -> tuple[Tensor, Tensor]:
        """The k candidates of highest cosine similarity per query: indices (q, k), -1 where a
        query found fewer than k, and the number of candidates each query ranked."""
        check_count(k, "k")
        queries = unit(check_points(queries, "queries"))
        device = queries.device
        found = torch.full((len(queries), k), -1, dtype=torch.long, device=device)
        counts = torch.zeros(len(queries), dtype=torch.long, device=device)
        for rows in row_batches(len(queries), batch_size):
            query, index = self.candidates(queries[rows])
            score = (queries[rows][query] * self.database[index]).sum(1)
            by_score = torch.argsort(score, descending=True, stable=True)
            by_query = by_score[torch.argsort(query[by_score], stable=True)]
            query, index = query[by_query], index[by_query]
            sizes = torch.bincount(query, minlength=rows.stop - rows.start)
            first = sizes.cumsum(0) - sizes
            rank = torch.arange(len(query), device=device) - first[query]
            keep = rank < k
            found[rows][query[keep], rank[keep]] = index[keep]
            counts[rows] = sizes
        return found, counts


def exact_cosine_knn(queries: Tensor, database: Tensor, k: int, batch_size: int = 1024) -> Tensor:
    """Indices of the k database vectors of highest cosine similarity to each query, (q, k)."""
    queries, database = unit(check_points(queries, "queries")), unit(check_points(database, "database"))
    check_count(k, "k", 1, len(database), "the number of database vectors")
    found = torch.empty(len(queries), k, dtype=torch.long, device=queries.device)
    for rows in row_batches(len(queries), batch_size):
        found[rows] = (queries[rows] @ database.T).topk(k, dim=1).indices
    return found


def overlap_recall(found: Tensor, truth: Tensor) -> float:
    """Mean fraction of each query's true k nearest neighbours that were found (recall@k)."""
    hits = (found[:, :, None] == truth[:, None, :]).any(1).float().sum(1)
    return (hits / truth.shape[1]).mean().item()
