from recsys_committee.metrics.binary import auc, binary_metrics, gauc, logloss, normalized_entropy

__all__ = ["auc", "binary_metrics", "gauc", "logloss", "normalized_entropy"]
