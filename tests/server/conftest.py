"""Fixtures of the channel tests: one fake of the four platforms' APIs per module, and the
real server with every channel pointed at it (test_api.py and test_webchat.py define their
own ``server``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fakes.platforms import BotFrameworkIssuer, FakePlatforms, channel_env, running

from server.live import LiveServer, live_server


@pytest.fixture(scope="module")
def platform() -> Iterator[FakePlatforms]:
    with running(FakePlatforms()) as fake:
        yield fake


@pytest.fixture(scope="module")
def issuer() -> BotFrameworkIssuer:
    return BotFrameworkIssuer()


@pytest.fixture(scope="module")
def server(
    reference_models: Path,
    platform: FakePlatforms,
    issuer: BotFrameworkIssuer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[LiveServer]:
    tmp = tmp_path_factory.mktemp("channels")
    env = channel_env(platform, issuer.write_jwks(tmp / "jwks.json"))
    with live_server(reference_models, tmp, env) as s:
        yield s
