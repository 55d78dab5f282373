"""One small typed registry for backbones, pretraining methods and tasks.

This module imports nothing but the standard library (and the stdlib-only ``core.errors``), so every
layer (``pretraining``, ``tasks``) may register into it without pulling in the rest of ``harness``: these two
are the only ``harness`` modules that lower layers import.

    BACKBONES = Registry[Callable[..., nn.Module]]("backbone")

    @BACKBONES.register("vit_tiny")
    def vit_tiny(**kw): ...

    BACKBONES.get("vit_tny")   # KeyError: unknown backbone 'vit_tny'. Did you mean: vit_tiny? Available: ...

Lazy entries (``register_lazy("name", "package.module:attr")``) are imported on first ``get``, so listing
names never imports torch.
"""

from __future__ import annotations

import difflib
import importlib
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

    def __init__(self, kind: str, base_cls: type | None = None, loader: str | None = None) -> None:
        self.kind = kind
        self.base_cls = base_cls
        self._items: dict[str, T] = {}
        self._lazy: dict[str, str] = {}
        self._loader = loader  # a module whose import fills this registry
        self._loaded = loader is None

    # --- filling -------------------------------------------------------------------------------
    def register(self, *names: str, obj: T | None = None) -> Callable[[T], T]:
        """Register ``obj`` (or the decorated object) under every name in ``names``."""
        if not names:
            raise ValueError(f"register() of a {self.kind} needs at least one name")

        def add(o: T) -> T:
            if self.base_cls is not None and not (isinstance(o, type) and issubclass(o, self.base_cls)):
                raise TypeError(f"{self.kind} {names[0]!r} must be a subclass of {self.base_cls.__name__}, got {o!r}")
            for name in names:
                if name in self._items or name in self._lazy:
                    raise ValueError(f"duplicate {self.kind} name {name!r}: already registered")
                self._items[name] = o
            return o

        if obj is not None:
            add(obj)
            return lambda o: o
        return add

    def register_lazy(self, name: str, target: str) -> None:
        """Register ``"package.module:attr"``, imported on first ``get``."""
        if name in self._items or name in self._lazy:
            raise ValueError(f"duplicate {self.kind} name {name!r}: already registered")
        if ":" not in target:
            raise ValueError(f"lazy target must look like 'package.module:attr', got {target!r}")
        self._lazy[name] = target

    # --- reading -------------------------------------------------------------------------------
    def _ensure_loaded(self) -> None:
        if not self._loaded:
            self._loaded = True
            importlib.import_module(self._loader)  # type: ignore[arg-type]

    def get(self, name: str) -> T:
        self._ensure_loaded()
        if name in self._items:
            return self._items[name]
        if name in self._lazy:
            module, _, attr = self._lazy.pop(name).partition(":")
            self._items[name] = getattr(importlib.import_module(module), attr)
            return self._items[name]
        raise UnknownNameError(self.unknown_message(name))

    def unknown_message(self, name: str) -> str:
        names = self.names()
        close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        return f"unknown {self.kind} {name!r}.{hint} Available: {', '.join(names) or '(none)'}"

    def names(self) -> list[str]:
        self._ensure_loaded()
        return sorted({*self._items, *self._lazy})

    def __contains__(self, name: object) -> bool:
        self._ensure_loaded()
        return name in self._items or name in self._lazy

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    def items(self) -> list[tuple[str, T]]:
        return [(n, self.get(n)) for n in self.names()]


# The three registries of the project. Each is filled by importing its package (whose __init__ imports the
# modules that register), which happens on first use, so `cpcbench --help` imports none of them.
BACKBONES: Registry = Registry("backbone", loader="pretraining")
METHODS: Registry = Registry("pretraining method", loader="pretraining")
TASKS: Registry = Registry("task", loader="tasks")
