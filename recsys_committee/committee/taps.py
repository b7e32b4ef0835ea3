"""Read (and, for ``reenter``, extend) a frozen model's intermediate outputs through hooks.

Why hooks: docs/METHOD.md requires "no architectural surgery" on teachers. A teacher is tapped by a
module path from the config (``encoder.layer.3``, ``features.12``), a forward hook records that
module's output, and the hook is removed when the ``with`` block ends, even if the forward
raised, so a teacher is never left carrying our code (torchdistill's pattern).
"""

from __future__ import annotations

from recsys_committee.errors import UserError

import contextlib
import difflib
from collections.abc import Mapping
from typing import Any, Iterator, Sequence

import torch
from torch import nn


class TapPathError(UserError, LookupError):
    """A tap path names no module of the model."""


def resolve_module(model: nn.Module, path: str) -> nn.Module:
    """The submodule at dotted ``path`` (``""`` = the model itself).

    Numeric parts index ``nn.Sequential`` / ``nn.ModuleList`` children, negative ones too
    (``layers.-1`` = the last layer), so a config can name "the last block" without knowing the
    depth. An unknown path raises ``TapPathError`` naming the close valid paths.
    """
    if path == "":
        return model
    module = model
    walked: list[str] = []
    for part in path.split("."):
        child = module._modules.get(part)
        if child is None and _is_int(part) and isinstance(module, (nn.Sequential, nn.ModuleList)):
            index = int(part)
            if -len(module) <= index < len(module):
                child = module[index]
        if child is None:
            raise TapPathError(_path_error(model, path, ".".join(walked), module))
        module = child
        walked.append(part)
    return module


def _is_int(text: str) -> bool:
    return text.lstrip("-").isdigit()


def _path_error(model: nn.Module, path: str, walked: str, stopped_at: nn.Module) -> str:
    valid = [name for name, _ in model.named_modules() if name]
    close = difflib.get_close_matches(path, valid, n=5, cutoff=0.4)
    children = list(stopped_at._modules)
    where = f"'{walked}'" if walked else "the model root"
    msg = f"no module at path '{path}' in {type(model).__name__}; {where} has children {children}."
    if close:
        msg += f" Close valid paths: {', '.join(close)}."
    return msg


@contextlib.contextmanager
def tap_outputs(model: nn.Module, paths: Sequence[str]) -> Iterator[dict[str, Any]]:
    """Record the outputs of the modules at ``paths`` during forwards inside the block.

    Yields a dict that fills as the model runs: ``{path: raw output}`` (a tensor, or whatever the
    module returns, e.g. a tuple for HF layers; see ``normalize_features``). A module called more
    than once per forward keeps its last output. Outputs are not detached: the caller's grad
    mode decides (teachers run under ``no_grad``).
    """
    store: dict[str, Any] = {}
    handles = []
    try:
        for path in dict.fromkeys(paths):  # dedupe, keep order
            module = resolve_module(model, path)
            handles.append(module.register_forward_hook(_recorder(store, path)))
        yield store
    finally:
        for handle in handles:
            handle.remove()


def _recorder(store: dict[str, Any], path: str):
    def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
        store[path] = output

    return hook


@contextlib.contextmanager
def append_token(model: nn.Module, path: str, token: torch.Tensor) -> Iterator[None]:
    """Append ``token`` ([B, d] or [B, 1, d]) to the token output of the module at ``path``.

    Why: the ``reenter`` answer mode feeds the student's question as an extra token at the
    tapped layer and lets the upper frozen layers carry it; a forward hook that returns a new
    output does that without editing the teacher. Works for layers whose output is [B, L, d] or
    a tuple whose first element is (HF). The caller must make sure the upper layers accept one
    more token (e.g. no fixed-length attention mask); adapters that cannot, say so through
    ``TeacherAdapter.supports_reenter``.
    """
    extra = token[:, None] if token.dim() == 2 else token

    def hook(_module: nn.Module, _inputs: Any, output: Any) -> Any:
        first = output[0] if isinstance(output, (tuple, list)) else output
        if first.dim() != 3:
            raise ValueError(f"append_token needs a [B, L, d] output at '{path}', got shape {tuple(first.shape)}")
        grown = torch.cat([first, extra.to(first.dtype)], dim=1)
        if isinstance(output, tuple):
            return (grown, *output[1:])
        if isinstance(output, list):
            return [grown, *output[1:]]
        return grown

    handle = resolve_module(model, path).register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def normalize_features(output: Any) -> torch.Tensor:
    """A tapped output as a vector [B, d] or tokens [B, L, d].

    Why one shape family: the Answer step only needs to know "one vector per sample" vs "a set
    of tokens". Tuples/lists (HF layers) and mappings (HF ModelOutput) give their first element;
    conv maps [B, C, H, W] become H*W tokens of width C.
    """
    if isinstance(output, (tuple, list)):
        if not output:
            raise ValueError("tapped module returned an empty tuple")
        return normalize_features(output[0])
    if isinstance(output, Mapping):
        if not output:
            raise ValueError("tapped module returned an empty mapping")
        return normalize_features(next(iter(output.values())))
    if not isinstance(output, torch.Tensor):
        raise TypeError(f"tapped output must be a tensor (or tuple/mapping of them), got {type(output).__name__}")
    if output.dim() in (2, 3):
        return output
    if output.dim() == 4:
        return output.flatten(2).transpose(1, 2)  # [B, C, H, W] -> [B, H*W, C]
    raise ValueError(f"cannot use a tapped output of shape {tuple(output.shape)} as features: expected 2-D, 3-D or 4-D")
