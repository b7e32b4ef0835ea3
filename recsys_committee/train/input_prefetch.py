"""Start the next batch's sparse input distribution while this step computes.

Why: under DMP every sharded embedding lookup first sends each rank's ids to the ranks that own
the tables (TorchRec's input distribution: a splits all-to-all, then the lengths/values
all-to-all). Run inline, each step waits for both round trips before its lookups. TorchRec's
``TrainPipelineSparseDist`` hides them by issuing batch i+1's input distribution during step i;
it owns the loop and finds the sharded modules' inputs by fx-tracing the model, while our loop
keeps its own checks, schedule, checkpoints and the committee's routed sub-batches. This module
does the same overlap for the modules whose input is a known function of the whole batch (the
student's ``PooledEmbeddings``): the order of calls is TorchRec's (splits for i+1 before the
forward of i, the values all-to-all launched after it, so it overlaps the backward), the
numbers are unchanged (the same operations on the same ids), and any other call of the module
(evaluation, a routed sub-batch) runs its ordinary forward.

Every rank calls ``start`` / ``launch`` at the same points of the loop, so the collectives are
issued in the same order everywhere (gloo and nccl match them by order).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

from torch import nn

KjtOf = Callable[[Any], Any]  # batch -> the KeyedJaggedTensor the module is called with


@dataclass
class _InFlight:
    features: Any  # the KJT object the forward will be called with (matched by identity)
    context: Any  # the sharded module's context for this input
    awaitable: Any  # splits stage: Awaitable[Awaitable[KJTList]]; values stage: Awaitable[KJTList]


class _Target:
    """One sharded module: its original forward, and the inputs in flight for it."""

    def __init__(self, module: nn.Module, kjt_of: KjtOf):
        self.module, self.kjt_of = module, kjt_of
        self.original = module.forward
        self.starting: Optional[_InFlight] = None  # splits all-to-all issued
        self.ready: Optional[_InFlight] = None  # values all-to-all issued
        self.served = 0  # forwards that used an input distributed ahead
        module.forward = self.forward  # instance attribute: nn.Module.__call__ calls self.forward

    def forward(self, *inputs: Any, **kwargs: Any) -> Any:
        ready = self.ready
        if ready is not None and len(inputs) == 1 and not kwargs and inputs[0] is ready.features:
            self.ready = None
            self.served += 1
            return self.module.compute_and_output_dist(ready.context, ready.awaitable.wait())
        return self.original(*inputs, **kwargs)

    def start(self, batch: Any) -> None:
        features = self.kjt_of(batch)
        context = self.module.create_context()
        self.starting = _InFlight(features, context, self.module.input_dist(context, features))

    def launch(self) -> None:
        if self.starting is not None:
            s, self.starting = self.starting, None
            self.ready = _InFlight(s.features, s.context, s.awaitable.wait())

    def restore(self) -> None:
        self.starting = self.ready = None
        self.module.__dict__.pop("forward", None)  # drop the instance attribute: the class's forward shows again


class InputDistPrefetch:
    """``start(next_batch)`` before this step's forward, ``launch()`` after it; ``close()``
    gives the modules their own forward back (the evaluation and export see plain modules)."""

    def __init__(self, targets: list[tuple[nn.Module, KjtOf]]):
        self.targets = [_Target(module, kjt_of) for module, kjt_of in targets]

    def __bool__(self) -> bool:
        return bool(self.targets)

    @property
    def served(self) -> int:
        """Steps whose forward used the input distributed ahead (the first module's count)."""
        return self.targets[0].served if self.targets else 0

    def start(self, batch: Any) -> None:
        for t in self.targets:
            t.start(batch)

    def launch(self) -> None:
        for t in self.targets:
            t.launch()

    def close(self) -> None:
        for t in self.targets:
            t.restore()
