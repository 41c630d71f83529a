"""Clustering and search against scikit-learn and faiss: the benchmark lives with its module."""

from fromscratch.cluster.benchmark import run

__all__ = ["run"]
