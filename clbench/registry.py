"""Named registries with decorators and "did you mean" hints.

    >>> from clbench.registry import Registry
    >>> MODELS = Registry("model")
    >>> @MODELS.register("mlp", description="784-400-400-10 style MLP")
    ... def build_mlp(input_shape, n_classes): ...
    >>> MODELS.get("mlp").description
    '784-400-400-10 style MLP'
    >>> MODELS.get("mpl")
    Traceback (most recent call last):
    clbench.errors.ClbenchError: unknown model 'mpl'; did you mean 'mlp'?

A registry may be given a ``loader``: a function called once, on the first lookup (``get``,
``in``, iteration, ``names``), that imports the modules whose decorators fill it. The strategy
registry loads its built-in methods and the ``clbench.strategies`` entry points that way.
"""
from __future__ import annotations

import difflib
import fnmatch
from dataclasses import dataclass, field
from typing import Any, Callable, Generic, Iterator, TypeVar

from clbench.errors import ClbenchError

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    """One registered object with its one-line description and free-form metadata."""

    name: str
    obj: T
    description: str
    meta: dict[str, Any] = field(default_factory=dict)


class Registry(Generic[T]):
    """A mapping from names to registered objects of one kind (stream, model, ...)."""

    def __init__(self, kind: str, loader: Callable[[], None] | None = None) -> None:
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}
        self._loader = loader

    def _load(self) -> None:
        """Run the loader once (before it runs, so registrations made while loading land)."""
        if self._loader is not None:
            loader, self._loader = self._loader, None
            loader()

    def register(self, name: str, *, description: str, **meta: Any) -> Callable[[T], T]:
        """Decorator registering ``obj`` under ``name``; a duplicate name is an error."""

        def deco(obj: T) -> T:
            self.add(name, obj, description=description, **meta)
            return obj

        return deco

    def add(self, name: str, obj: T, *, description: str, **meta: Any) -> None:
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._entries[name] = Entry(name, obj, description, dict(meta))

    def get(self, name: str) -> Entry[T]:
        """The entry for ``name``; an unknown name raises with the closest known names."""
        self._load()
        try:
            return self._entries[name]
        except KeyError:
            raise ClbenchError(unknown_name_message(self.kind, name, self._entries)) from None

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._entries

    def __iter__(self) -> Iterator[Entry[T]]:
        self._load()
        return iter(sorted(self._entries.values(), key=lambda e: e.name))

    def __len__(self) -> int:
        self._load()
        return len(self._entries)

    def names(self, pattern: str = "*") -> list[str]:
        """Registered names matching a shell-style wildcard, sorted."""
        self._load()
        return sorted(n for n in self._entries if fnmatch.fnmatch(n, pattern))


def unknown_name_message(kind: str, name: str, known: Any) -> str:
    """``unknown <kind> 'x'; did you mean 'y'?`` (or the list of known names)."""
    known = sorted(known)
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    if close:
        hint = "did you mean " + " or ".join(repr(c) for c in close) + "?"
    else:
        hint = "known: " + ", ".join(known) if known else "none registered"
    return f"unknown {kind} {name!r}; {hint}"
