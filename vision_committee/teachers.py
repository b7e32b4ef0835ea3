"""Vision teachers for the committee core: trained classifiers loaded from ``train`` runs.

Why this file is all the vision side adds to the core: a ``TeacherAdapter`` says how to call
the model (``model(batch).logits``); the features come from a forward hook at ``tap``, a module
path into the model (e.g. ``net.features.17`` inside torchvision's MobileNetV2, or
``stages.2`` of a CNN expert). ``cached: true`` computes the tapped features and logits once
for every image and serves them by ``example_ids`` (the foundation model on CPU: the
recommendation side's LM does the same), through the same keyed, checksummed teacher cache.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Optional

import torch

from recsys_committee.committee.teacher import TeacherAdapter, TeacherContext, register_teacher
from recsys_committee.files import file_sha256
from recsys_committee.train.teacher_cache import LOGITS, open_or_build
from vision_committee.checkpoint import load_vision_model


class VisionModelTeacher(TeacherAdapter):
    def forward_model(self, batch: Any) -> Optional[torch.Tensor]:
        return self.model(batch).logits


@register_teacher("vision_model")
def vision_model_teacher(
    *, name: str, checkpoint: str, tap: str = "stages", always_on: bool = False, cached: bool = False,
    cache_dtype: str = "float16", context: TeacherContext,
) -> TeacherAdapter:
    """A classifier trained by ``python -m vision_committee train`` (its model.safetensors), frozen;
    live, or served from a cache under ``<run>/cache/`` when ``cached``."""
    teacher = VisionModelTeacher(load_vision_model(checkpoint), name=name, tap=tap, always_on=always_on)
    if not cached:
        return teacher
    if context.data is None:
        raise ValueError(f"teacher '{name}': cached: true needs the data set (it is passed by the distill run)")
    images = context.data.all_images()
    if not torch.equal(images.example_ids, torch.arange(len(images))):
        raise ValueError(f"teacher '{name}': example ids must be 0..N-1 to cache by id")

    def compute(rows: torch.Tensor) -> dict[str, torch.Tensor]:
        out = teacher.run(images.batch(rows))
        return {tap: out.features.float(), LOGITS: out.logits.float()}

    # keyed by the teacher file, the tap and the images themselves: another model or slice never reads this cache
    images_digest = hashlib.sha256(images.images.numpy().tobytes()).hexdigest()
    key = {"teacher": file_sha256(Path(checkpoint)), "taps": [tap], "rows": len(images), "images": images_digest, "dtype": cache_dtype}
    cache = open_or_build(Path(checkpoint).parent / "cache" / tap, key, len(images), compute, batch_size=512, shard_rows=16384,
                          progress=context.progress, description=f"{name} cache", meta={"teacher_params": sum(p.numel() for p in teacher.model.parameters())})
    precomputed = cache.teacher(name, tap, always_on=always_on)
    precomputed.teacher_params = sum(p.numel() for p in teacher.model.parameters())
    return precomputed
