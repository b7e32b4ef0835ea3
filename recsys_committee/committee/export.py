"""Export: the bare student, with nothing of the distillation module left (docs/METHOD.md "Export").

Why a deep copy in eval mode: the deployable model must carry zero inference overhead and no
key of the QA module, gate or loss projectors, and it must not change if training of the
committee goes on after the export; its outputs equal the in-training student's (eval mode)
bit for bit because it is the same module with the same tensors.
"""

from __future__ import annotations

import copy

from torch import nn

from recsys_committee.committee.committee import Committee


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def export_student(committee: Committee) -> nn.Module:
    """A detached copy of ``committee.student`` in eval mode."""
    student = copy.deepcopy(committee.student)
    student.eval()
    if student._forward_hooks or student._forward_pre_hooks:  # the core never hooks the student
        raise RuntimeError("the student carries forward hooks; refusing to export them with it")
    return student
