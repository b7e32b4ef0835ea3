"""Name -> factory registries (teachers, losses, gates, models).

Why: adding a teacher, loss or model should be one decorated function plus one YAML entry,
and a typo in a config should fail loudly with the close matches (as timm and torchdistill do)
instead of silently falling back to a default.
"""

from __future__ import annotations

from recsys_committee.errors import UserError

import difflib
import inspect
from typing import Any, Callable, Generic, TypeVar

T = TypeVar("T", bound=Callable[..., Any])


class UnknownNameError(UserError, KeyError):
    """A config named something no registry entry answers to."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0])


class Registry(Generic[T]):
    """A decorator plus a dict: ``@REG.register("name")`` and ``REG.get("name")``."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(fn: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            self._entries[name] = fn
            return fn

        return decorator

    def get(self, name: str) -> T:
        if name not in self._entries:
            close = difflib.get_close_matches(name, list(self._entries), n=3, cutoff=0.5)
            hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise UnknownNameError(
                f"unknown {self.kind} '{name}'.{hint} Registered {self.kind}s: {', '.join(self.names())}"
            )
        return self._entries[name]

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def build(self, name: str, /, *args: Any, **kwargs: Any) -> Any:
        """Call the entry, rejecting keyword arguments its signature does not take."""
        fn = self.get(name)
        check_kwargs(fn, kwargs, where=f"{self.kind} '{name}'")
        return fn(*args, **kwargs)


def check_kwargs(fn: Callable[..., Any], kwargs: dict[str, Any], where: str) -> None:
    """Raise a readable error for keyword arguments ``fn`` does not accept."""
    params = inspect.signature(fn).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    accepted = [n for n, p in params.items() if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]
    for key in kwargs:
        if key not in accepted:
            close = difflib.get_close_matches(key, accepted, n=3, cutoff=0.5)
            hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise UnknownNameError(f"unknown parameter '{key}' for {where}.{hint} Accepted: {', '.join(accepted)}")
