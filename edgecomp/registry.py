"""A name -> entry registry with a decorator and a helpful lookup error."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from edgecomp.errors import ConfigError, EdgecompError

T = TypeVar("T")


class Registry(Generic[T]):
    """Entries keyed by name. ``get`` raises ``error_cls`` with a "did you mean" hint on a miss."""

    def __init__(self, kind: str, error_cls: type[EdgecompError] = ConfigError):
        self.kind = kind
        self.error_cls = error_cls
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def add(entry: T) -> T:
            self.add(name, entry)
            return entry

        return add

    def add(self, name: str, entry: T) -> None:
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._entries[name] = entry

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            close = difflib.get_close_matches(name, self._entries, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise self.error_cls(f"unknown {self.kind} {name!r}",
                                 hint=f"{hint}known: {', '.join(sorted(self._entries))}") from None

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._entries))

    def items(self) -> list[tuple[str, T]]:
        return sorted(self._entries.items())
