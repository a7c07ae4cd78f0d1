"""Component registries with versioned names (spaCy's ``registry`` idea).

``@registry.nlu("classifier.linear.v1")`` registers a factory; a new behaviour gets a new
name (``.v2``), so a saved model always finds the code that made it. Everything is
registered in one place, :mod:`engine.registrations`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from engine.diagnostics import EngineError, closest

F = TypeVar("F", bound=Callable[..., object])


class UnknownComponentError(EngineError, KeyError):
    """A registry name that nothing registered."""

    def __init__(self, kind: str, name: str, available: list[str]) -> None:
        self.kind = kind
        self.name = name
        self.available = available
        hint = closest(name, available)
        did_you_mean = f" Did you mean {hint!r}?" if hint else ""
        super().__init__(f"unknown {kind} {name!r}.{did_you_mean} Available: {', '.join(available)}")

    def __str__(self) -> str:
        return str(self.args[0])


class Registry(Generic[F]):
    """Name -> factory, for one kind of component."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, F] = {}

    def __call__(self, name: str) -> Callable[[F], F]:
        def register(func: F) -> F:
            if name in self._items and self._items[name] is not func:
                raise EngineError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = func
            return func

        return register

    def get(self, name: str) -> F:
        try:
            return self._items[name]
        except KeyError:
            raise UnknownComponentError(self.kind, name, self.names()) from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items
