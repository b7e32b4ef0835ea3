"""The student as a serving program: ``(KeyedJaggedTensor, dense) -> click probability``.

Why TorchScript (``torchrec.fx.symbolic_trace`` then ``torch.jit.script``) and not
``torch.export``: it is the route TorchRec's own inference stack takes
(``torchrec.inference.modules.quantize_inference_model`` -> trace -> script, the program its
C++ predictor loads), the scripted graph takes any batch size and any history lengths, and
the int8 tables (``QuantEmbeddingBagCollection`` over fbgemm's int8 TBE) script the same way.
``torch.export`` of a KJT input bakes the batch and every jagged length into the program unless
each is declared dynamic, and TorchRec routes ``KJT.to_dict`` through a non-strict path it warns
is "extremely slow" there. The loaded program needs ``torch`` and ``torchrec`` (its KJT class
and fbgemm's operators), nothing of this package.

The program returns probabilities, not logits: that is what a server hands out, and it equals
``sigmoid`` of the in-training student's logits bit for bit (the same modules, in eval mode; the
training-only dropout is left out, it is the identity in eval mode).
"""

import copy  # no ``from __future__ import annotations``: TorchScript reads forward's annotations as types

import torch
from torch import nn
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from recsys_committee.errors import UserError


class ExportError(UserError):
    """The model cannot be exported (not a student, or its program does not script)."""


class ServingStudent(nn.Module):
    """The student's modules with a KJT + dense signature (TorchRec inference's input).

    ``dense`` is accepted and unused: the student reads only sparse features, and keeping it in
    the signature means a server's request shape does not change with the model."""

    def __init__(self, student: nn.Module):
        super().__init__()
        missing = [name for name in ("embeddings", "cross", "mlp", "head") if not hasattr(student, name)]
        if missing or not hasattr(student.embeddings, "ebc"):
            raise ExportError(f"export serves the student (embeddings -> cross -> MLP -> head); {type(student).__name__} is not one "
                              f"(it lacks {', '.join(missing) or 'embeddings.ebc'})")
        self.features: list[str] = list(student.embeddings.features)
        self.ebc = copy.deepcopy(student.embeddings.ebc)
        self.cross = copy.deepcopy(student.cross)
        self.mlp = copy.deepcopy(student.mlp)
        self.head = copy.deepcopy(student.head)
        self.eval()

    def forward(self, features: KeyedJaggedTensor, dense: torch.Tensor) -> torch.Tensor:
        pooled = self.ebc(features).to_dict()
        h0 = torch.cat([pooled[name] for name in self.features], dim=1)  # the student's feature order
        return torch.sigmoid(self.head(self.mlp(self.cross(h0))).squeeze(-1))


def quantize_int8(program: ServingStudent) -> nn.Module:
    """Embedding tables to int8 rows (fbgemm's row-wise scale/bias) with TorchRec's own
    ``quantize_inference_model``; the dense layers stay fp32 (a few hundred KiB: int8 there would
    save little memory and cost accuracy and per-call requantisation at batch 1)."""
    from torchrec.inference.modules import quantize_inference_model

    return quantize_inference_model(copy.deepcopy(program)).eval()


def script(program: nn.Module) -> torch.jit.ScriptModule:
    """TorchRec's trace (it knows KJT) then TorchScript."""
    from torchrec.fx import symbolic_trace

    try:
        return torch.jit.script(symbolic_trace(program))
    except Exception as exc:  # a model change that TorchScript cannot take: say which
        raise ExportError(f"the student does not script to TorchScript: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}") from exc
