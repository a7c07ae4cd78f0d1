"""`taiwa run` behind a load balancer: two instances on one Redis or PostgreSQL store, several
workers behind one port, rate limits shared through Redis, and a graceful shutdown."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from store_backends import free_local_port, store_backend

from server.live import REPO, LiveServer, copy_reference_project, live_server

TOKEN = "scale-token-93d1"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
BASE_ENV = {"TAIWA_API_TOKEN": TOKEN, "TAIWA_WEBCHAT": "0", "TAIWA_RATE_LIMIT": "off"}


async def post(
    session: aiohttp.ClientSession, server: LiveServer, sender: str, text: str, message_id: str | None = None
) -> tuple[int, Any]:
    body: dict[str, Any] = {"sender": sender, "message": text}
    if message_id is not None:
        body["message_id"] = message_id
    async with session.post(server.url + "/webhooks/rest/webhook", json=body) as r:
        return r.status, await r.json()


async def tracker_events(session: aiohttp.ClientSession, server: LiveServer, cid: str) -> list[dict[str, Any]]:
    async with session.get(f"{server.url}/conversations/{cid}/tracker", headers=AUTH) as r:
        assert r.status == 200
        events: list[dict[str, Any]] = (await r.json())["events"]
        return events


@pytest.fixture(params=["redis", "postgres"])
def shared_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with store_backend(request.param, request, tmp_path) as backend:
        yield backend.url


@pytest.mark.services
async def test_two_instances_process_each_message_of_one_conversation_once(
    reference_models: Path, tmp_path: Path, shared_store: str
) -> None:
    """Messages for the same conversations reach both instances at the same moment; a webhook
    redelivery of one message reaches both at once too. Each message is one turn, exactly once."""
    with ExitStack() as stack:
        a = stack.enter_context(live_server(reference_models, tmp_path / "a", BASE_ENV, store=shared_store))
        b = stack.enter_context(live_server(reference_models, tmp_path / "b", BASE_ENV, store=shared_store))
        senders = [f"both-{i}" for i in range(6)]
        async with aiohttp.ClientSession() as session:
            sends = [
                post(session, (a, b)[(i + j) % 2], sender, "hi", f"{sender}-m{j}")
                for i, sender in enumerate(senders)
                for j in range(6)
            ]
            # The same message delivered twice, to both instances at once (a webhook retry).
            sends += [post(session, server, sender, "hi", f"{sender}-dup") for sender in senders for server in (a, b)]
            answers = await asyncio.gather(*sends)
            assert all(status == 200 for status, _ in answers), answers
            for sender in senders:
                events = await tracker_events(session, a, sender)
                assert events == await tracker_events(session, b, sender)
                ids = Counter(e["message_id"] for e in events if e["event"] == "user_uttered")
                assert ids == Counter([f"{sender}-m{j}" for j in range(6)] + [f"{sender}-dup"]), ids
                decisions = [e for e in events if e["event"] == "policy_decided"]
                assert len(decisions) == 7  # one per turn: no turn ran twice, none was lost
        dup_answers = [body for status, body in answers[len(senders) * 6 :]]
        for i in range(0, len(dup_answers), 2):
            assert dup_answers[i] == dup_answers[i + 1]  # the redelivery gets the original replies


async def test_workers_share_one_metrics_view(reference_models: Path, tmp_path: Path) -> None:
    """With --workers 2 each worker answers /metrics in turn; each must report the sum."""

    async def scrape(session: aiohttp.ClientSession, server: LiveServer) -> tuple[str, float]:
        async with session.get(server.url + "/metrics", headers=AUTH) as r:
            text = await r.text()
            found = re.findall(r'^taiwa_turns_total\{channel="rest",[^}]*\} (\S+)$', text, re.M)
            return r.headers["X-Taiwa-Worker"], sum(float(x) for x in found)

    with live_server(reference_models, tmp_path, BASE_ENV, workers=2) as server:
        # New connections, many at once: while one worker is busy the other accepts.
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session:
            for _ in range(100):  # /health answers as soon as one worker is up: wait for the second
                if len({pid for pid, _ in await asyncio.gather(*(scrape(session, server) for _ in range(10)))}) == 2:
                    break
                await asyncio.sleep(0.1)
            answers = await asyncio.gather(*(post(session, server, f"metrics-{i}", "hi") for i in range(40)))
            assert all(status == 200 for status, _ in answers)
            scrapes: set[tuple[str, float]] = set()
            for _ in range(20):
                scrapes |= set(await asyncio.gather(*(scrape(session, server) for _ in range(10))))
                if len({pid for pid, _ in scrapes}) == 2:
                    break
    assert len({pid for pid, _ in scrapes}) == 2, "only one worker answered: the test proves nothing"
    assert {total for _, total in scrapes} == {40.0}


@pytest.mark.services
@pytest.mark.parametrize("server", ["redis_url", "redis_cluster_url"])
async def test_a_redis_rate_limit_is_shared_by_instances(
    reference_models: Path, tmp_path: Path, server: str, request: pytest.FixtureRequest
) -> None:
    # In a Redis Cluster the sender's and the IP's buckets sit in different hash slots.
    redis_url = request.getfixturevalue(server)
    prefix = f"taiwa-rl-{os.getpid()}-{tmp_path.name}:"
    env = {**BASE_ENV, "TAIWA_RATE_LIMIT": "4,0.1", "TAIWA_RATE_LIMIT_STORE": f"{redis_url}?prefix={prefix}"}
    with (
        live_server(reference_models, tmp_path / "a", env) as a,
        live_server(reference_models, tmp_path / "b", env) as b,
    ):
        async with aiohttp.ClientSession() as session:
            statuses = [(await post(session, (a, b)[i % 2], "shared-flood", "hi"))[0] for i in range(6)]
            other = await post(session, b, "someone-else", "hi")
    # A burst of 4 for the sender across BOTH instances: in-process buckets would have let 6 pass.
    assert statuses == [200, 200, 200, 200, 429, 429]
    assert other[0] == 200


@pytest.mark.parametrize("scheme", ["redis", "redis+cluster"])
async def test_rate_limit_store_down_lets_requests_pass_and_counts_it(
    reference_models: Path, tmp_path: Path, scheme: str
) -> None:
    env = {
        **BASE_ENV,
        "TAIWA_RATE_LIMIT": "2,0.1",
        "TAIWA_RATE_LIMIT_STORE": f"{scheme}://127.0.0.1:{free_local_port()}",
    }
    with live_server(reference_models, tmp_path, env) as server:
        async with aiohttp.ClientSession() as session:
            statuses = [(await post(session, server, "unlimited", "hi"))[0] for _ in range(4)]
            async with session.get(server.url + "/metrics", headers=AUTH) as r:
                metrics = await r.text()
    assert statuses == [200, 200, 200, 200]
    assert re.search(r"^taiwa_rate_limit_store_errors_total (\d+)", metrics, re.M)
    assert float(re.findall(r"^taiwa_rate_limit_store_errors_total (\S+)", metrics, re.M)[0]) >= 4
    assert "rate limit store unreachable" in server.output()


# --------------------------------------------------------------------------- graceful shutdown


def slow_project(tmp_path: Path, seconds: float) -> Path:
    """The reference assistant whose CRM lookup takes ``seconds`` (a slow downstream system)."""
    project = copy_reference_project(tmp_path)
    crm = project / "actions" / "crm.py"
    source = crm.read_text(encoding="utf-8")
    marker = re.search(r'@action\("crm_lookup"[^\n]*\n(?:async )?def [^\n]*\n(?:    """[^\n]*"""\n)?', source)
    assert marker, "the crm_lookup tool moved: update this test"
    slowed = source[: marker.end()] + f"    import time\n\n    time.sleep({seconds})\n" + source[marker.end() :]
    # A lookup that waits on a slow system runs on a worker thread, not inline on the loop.
    decorator = marker.group(0).split("\n", 1)[0]
    assert ", inline=True" in decorator, "crm_lookup is no longer inline: update this test"
    slowed = slowed.replace(decorator, decorator.replace(", inline=True", ""), 1)
    crm.write_text(slowed, encoding="utf-8")
    return project


async def test_sigterm_lets_in_flight_turns_finish_and_loses_nothing(reference_models: Path, tmp_path: Path) -> None:
    project = slow_project(tmp_path, 1.0)
    store = f"sqlite:///{tmp_path / 'shared.sqlite3'}"
    env = {**BASE_ENV, "TAIWA_CRM_DB": str(tmp_path / "crm.sqlite3")}
    senders = [f"inflight-{i}" for i in range(5)]
    with live_server(reference_models, tmp_path / "first", env, store=store, project=project) as server:
        async with aiohttp.ClientSession() as session:
            for sender in senders:
                await post(session, server, sender, "check my account")
                await post(session, server, sender, "C12345")
            lookups = [asyncio.ensure_future(post(session, server, s, "12/04/1990")) for s in senders]
            await asyncio.sleep(0.4)  # the lookups are inside the slow tool now
            server.process.send_signal(signal.SIGTERM)
            answers = await asyncio.gather(*lookups)
            code = await asyncio.to_thread(server.process.wait, 30)
    assert code == 0, server.output()
    for status, body in answers:
        assert status == 200 and body and body[0]["text"].startswith("Thanks Jane Doe!"), body
    assert "Traceback" not in server.output()
    # A new server on the same store sees every turn that was answered.
    with live_server(reference_models, tmp_path / "second", env, store=store, project=project) as again:
        async with aiohttp.ClientSession() as session:
            for sender in senders:
                events = await tracker_events(session, again, sender)
                texts = [e["text"] for e in events if e["event"] == "user_uttered"]
                assert texts == ["check my account", "C12345", "12/04/1990"]
                assert any(e["event"] == "slot_set" and e["name"] == "account_name" for e in events)


@pytest.mark.parametrize("to_group", [False, True], ids=["to-the-process", "to-its-process-group"])
async def test_sigterm_right_after_the_first_answer_stops_every_worker_and_keeps_the_turn(
    reference_models: Path, tmp_path: Path, to_group: bool
) -> None:
    """Stopped while its second worker is still starting, the server still stops at once and
    cleanly (Sanic alone waited 30 s for that worker's report and exited 1). A SIGTERM to the
    whole process group (systemd's default) once killed Sanic's state-sharing process, and
    Sanic then SIGKILLed the group; every process of the group must be gone afterwards."""
    import json
    import time
    import urllib.request

    from engine import events as ev
    from engine.stores.sqlite import SQLiteTrackerStore
    from server.live import TAIWA, free_port

    for attempt in range(2):
        port = free_port()
        db = tmp_path / f"tracker-{attempt}.sqlite3"
        args = [str(TAIWA), "run", "--project", str(REPO), "--model", str(reference_models), "--port", str(port)]
        args += ["--workers", "2", "--store", f"sqlite:///{db}"]
        env = {**os.environ, **BASE_ENV, "TAIWA_CRM_DB": str(tmp_path / "crm.sqlite3")}
        log = tmp_path / f"server-{attempt}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            body = json.dumps({"sender": f"early-{attempt}", "message": "hi"}).encode()
            deadline = time.monotonic() + 60
            while True:
                assert proc.poll() is None, log.read_text()
                try:
                    request = urllib.request.Request(f"http://127.0.0.1:{port}/webhooks/rest/webhook", data=body)
                    with urllib.request.urlopen(request, timeout=5) as response:
                        answered = json.loads(response.read())
                        break
                except OSError:
                    assert time.monotonic() < deadline, log.read_text()
                    await asyncio.sleep(0.01)
            if to_group:
                os.killpg(proc.pid, signal.SIGTERM)
            else:
                proc.send_signal(signal.SIGTERM)
            code = await asyncio.to_thread(proc.wait, 15)
            deadline = time.monotonic() + 10
            while _group_alive(proc.pid) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            left = _group_alive(proc.pid)
        finally:
            if proc.poll() is None or _group_alive(proc.pid):
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        output = log.read_text()
        assert code == 0, output
        assert not left, f"processes of the server outlived it:\n{output}"
        assert "Traceback" not in output and "failed to come online" not in output
        assert answered[0]["response"] == "utter_greet"
        store = SQLiteTrackerStore(db)
        try:
            events = await store.load(f"early-{attempt}")
        finally:
            await store.close()
        assert [e.text for e in events if isinstance(e, ev.UserUttered)] == ["hi"]


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def test_taiwa_run_refuses_a_bad_rate_limit_setting(tmp_path: Path, reference_models: Path) -> None:
    from server.live import TAIWA

    env = {**os.environ, "TAIWA_RATE_LIMIT_STORE": "http://nowhere"}
    args = [str(TAIWA), "run", "--project", str(REPO), "--model", str(reference_models), "--port", "1"]
    run = subprocess.run(args, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 2
    assert "TAIWA_RATE_LIMIT_STORE" in run.stderr and "Traceback" not in run.stderr


# --------------------------------------------------------------------------- emergency switches


async def test_a_tool_switched_off_in_policies_is_off_in_every_worker_without_a_restart(
    reference_models: Path, tmp_path: Path
) -> None:
    project = copy_reference_project(tmp_path)
    policies = project / "policies" / "policies.yml"
    question = "how do I reset my password?"
    unavailable = "Sorry, that service is temporarily unavailable"
    with live_server(reference_models, tmp_path / "srv", BASE_ENV, workers=2, project=project) as server:
        # A new connection per request, so both workers answer.
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session:
            status, body = await post(session, server, "before", question)
            assert status == 200 and not body[0]["text"].startswith(unavailable), body
            text = policies.read_text(encoding="utf-8")
            assert "    kb_search: true" in text, "policies.yml changed: update this test"
            policies.write_text(text.replace("    kb_search: true", "    kb_search: false", 1), encoding="utf-8")
            # Each worker looks at the files every second, busy or not, and loads the project
            # again on a thread; each logs the switches it applied.
            deadline = asyncio.get_running_loop().time() + 30
            while server.output().count("emergency switches reloaded from policies/") < 2:
                assert asyncio.get_running_loop().time() < deadline, server.output()
                await asyncio.sleep(0.1)
            for i in range(6):
                status, body = await post(session, server, f"after-{i}", question)
                assert status == 200 and body[0]["text"].startswith(unavailable), body
            events = await tracker_events(session, server, "after-0")
    calls = [e for e in events if e["event"] == "tool_called"]
    assert [(c["name"], c["status"]) for c in calls] == [("kb_search", "disabled")]
    assert "safe_mode=off strict_policy=off tools_off=kb_search (were safe_mode=off" in server.output()
