"""Recommendation models; importing this package registers them all."""

from recsys_committee.models import experts, student  # noqa: F401  (registration side effect)
from recsys_committee.models.lm import teacher as lm_teacher  # noqa: F401  (registration side effect)
from recsys_committee.models.registry import MODELS, build_model, count_params, register_model

__all__ = ["MODELS", "build_model", "count_params", "register_model"]
