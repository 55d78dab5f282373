"""One small typed registry for backbones, pretraining methods and tasks.

It lives in ``core`` (stdlib only), so every layer registers into it. A registry is filled by importing the
modules that register (``pretraining`` fills ``BACKBONES`` and ``METHODS``, ``tasks`` fills ``TASKS``); nothing
here imports them. The harness reads the registries through ``harness.registries``, which imports both
packages explicitly, so ``cpcbench --help`` (which does not import it) stays free of torch.

    BACKBONES = Registry[Callable[..., nn.Module]]("backbone")

    @BACKBONES.register("vit_tiny")
    def vit_tiny(**kw): ...

    BACKBONES.get("vit_tny")   # KeyError: unknown backbone 'vit_tny'. Did you mean: vit_tiny? Available: ...
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from core.errors import CpcbenchError

T = TypeVar("T")


class UnknownNameError(CpcbenchError, KeyError):
    """An unknown registry key; the message names close matches and what is available."""

    def __str__(self) -> str:  # KeyError quotes its message; print it plainly
        return str(self.args[0]) if self.args else ""


class Registry(Generic[T]):
    """A name -> object mapping filled by decorators. Duplicates raise; unknown names suggest matches."""

    def __init__(self, kind: str, base_cls: type | None = None) -> None:
        self.kind = kind
        self.base_cls = base_cls
        self._items: dict[str, T] = {}

    # --- filling -------------------------------------------------------------------------------
    def register(self, *names: str, obj: T | None = None) -> Callable[[T], T]:
        """Register ``obj`` (or the decorated object) under every name in ``names``."""
        if not names:
            raise ValueError(f"register() of a {self.kind} needs at least one name")

        def add(o: T) -> T:
            if self.base_cls is not None and not (isinstance(o, type) and issubclass(o, self.base_cls)):
                raise TypeError(f"{self.kind} {names[0]!r} must be a subclass of {self.base_cls.__name__}, got {o!r}")
            for name in names:
                if name in self._items:
                    raise ValueError(f"duplicate {self.kind} name {name!r}: already registered")
                self._items[name] = o
            return o

        if obj is not None:
            add(obj)
            return lambda o: o
        return add

    # --- reading -------------------------------------------------------------------------------
    def get(self, name: str) -> T:
        if name in self._items:
            return self._items[name]
        raise UnknownNameError(self.unknown_message(name))

    def unknown_message(self, name: str) -> str:
        names = self.names()
        close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        if not names:  # a bug, not a user error: the caller read the registry before importing what fills it
            return (f"unknown {self.kind} {name!r}: no {self.kind} is registered yet (import the package that "
                    "registers them first; harness.registries imports them all)")
        return f"unknown {self.kind} {name!r}.{hint} Available: {', '.join(names)}"

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    def items(self) -> list[tuple[str, T]]:
        return [(n, self.get(n)) for n in self.names()]


# The three registries of the project, filled by importing the package that registers into each (whose __init__
# imports the modules that register): `pretraining` for BACKBONES and METHODS, `tasks` for TASKS.
# `harness.registries` imports both; read the registries through it.
BACKBONES: Registry = Registry("backbone")
METHODS: Registry = Registry("pretraining method")
TASKS: Registry = Registry("task")
