"""Product quantization [Jégou et al. 2011]: compress vectors to M small codes, search by table lookups.

    pq = ProductQuantizer(d=64, M=8, nbits=8).train(x_train)
    codes = pq.encode(x)                     # (n, M) integers in [0, 2^nbits)
    distances, indices = pq.search(queries, codes, k=10)

Each vector is cut into M sub-vectors; each sub-vector is replaced by the index of its nearest
codeword in a codebook of K = 2^nbits entries learnt by k-means on that subspace. A query's
squared distance to a code is a sum of M entries of a (M, K) table of query-to-codeword
distances (asymmetric distance computation: the query itself is not quantized).
"""

from __future__ import annotations

import torch
from torch import Tensor

from fromscratch.cluster._checks import check_count, check_points, row_batches
from fromscratch.cluster.kmeans import assign, kmeans


class ProductQuantizer:
    """M codebooks of 2^nbits codewords, one per block of d/M coordinates."""

    def __init__(self, d: int, M: int, nbits: int = 8) -> None:
        check_count(d, "d")
        check_count(M, "M", 1, d, "the dimension d")
        check_count(nbits, "nbits", 1, 16, "16 bits per sub-vector")
        if d % M:
            raise ValueError(f"M={M} must divide the dimension d={d}; pick M among "
                             f"{[m for m in range(1, d + 1) if d % m == 0]}")
        self.d, self.M, self.nbits = d, M, nbits
        self.K = 2**nbits
        self.codebooks: Tensor | None = None          # (M, K, d/M)

    def split(self, x: Tensor) -> Tensor:
        """(n, d) -> (M, n, d/M): the sub-vectors of every vector, subspace first."""
        x = check_points(x)
        if x.shape[1] != self.d:
            raise ValueError(f"vectors have {x.shape[1]} coordinates, the quantizer was made for {self.d}")
        return x.reshape(len(x), self.M, self.d // self.M).transpose(0, 1)

    def trained_codebooks(self) -> Tensor:
        if self.codebooks is None:
            raise RuntimeError("the quantizer is not trained yet; call .train(x) first")
        return self.codebooks

    def train(self, x: Tensor, iterations: int = 25, seed: int = 0) -> ProductQuantizer:
        """Learn each subspace's codebook with k-means (random initial codewords, as faiss does)."""
        parts = self.split(x)
        check_count(self.K, "2^nbits", 1, parts.shape[1], "the number of training vectors")
        self.codebooks = torch.stack([
            kmeans(part.contiguous(), self.K, iterations=iterations, tol=0.0, init="random",
                   seed=seed + m).centroids
            for m, part in enumerate(parts)])
        return self

    def encode(self, x: Tensor, batch_size: int = 2048) -> Tensor:
        """The index of the nearest codeword of each sub-vector: (n, M), uint8 up to 8 bits, else int32.

        Subspace by subspace, k-means' own assignment step: one product per block of rows gives
        |c|^2/2 - x.c for every codeword, and the row minimum picks the nearest.
        """
        codebooks = self.trained_codebooks()
        parts = self.split(x)                                               # (M, n, d/M)
        dtype = torch.uint8 if self.nbits <= 8 else torch.int32
        codes = torch.empty(parts.shape[1], self.M, dtype=dtype, device=parts.device)
        for m, part in enumerate(parts):
            codes[:, m] = assign(part, codebooks[m], batch_size)[0].to(dtype)
        return codes

    def decode(self, codes: Tensor) -> Tensor:
        """The vectors the codes stand for: codewords side by side, (n, d)."""
        codebooks = self.trained_codebooks()
        codes = codes.long()
        blocks = [codebooks[m][codes[:, m]] for m in range(self.M)]
        return torch.cat(blocks, 1)

    def distance_tables(self, queries: Tensor) -> Tensor:
        """(q, M, K): squared distance from each query's sub-vector m to codeword k of book m."""
        codebooks = self.trained_codebooks()
        parts = self.split(queries)                                        # (M, q, d/M)
        return torch.cdist(parts, codebooks).square_().transpose(0, 1)     # (q, M, K)

    def search(self, queries: Tensor, codes: Tensor, k: int = 10, batch_size: int = 1024
               ) -> tuple[Tensor, Tensor]:
        """The k codes nearest each query by asymmetric distance: (distances, indices), (q, k).

        Distances to a batch of codes are M table lookups added up; the running best k are
        merged batch by batch, so memory is q x batch_size. The tables are laid out (M, K, q):
        a lookup copies one contiguous row of q distances, which is faster than gathering
        columns, and spreads over threads.
        """
        check_count(k, "k", 1, len(codes), "the number of codes")
        tables = self.distance_tables(queries).permute(1, 2, 0).contiguous()   # (M, K, q)
        by_subspace = codes.long().T.contiguous()                              # (M, n)
        n_queries = tables.shape[2]
        best_d = torch.full((n_queries, 0), float("inf"), dtype=tables.dtype, device=tables.device)
        best_i = torch.empty((n_queries, 0), dtype=torch.long, device=tables.device)
        for rows in row_batches(len(codes), batch_size):
            d = tables[0].index_select(0, by_subspace[0, rows])                # (b, q)
            for m in range(1, self.M):
                d.add_(tables[m].index_select(0, by_subspace[m, rows]))
            idx = torch.arange(rows.start, rows.stop, device=codes.device).expand(n_queries, -1)
            best_d, pick = torch.cat([best_d, d.T], 1).topk(
                min(k, best_d.shape[1] + d.shape[0]), dim=1, largest=False, sorted=True)
            best_i = torch.cat([best_i, idx], 1).gather(1, pick)
        return best_d, best_i


def exact_knn(queries: Tensor, database: Tensor, k: int, batch_size: int = 1024) -> Tensor:
    """Indices of the k nearest database vectors of each query (squared L2, exact), (q, k)."""
    from fromscratch.cluster.meanshift import nearest

    queries, database = check_points(queries, "queries"), check_points(database, "database")
    check_count(k, "k", 1, len(database), "the number of database vectors")
    return nearest(queries, database, k, batch_size)


def recall_at(found: Tensor, true_nearest: Tensor, r: int) -> float:
    """Fraction of queries whose true nearest neighbour is among the first `r` found (Jégou's recall@R)."""
    return (found[:, :r] == true_nearest.reshape(-1, 1)).any(1).float().mean().item()
