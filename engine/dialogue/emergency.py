"""Emergency switches that change while the assistant runs: edit ``policies/``, no restart.

``emergency:`` in ``policies/`` (SAFE_MODE, a tool off, STRICT_POLICY) is what an operator
flips during an incident. :class:`EmergencyWatch` looks at the files of ``policies/`` at
most once per ``interval`` (a ``stat`` per file) and, when one changed, loads the project
again on a background thread, so the event loop never waits for the YAML. A project that
loads cleanly replaces the switches for the next turn; one with errors leaves them as they
were and logs each error with its ``file:line``. Only the ``emergency`` block is applied
live: other edits (thresholds, rules) take effect at the next restart, and the log says so.

Every server worker and every instance that reads the same files picks the change up within
``interval`` seconds of the write plus the load (a ConfigMap or a deploy of the files is
enough).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from engine.dialogue.executor import Switches
from engine.loading.project import Project, load_project, project_files
from engine.policies.config import EmergencyConfig

log = logging.getLogger("taiwa.emergency")

CHECK_INTERVAL = 1.0
"""Seconds between two looks at the files of ``policies/``."""

Stamp = tuple[tuple[str, int, int], ...]


def _stamp(root: Path) -> Stamp:
    """Name, modification time and size of every file of ``policies/`` (a change in any)."""
    out: list[tuple[str, int, int]] = []
    for path in project_files(root, "policies"):
        try:
            st = path.stat()
        except OSError:
            continue  # removed between the listing and the stat: the next look sees it
        out.append((str(path), st.st_mtime_ns, st.st_size))
    return tuple(out)


def _tools_off(config: EmergencyConfig) -> frozenset[str]:
    return frozenset(name for name, on in config.tools.items() if on is False)


def describe(config: EmergencyConfig) -> str:
    """One line for the log: ``safe_mode=on strict_policy=off tools_off=crm_lookup``."""
    off = ",".join(sorted(_tools_off(config))) or "none"
    return (
        f"safe_mode={'on' if config.safe_mode else 'off'} "
        f"strict_policy={'on' if config.strict_policy else 'off'} tools_off={off}"
    )


class EmergencyWatch:
    """The current emergency switches of ``project``, re-read when ``policies/`` changes.

    ``tools_off``: tools switched off from outside the files (``TAIWA_TOOLS_OFF``); they stay
    off whatever the files say.
    """

    def __init__(
        self,
        project: Project,
        *,
        tools_off: Iterable[str] = (),
        interval: float = CHECK_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._root = project.root
        self._env_off = frozenset(tools_off)
        self._interval = interval
        self._clock = clock
        self._in_force = self._build(project.policies.emergency)
        """The emergency block and the switches built from it, swapped together."""
        self._stamp = _stamp(self._root)
        self._next_look = clock() + interval
        self._stopped: asyncio.Event | None = None
        self._loading = threading.Lock()
        self.reloads = 0
        """Changes of ``policies/`` applied so far."""
        self.rejected = 0
        """Changes of ``policies/`` left unapplied because the project had errors."""

    def current(self) -> EmergencyConfig:
        """The emergency block in force (looks at the files when ``interval`` has passed)."""
        self._look()
        return self._in_force[0]

    def switches(self) -> Switches:
        """The switches for the next turn (see :class:`~engine.dialogue.executor.Switches`)."""
        self._look()
        return self._in_force[1]

    async def keep_watching(self) -> None:
        """Look at the files every ``interval`` until :meth:`stop` (a server runs this, so a
        worker that serves no turn for a while still has the current switches at its next one)."""
        self._stopped = asyncio.Event()
        while not self._stopped.is_set():
            self._look()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopped.wait(), self._interval)

    def stop(self) -> None:
        """End :meth:`keep_watching` (at shutdown: a task that ends is not one cancelled)."""
        if self._stopped is not None:
            self._stopped.set()

    def _build(self, config: EmergencyConfig) -> tuple[EmergencyConfig, Switches]:
        return config, Switches(self._env_off | _tools_off(config), config.strict_policy, config)

    def _look(self) -> None:
        now = self._clock()
        if now < self._next_look:
            return
        self._next_look = now + self._interval
        stamp = _stamp(self._root)
        if stamp == self._stamp or not self._loading.acquire(blocking=False):
            return
        threading.Thread(target=self._reload, args=(stamp,), name="taiwa-emergency", daemon=True).start()

    def _reload(self, stamp: Stamp) -> None:
        """Load the project again (on its own thread); apply its emergency block if it is clean."""
        try:
            result = load_project(self._root, import_actions=False)
            if result.project is None:
                self.rejected += 1
                errors = [d.format() for d in result.diagnostics if d.severity == "error"]
                log.error(
                    "policies/ changed but the project has %d error(s); the emergency switches stay as they "
                    "were (%s). Fix: correct the files (`taiwa validate` lists the errors):\n%s",
                    len(errors),
                    describe(self._in_force[0]),
                    "\n".join(errors[:5]),
                )
            else:
                before, after = self._in_force[0], result.project.policies.emergency
                self._in_force = self._build(after)
                self.reloads += 1
                log.warning(
                    "emergency switches reloaded from policies/: %s (were %s); other changes to the project "
                    "take effect at the next restart (process %d)",
                    describe(after),
                    describe(before),
                    os.getpid(),
                )
        except Exception:  # a bug here must not stop the switches from being read again
            log.exception("reading policies/ again failed; the emergency switches stay as they were")
        finally:
            # Taken as seen even when rejected: the same broken files are not loaded every second.
            self._stamp = stamp
            self._loading.release()
