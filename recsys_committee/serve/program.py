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

The program returns probabilities, not logits: that is what a server hands out. They equal
``sigmoid`` of the in-training student's logits within ~1e-7 with fp32 tables (the same weights;
the fused lookup sums a bag in another order; the training-only dropout is left out, it is the
identity in eval mode), and within ~1e-3 with int8 tables.
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

    ``dense`` is the standardised dense vector (``score`` and the data path standardise it with
    the train split's mean and std, which travel in ``features.json``); a student built with
    ``inputs: basic`` ignores it, so a server's request shape does not change with the model."""

    def __init__(self, student: nn.Module):
        super().__init__()
        missing = [name for name in ("embeddings", "cross", "mlp", "head") if not hasattr(student, name)]
        if missing or not hasattr(student.embeddings, "ebc"):
            raise ExportError(f"export serves the student (embeddings -> cross -> MLP -> head); {type(student).__name__} is not one "
                              f"(it lacks {', '.join(missing) or 'embeddings.ebc'})")
        self.features: list[str] = list(student.embeddings.features)
        self.ebc = copy.deepcopy(student.embeddings.ebc)
        # The EBC returns its pooled features table by table; the student stacks them in its own
        # order. When the two agree (the usual case) the EBC's concatenated output IS h0, and
        # splitting it into a per-feature dict to concatenate it again is skipped.
        ebc_order = [f for config in self.ebc.embedding_bag_configs() for f in config.feature_names]
        self.ebc_order_is_student_order: bool = ebc_order == self.features
        bottom = getattr(student, "bottom", None)
        self.reads_dense: bool = bottom is not None and bottom.out_dim > 0
        self.num_dense: int = int(bottom.num_dense) if self.reads_dense else 0
        self.bottom = copy.deepcopy(bottom.mlp) if self.reads_dense else nn.Identity()
        self.cross = copy.deepcopy(student.cross)
        self.mlp = copy.deepcopy(student.mlp)
        self.head = copy.deepcopy(student.head)
        self.eval()

    def forward(self, features: KeyedJaggedTensor, dense: torch.Tensor) -> torch.Tensor:
        if self.ebc_order_is_student_order:
            h0 = self.ebc(features).values()
        else:
            pooled = self.ebc(features).to_dict()
            h0 = torch.cat([pooled[name] for name in self.features], dim=1)  # the student's feature order
        if self.reads_dense:
            h0 = torch.cat([h0, self.bottom(dense)], dim=1)
        return torch.sigmoid(self.head(self.mlp(self.cross(h0))).squeeze(-1))


class LookupBySize(nn.Module):
    """Two scripted programs of the same student, one chosen per call by the batch's row count:
    ``small`` (the fused inference lookup) up to ``max_small_batch`` rows, ``large`` (the per-table
    training lookup) above. Why: on CPU fbgemm's one fused table-batched lookup halves the batch-1
    latency, while at thousands of rows the per-table ``EmbeddingBag`` calls are faster per row; a
    server should not have to pick. Both are the same weights (outputs within ~1e-7 of each other);
    the dense layers are held once per program (about 2 MB more for the ML-100K student)."""

    def __init__(self, small: torch.jit.ScriptModule, large: torch.jit.ScriptModule, max_small_batch: int):
        super().__init__()
        self.small = small
        self.large = large
        self.max_small_batch: int = int(max_small_batch)

    def forward(self, features: KeyedJaggedTensor, dense: torch.Tensor) -> torch.Tensor:
        if features.stride() <= self.max_small_batch:
            return self.small(features, dense)
        return self.large(features, dense)


TABLE_DTYPES = {"none": torch.float32, "int8": torch.int8}


def inference_tables(program: ServingStudent, quantize: str = "none") -> nn.Module:
    """The embedding tables swapped for TorchRec's inference EBC (``quantize_inference_model``):
    all tables in ONE fused fbgemm table-batched lookup instead of one ``EmbeddingBag`` call per
    table after a per-key split of the KJT. ``none`` keeps fp32 rows (outputs within ~1e-7 of
    the training EBC: the same sums in another order); ``int8`` stores each row as int8 with an
    fp16 scale and bias (~2.7x smaller tables at dimension 32). The dense layers stay fp32 in
    both: dynamic int8 there would cost accuracy and per-call requantisation at batch 1.
    Measured on the ML-100K student (one thread): faster up to ~10 rows a call (batch 1:
    ~0.26 against ~0.39 ms), but about half the per-table ``EmbeddingBag``'s rows/s from a
    hundred rows on, so the default fp32 artifact holds both and picks by batch size
    (``LookupBySize``)."""
    from torchrec.inference.modules import quantize_inference_model

    dtype = TABLE_DTYPES[quantize]
    return quantize_inference_model(copy.deepcopy(program), quantization_dtype=dtype, output_dtype=torch.float32).eval()


def script_by_size(eager: ServingStudent, max_small_batch: int) -> torch.jit.ScriptModule:
    """The default fp32 program: the fused lookup for batches up to ``max_small_batch`` rows, the
    per-table one above (``LookupBySize``)."""
    small, large = script(inference_tables(eager, "none")), script(eager)
    try:
        return torch.jit.script(LookupBySize(small, large, max_small_batch))
    except Exception as exc:
        raise ExportError(f"the by-batch-size program does not script to TorchScript: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}") from exc


def script(program: nn.Module) -> torch.jit.ScriptModule:
    """TorchRec's trace (it knows KJT) then TorchScript."""
    from torchrec.fx import symbolic_trace

    try:
        return torch.jit.script(symbolic_trace(copy.deepcopy(program)))  # a trace leaves state on the modules it ran
    except Exception as exc:  # a model change that TorchScript cannot take: say which
        raise ExportError(f"the student does not script to TorchScript: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}") from exc
