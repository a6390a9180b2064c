"""Name -> thing lookups (attacks, defense families, architectures, dataset kinds, ...), one way.

Every registry answers an unknown name with the same one-line message, ``unknown <kind> 'y';
known: a, b, c``, raised as the error type the registry's layer uses (ConfigError for config
names, KeyError where a caller may catch it), so a user never meets a bare KeyError traceback.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


def unknown(kind: str, name: object, known: Iterable[str], context: str = "") -> str:
    """The one message for a name that is not registered."""
    text = f"unknown {kind} {name!r}; known: {', '.join(sorted(known))}"
    return f"{context}: {text}" if context else text


class Registry(Generic[T]):
    """An ordered name -> thing table with duplicate and unknown-name checks."""

    def __init__(self, kind: str, error: type[Exception] = KeyError, items: dict[str, T] | None = None):
        self.kind, self.error = kind, error
        self._items: dict[str, T] = {}
        for name, thing in (items or {}).items():
            self.add(name, thing)

    def add(self, name: str, thing: T) -> T:
        if name in self._items:
            raise ValueError(f"{self.kind} {name!r} registered twice")
        self._items[name] = thing
        return thing

    def lookup(self, name: str, context: str = "") -> T:
        """The thing registered as ``name``; else ``error`` with :func:`unknown`'s message."""
        try:
            return self._items[name]
        except (KeyError, TypeError):  # TypeError: an unhashable name from a malformed config
            raise self.error(unknown(self.kind, name, self._items, context)) from None

    def __contains__(self, name: object) -> bool:
        try:
            return name in self._items
        except TypeError:
            return False

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def names(self) -> list[str]:
        return list(self._items)

    def items(self):
        return self._items.items()

    def as_dict(self) -> dict[str, T]:
        return dict(self._items)
