"""Emergency switches edited in policies/ while the assistant runs (no restart)."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from server.live import copy_reference_project

from engine.dialogue.emergency import EmergencyWatch
from engine.loading.project import load_project_or_raise


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} is no longer in {path.name}: update this test"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    st = path.stat()  # a later mtime even on a file system with coarse timestamps
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


def wait_for(watch: EmergencyWatch, done: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "the change was not picked up"
        watch.switches()
        time.sleep(0.02)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return copy_reference_project(tmp_path)


def test_an_edit_of_policies_switches_safe_mode_and_tools_without_a_restart(project: Path) -> None:
    watch = EmergencyWatch(load_project_or_raise(project), interval=0.0)
    assert not watch.current().safe_mode and watch.switches().tools_off == frozenset()
    policies = project / "policies" / "policies.yml"

    edit(policies, "safe_mode: false", "safe_mode: true")
    edit(policies, "crm_lookup: true", "crm_lookup: false")
    wait_for(watch, lambda: watch.reloads == 1)
    switches = watch.switches()
    assert watch.current().safe_mode
    assert switches.tools_off == {"crm_lookup"} and switches.emergency is watch.current()

    edit(policies, "crm_lookup: false", "crm_lookup: true")
    wait_for(watch, lambda: watch.reloads == 2)
    assert watch.switches().tools_off == frozenset() and watch.current().safe_mode


def test_an_edit_with_errors_keeps_the_switches_and_says_where(project: Path, caplog: pytest.LogCaptureFixture) -> None:
    watch = EmergencyWatch(load_project_or_raise(project), interval=0.0)
    policies = project / "policies" / "policies.yml"
    with caplog.at_level(logging.ERROR, logger="taiwa.emergency"):
        edit(policies, "kb_search: true", "kb_search: maybe")
        wait_for(watch, lambda: watch.rejected == 1)
    assert watch.switches().tools_off == frozenset() and watch.reloads == 0
    (message,) = [r.getMessage() for r in caplog.records if r.name == "taiwa.emergency"]
    assert "policies/policies.yml:" in message and "stay as they were" in message and "Fix:" in message

    # The same broken files are not loaded again and again; the next edit is.
    time.sleep(0.2)
    watch.switches()
    assert watch.rejected == 1
    edit(policies, "kb_search: maybe", "kb_search: false")
    wait_for(watch, lambda: watch.reloads == 1)
    assert watch.switches().tools_off == {"kb_search"}


def test_tools_off_from_the_environment_stay_off(project: Path) -> None:
    watch = EmergencyWatch(load_project_or_raise(project), tools_off={"create_ticket"}, interval=0.0)
    assert watch.switches().tools_off == {"create_ticket"}
    edit(project / "policies" / "policies.yml", "kb_search: true", "kb_search: false")
    wait_for(watch, lambda: watch.reloads == 1)
    assert watch.switches().tools_off == {"create_ticket", "kb_search"}


def test_the_files_are_looked_at_once_per_interval(project: Path) -> None:
    now = [0.0]
    watch = EmergencyWatch(load_project_or_raise(project), interval=1.0, clock=lambda: now[0])
    edit(project / "policies" / "policies.yml", "safe_mode: false", "safe_mode: true")
    now[0] = 0.9
    for _ in range(20):
        watch.switches()
        time.sleep(0.01)
    assert watch.reloads == 0 and not watch.current().safe_mode
    now[0] = 1.0
    wait_for(watch, lambda: watch.reloads == 1)
    assert watch.current().safe_mode
