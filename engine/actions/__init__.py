"""Custom actions and tools: the decorator that registers them and their context."""

from __future__ import annotations

from engine.actions.registry import (
    ActionContext,
    ActionSpec,
    action,
    discover_actions,
    registered_actions,
)

__all__ = ["ActionContext", "ActionSpec", "action", "discover_actions", "registered_actions"]
