"""Custom actions and tools of the Acme Cloud reference assistant.

Importing this package runs the ``@action`` decorators of its modules, which registers
``kb_search``, ``crm_lookup`` and ``create_ticket`` with the taiwa action registry.
"""

from __future__ import annotations

from . import crm, kb_search, tickets

__all__ = ["crm", "kb_search", "tickets"]
