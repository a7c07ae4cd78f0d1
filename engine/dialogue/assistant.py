"""Put an assistant together from a project folder: project, trained NLU, store, actions.

``await open_assistant(project_dir)`` is what ``taiwa shell`` and ``taiwa run`` call;
tests and embedders can build a :class:`~engine.dialogue.processor.MessageProcessor`
directly instead.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.actions.registry import discover_actions
from engine.actions.remote import remote_runner_from_env
from engine.actions.runner import DEFAULT_THREADS, DispatchingRunner, LocalActionRunner
from engine.dialogue.emergency import EmergencyWatch
from engine.dialogue.processor import MessageProcessor
from engine.loading.project import Project, load_project_or_raise
from engine.nlu.artifact import load_model
from engine.nlu.model import NluModel
from engine.stores import open_store
from engine.stores.base import TrackerStore

STORE_ENV = "TAIWA_TRACKER_STORE"
"""Environment variable with the tracker store URL (``sqlite:///...``, ``redis://...``, ...)."""

ACTION_THREADS_ENV = "TAIWA_ACTION_THREADS"
"""Worker threads for synchronous actions (default 16)."""

TOOLS_OFF_ENV = "TAIWA_TOOLS_OFF"
"""Comma-separated tools switched off for the life of the process (whatever ``policies/`` says);
``emergency.tools`` in ``policies/`` switches tools on and off while it runs."""


def default_store_url(project_root: Path) -> str:
    """The embedded default: one SQLite file under the project's ``.taiwa/``."""
    return f"sqlite:///{(project_root / '.taiwa' / 'tracker.sqlite3').resolve()}"


@dataclass
class Assistant:
    project: Project
    nlu: NluModel
    store: TrackerStore
    processor: MessageProcessor
    store_url: str
    emergency: EmergencyWatch
    """The emergency switches in force, followed in ``policies/`` while it runs."""

    def revisions(self) -> dict[str, str]:
        return loaded_revisions(self.project)

    async def close(self) -> None:
        await self.processor.runner.close()
        if self.processor.llm is not None:
            await self.processor.llm.aclose()
        await self.store.close()


def loaded_revisions(project: Project) -> dict[str, str]:
    """Content hashes of what is loaded: the assistant's files and the LLM system prompt
    (``/version``, and the revisions on every log line)."""
    from engine.llm.prompt import prompt_revision

    return {**project.revisions, "prompt": prompt_revision(project.domain)}


def tools_off_from_env(env: Mapping[str, str] | None = None) -> frozenset[str]:
    raw = (env if env is not None else os.environ).get(TOOLS_OFF_ENV, "")
    return frozenset(t.strip() for t in raw.split(",") if t.strip())


async def open_assistant(
    project_dir: Path | str,
    *,
    model: Path | str | None = None,
    store_url: str | None = None,
    env: Mapping[str, str] | None = None,
    action_config: Mapping[str, Any] | None = None,
    project: Project | None = None,
    nlu: NluModel | None = None,
) -> Assistant:
    """Load the project and its trained model, open the store and the action runners.

    ``project``: the project already loaded from ``project_dir`` (saves loading it twice);
    ``nlu``: the model already loaded from ``model`` (forked server workers share it).

    Raises ProjectError (the project has errors), ModelNotFoundError (not trained yet) and
    StoreConfigError (a bad store URL), each with a fix in its message.
    """
    environ = env if env is not None else os.environ
    root = Path(project_dir)
    if project is None:
        project = load_project_or_raise(root)
    if nlu is None:
        nlu = load_model(model if model is not None else root / "models")
    url = store_url or environ.get(STORE_ENV) or default_store_url(root)
    store = open_store(url)
    threads = int(environ.get(ACTION_THREADS_ENV, "") or DEFAULT_THREADS)
    local = LocalActionRunner(discover_actions(root), action_config, threads=threads)
    runner = DispatchingRunner(local, remote_runner_from_env(environ))
    # Edits to policies/ `emergency:` apply while it runs (SAFE_MODE, a tool off, STRICT_POLICY).
    watch = EmergencyWatch(project, tools_off=tools_off_from_env(environ))
    llm = None
    if project.policies.llm_fallback.enabled:
        from engine.llm.fallback import LlmFallback

        llm = LlmFallback.from_policies(project.policies, project.domain, environ=environ, emergency=watch.current)
    processor = MessageProcessor(
        project, nlu, store, runner, llm=llm, switches=watch.switches, action_config=action_config
    )
    return Assistant(project, nlu, store, processor, url, watch)
