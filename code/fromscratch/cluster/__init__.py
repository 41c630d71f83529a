"""Clustering and nearest-neighbour search in torch, batched: mean shift, k-means, DBSCAN, LSH, PQ."""

from fromscratch.cluster.dbscan import dbscan
from fromscratch.cluster.kmeans import assign, kmeans, kmeans_plus_plus, row_minimum
from fromscratch.cluster.meanshift import (
    course_blobs,
    knn_mean_shift,
    landmark_mean_shift,
    mean_shift,
)

__all__ = ["assign", "course_blobs", "dbscan", "kmeans", "kmeans_plus_plus", "knn_mean_shift",
           "landmark_mean_shift", "mean_shift", "row_minimum"]
