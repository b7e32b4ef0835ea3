"""The generic committee core: frozen teachers, question/answer, gate, losses, export.

Nothing here knows TorchRec or torchvision: a domain provides a ``Batch``, a student returning
``StudentOutput`` and ``TeacherAdapter`` subclasses (see ``types.py`` and ``teacher.py``).
"""

from recsys_committee.committee.baselines import METHODS, MethodSpec, list_methods, method_spec, register_method
from recsys_committee.committee.committee import Committee, CommitteeStepOutput
from recsys_committee.committee.config import (
    DEFAULT_WEIGHTS,
    CommitteeConfig,
    CommitteeConfigError,
    GateConfig,
    NonFiniteLossError,
    ReenterNotSupportedError,
)
from recsys_committee.committee.export import count_params, export_student
from recsys_committee.committee.gate import GATES, DenseGate, ForwardCounter, Gate, GateDecision, ImportanceGate, list_gates, register_gate
from recsys_committee.committee.losses import (
    LOSSES,
    LossModule,
    LossSpec,
    StepContext,
    TeacherView,
    align_loss,
    kd_loss,
    list_losses,
    register_loss,
    task_loss,
)
from recsys_committee.committee.qa import AnswerAugmenter, AttendAnswer, QAModule, QuestionAugmenter, TeacherInfo
from recsys_committee.committee.taps import TapPathError, append_token, normalize_features, resolve_module, tap_outputs
from recsys_committee.committee.teacher import TEACHERS, PrecomputedTeacher, TeacherAdapter, TeacherContext, build_teacher, list_teachers, register_teacher
from recsys_committee.committee.types import Batch, StudentOutput, TeacherOutput

__all__ = [
    "AnswerAugmenter", "AttendAnswer", "Batch", "Committee", "CommitteeConfig", "CommitteeConfigError",
    "CommitteeStepOutput", "DEFAULT_WEIGHTS", "DenseGate", "ForwardCounter", "GATES", "Gate", "GateConfig",
    "GateDecision", "ImportanceGate", "LOSSES", "LossModule", "LossSpec", "METHODS", "MethodSpec",
    "NonFiniteLossError", "PrecomputedTeacher", "QAModule", "QuestionAugmenter", "ReenterNotSupportedError",
    "StepContext", "StudentOutput", "TEACHERS", "TapPathError", "TeacherAdapter", "TeacherContext", "TeacherInfo", "TeacherOutput",
    "TeacherView", "align_loss", "append_token", "build_teacher", "count_params", "export_student", "kd_loss", "list_gates",
    "list_losses", "list_methods", "list_teachers", "method_spec", "normalize_features", "register_gate",
    "register_loss", "register_method", "register_teacher", "resolve_module", "tap_outputs", "task_loss",
]
