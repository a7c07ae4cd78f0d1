"""The Teams (Bot Framework) channel against the real ``taiwa run``: Activities built and
read back with botbuilder-schema's Activity model, authenticated with RS256 JWTs signed by a
key this test made (its JWKS in TEAMS_JWKS_FILE); replies and the bot's client-credentials
token received by a fake of the Bot Connector and of the token endpoint."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import pytest
from botbuilder.schema import Activity, ActivityTypes, ChannelAccount, ConversationAccount, HeroCard
from fakes.platforms import (
    TEAMS_APP_ID,
    Answer,
    BotFrameworkIssuer,
    Call,
    FakePlatforms,
    http,
    running,
    user_events,
)

from engine.events import BotUttered
from engine.server.channels import teams
from engine.server.errors import ApiError
from server.live import LiveServer, live_server

ROUTE = "/webhooks/teams/api/messages"
TOKEN = "/botframework/token"
BOT = ChannelAccount(id="28:" + TEAMS_APP_ID, name="Acme support")


# -- the Bot Connector's requests


def new_conversation() -> tuple[str, str]:
    """A personal chat's conversation id and its user's id."""
    return "a:1" + uuid.uuid4().hex, "29:1" + uuid.uuid4().hex[:20]


def activity(platform: FakePlatforms, conversation: str, user: str, text: str | None, **extra: Any) -> dict[str, Any]:
    built = Activity(
        type=extra.pop("type", ActivityTypes.message),
        id=extra.pop("id", f"1{uuid.uuid4().int % 10**12}"),
        timestamp=None,
        service_url=platform.url,
        channel_id=extra.pop("channel_id", "msteams"),
        from_property=ChannelAccount(id=user, name="Ada Lovelace", aad_object_id=str(uuid.uuid4())),
        conversation=ConversationAccount(id=conversation, conversation_type="personal", tenant_id="tenant-1"),
        recipient=BOT,
        text=text,
        text_format="plain",
        locale="en-US",
        channel_data={"tenant": {"id": "tenant-1"}},
        **extra,
    )
    body: dict[str, Any] = built.serialize()
    return body


def post(server: LiveServer, body: Any, token: str | None) -> Answer:
    import json

    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = token if token.startswith(("Bearer", "Basic")) else f"Bearer {token}"
    return http("POST", server.url + ROUTE, data, headers)


def send(server: LiveServer, issuer: BotFrameworkIssuer, platform: FakePlatforms, body: dict[str, Any]) -> Answer:
    return post(server, body, issuer.token(service_url=platform.url))


def reply_path(conversation: str, activity_id: str) -> str:
    return f"/v3/conversations/{conversation}/activities/{activity_id}"


def replies(platform: FakePlatforms, conversation: str, activity_id: str, count: int = 1) -> list[Activity]:
    calls = platform.wait_for(reply_path(conversation, activity_id), count=count)
    for call in calls:
        assert call.headers["Authorization"] in {f"Bearer {t}" for t in platform.issued}
    return [Activity.deserialize(c.json) for c in calls]


def calls_for(platform: FakePlatforms, conversation: str) -> list[Call]:
    return platform.to(f"/v3/conversations/{conversation}/*")


# -- tests


def test_a_message_is_answered_on_the_connector_with_a_bot_token(
    server: LiveServer, platform: FakePlatforms, issuer: BotFrameworkIssuer
) -> None:
    conversation, user = new_conversation()
    body = activity(platform, conversation, user, "/greet")
    answer = send(server, issuer, platform, body)
    assert answer.status == 200

    [reply] = replies(platform, conversation, body["id"])
    assert reply.type == "message" and reply.text
    assert reply.reply_to_id == body["id"]
    assert (reply.from_property.id, reply.recipient.id, reply.conversation.id) == (BOT.id, user, conversation)
    [token_call] = platform.to(TOKEN)[:1]
    assert token_call.form == {
        "grant_type": "client_credentials",
        "client_id": TEAMS_APP_ID,
        "client_secret": platform.teams_password,
        "scope": "https://api.botframework.com/.default",
    }
    [event] = user_events(server.url, f"teams:{conversation}:{user}")
    assert (event["intent"], event["channel"], event["message_id"]) == ("greet", "teams", body["id"])


def test_buttons_become_a_hero_card_of_message_back_buttons(
    server: LiveServer, platform: FakePlatforms, issuer: BotFrameworkIssuer
) -> None:
    conversation, user = new_conversation()
    first = activity(platform, conversation, user, "/open_ticket")
    send(server, issuer, platform, first)
    replies(platform, conversation, first["id"])
    second = activity(platform, conversation, user, "my vm is down")
    send(server, issuer, platform, second)
    [reply] = replies(platform, conversation, second["id"])

    assert reply.text == "How urgent is it?"
    [attachment] = reply.attachments
    assert attachment.content_type == "application/vnd.microsoft.card.hero"
    card = HeroCard.deserialize(attachment.content)
    buttons = [(b.type, b.title, b.text, b.display_text) for b in card.buttons]
    assert buttons[0] == ("messageBack", "Low", '/inform{"priority": "low"}', "Low")
    assert len(buttons) == 3

    # a messageBack click arrives as a message whose text is the button's text
    click = activity(platform, conversation, user, card.buttons[0].text, value=card.buttons[0].value)
    send(server, issuer, platform, click)
    [confirm] = replies(platform, conversation, click["id"])
    assert "low priority" in confirm.text
    texts = [e["text"] for e in user_events(server.url, f"teams:{conversation}:{user}")]
    assert texts == ["/open_ticket", "my vm is down", '/inform{"priority": "low"}']


def test_a_channel_conversation_id_is_escaped_in_the_reply_url_and_mentions_are_removed(
    server: LiveServer, platform: FakePlatforms, issuer: BotFrameworkIssuer
) -> None:
    conversation = f"19:{uuid.uuid4().hex}@thread.tacv2;messageid=1700000000000"
    body = activity(platform, conversation, "29:1user", "<at>Acme support</at> /greet")
    body["conversation"]["conversationType"] = "channel"
    assert send(server, issuer, platform, body).status == 200
    [reply] = replies(platform, conversation, body["id"])
    assert reply.text
    [call] = calls_for(platform, conversation)
    assert call.path == reply_path(conversation, body["id"])


def test_the_bot_token_is_fetched_once_and_renewed_when_refused(
    server: LiveServer, platform: FakePlatforms, issuer: BotFrameworkIssuer
) -> None:
    conversation, user = new_conversation()
    for text in ("/greet", "/goodbye"):
        body = activity(platform, conversation, user, text)
        send(server, issuer, platform, body)
        replies(platform, conversation, body["id"])
    assert len(platform.to(TOKEN)) == 1  # one token for every reply of this server so far

    body = activity(platform, conversation, user, "/greet")
    platform.fail(reply_path(conversation, body["id"]), 401)
    send(server, issuer, platform, body)
    replies(platform, conversation, body["id"])
    assert len(platform.to(TOKEN)) == 2
    assert [c.status for c in platform.to(reply_path(conversation, body["id"]))] == [401, 200]


def forged(issuer: BotFrameworkIssuer, platform: FakePlatforms, case: str) -> str | None:
    now = int(time.time())
    url = platform.url
    if case == "missing":
        return None
    if case == "basic":
        return "Basic dXNlcjpwYXNz"
    if case == "not-a-jwt":
        return "not.a.jwt"
    if case == "other-key-same-kid":
        return BotFrameworkIssuer(kid=issuer.kid).token(service_url=url)
    if case == "unknown-kid":
        return BotFrameworkIssuer(kid="another-key").token(service_url=url)
    if case == "wrong-audience":
        return issuer.token("some-other-bot", service_url=url)
    if case == "wrong-issuer":
        return issuer.token(service_url=url, iss="https://sts.windows.net/evil/")
    if case == "expired":
        return issuer.token(service_url=url, exp=now - 400, nbf=now - 4000)
    if case == "no-exp":
        return issuer.token(service_url=url, exp=None)
    if case == "not-yet-valid":
        return issuer.token(service_url=url, nbf=now + 3600)
    if case == "service-url-mismatch":
        return issuer.token(service_url="https://smba.trafficmanager.net/evil/")
    if case == "hs256":
        return jwt.encode(
            {"iss": teams.ISSUER, "aud": TEAMS_APP_ID, "exp": now + 60}, "x" * 32, "HS256", headers={"kid": issuer.kid}
        )
    if case == "alg-none":
        return jwt.encode(
            {"iss": teams.ISSUER, "aud": TEAMS_APP_ID, "exp": now + 60}, None, "none", {"kid": issuer.kid}
        )
    raise AssertionError(case)


FORGED = [
    "missing", "basic", "not-a-jwt", "other-key-same-kid", "unknown-kid", "wrong-audience", "wrong-issuer", "expired",
    "no-exp", "not-yet-valid", "service-url-mismatch", "hs256", "alg-none",
]  # fmt: skip


@pytest.mark.parametrize("case", [*FORGED, "channel-not-endorsed"])
def test_forged_or_unsigned_activities_are_refused_and_not_processed(
    server: LiveServer, platform: FakePlatforms, issuer: BotFrameworkIssuer, case: str
) -> None:
    conversation, user = new_conversation()
    if case == "channel-not-endorsed":
        body = activity(platform, conversation, user, "/greet", channel_id="slack")
        token: str | None = issuer.token(service_url=platform.url)
    else:
        body = activity(platform, conversation, user, "/greet")
        token = forged(issuer, platform, case)
    answer = post(server, body, token)
    assert answer.status == 401, answer.body
    assert answer.json["error"]["code"] == "unauthorized"
    time.sleep(0.3)
    assert user_events(server.url, f"teams:{conversation}:{user}") == []
    assert calls_for(platform, conversation) == []


def test_clock_skew_of_a_minute_is_accepted(
    server: LiveServer, platform: FakePlatforms, issuer: BotFrameworkIssuer
) -> None:
    conversation, user = new_conversation()
    body = activity(platform, conversation, user, "/greet")
    now = int(time.time())
    assert post(server, body, issuer.token(service_url=platform.url, exp=now - 60, nbf=now - 3600)).status == 200
    replies(platform, conversation, body["id"])


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"{",
        b"[]",
        b'{"text": "hi"}',
        b'{"type": "message", "id": "1", "text": "hi"}',
        b'{"type": "message", "id": "1", "serviceUrl": "ftp://x", "from": {"id": "u"}, "conversation": {"id": "c"}}',
        b'{"type": "message", "id": "1", "serviceUrl": "https://x", "from": {}, "conversation": {"id": "c"}}',
        b'{"type": "message", "id": 1, "serviceUrl": "https://x", "from": {"id": "u"}, "conversation": {"id": "c"}}',
        b'{"type": "message", "id": "1", "serviceUrl": "https://x", "from": {"id": "u"}, "conversation": {"id": "c"}, '
        b'"text": 5}',
    ],
    ids=["empty", "truncated", "array", "no-type", "no-conversation", "service-url-scheme", "from-no-id", "id-int",
         "text-int"],
)  # fmt: skip
def test_malformed_activities_are_400_never_5xx(server: LiveServer, issuer: BotFrameworkIssuer, body: bytes) -> None:
    answer = post(server, body, issuer.token())
    assert answer.status == 400, answer.body


def test_other_activities_are_acknowledged_not_processed(
    server: LiveServer, platform: FakePlatforms, issuer: BotFrameworkIssuer
) -> None:
    conversation, user = new_conversation()
    update = activity(platform, conversation, user, None, type=ActivityTypes.conversation_update)
    update["membersAdded"] = [{"id": user}]
    typing = activity(platform, conversation, user, None, type=ActivityTypes.typing)
    attachment_only = activity(platform, conversation, user, None)
    for body in (update, typing, attachment_only):
        assert send(server, issuer, platform, body).status == 200
    time.sleep(0.3)
    assert user_events(server.url, f"teams:{conversation}:{user}") == []
    assert calls_for(platform, conversation) == []


def test_a_repeated_activity_is_processed_once(
    server: LiveServer, platform: FakePlatforms, issuer: BotFrameworkIssuer
) -> None:
    conversation, user = new_conversation()
    body = activity(platform, conversation, user, "/greet")
    send(server, issuer, platform, body)
    replies(platform, conversation, body["id"])
    send(server, issuer, platform, body)
    later = activity(platform, conversation, user, "/goodbye")
    send(server, issuer, platform, later)
    replies(platform, conversation, later["id"])
    time.sleep(0.3)
    assert len(calls_for(platform, conversation)) == 2
    assert [e["text"] for e in user_events(server.url, f"teams:{conversation}:{user}")] == ["/greet", "/goodbye"]


def test_a_failed_reply_is_retried(server: LiveServer, platform: FakePlatforms, issuer: BotFrameworkIssuer) -> None:
    conversation, user = new_conversation()
    body = activity(platform, conversation, user, "/greet")
    platform.fail(reply_path(conversation, body["id"]), 500)
    send(server, issuer, platform, body)
    replies(platform, conversation, body["id"])
    assert [c.status for c in calls_for(platform, conversation)] == [500, 200]


def test_not_mounted_without_both_credentials(
    reference_models: Path, tmp_path: Path, issuer: BotFrameworkIssuer
) -> None:
    jwks = issuer.write_jwks(tmp_path / "jwks.json")
    assert teams.from_env({}) is None
    assert teams.from_env({teams.APP_ID_ENV: "a"}) is None
    assert teams.from_env({teams.PASSWORD_ENV: "p"}) is None
    assert (
        teams.from_env({teams.APP_ID_ENV: "a", teams.PASSWORD_ENV: "p", teams.JWKS_FILE_ENV: str(tmp_path / "no")})
        is None
    )
    (tmp_path / "empty.json").write_text('{"keys": []}')
    env = {teams.APP_ID_ENV: "a", teams.PASSWORD_ENV: "p", teams.JWKS_FILE_ENV: str(tmp_path / "empty.json")}
    assert teams.from_env(env) is None
    channel = teams.from_env({teams.APP_ID_ENV: "a", teams.PASSWORD_ENV: "p", teams.JWKS_FILE_ENV: str(jwks)})
    assert channel is not None and channel.jwks_file == jwks
    default = teams.from_env({teams.APP_ID_ENV: "a", teams.PASSWORD_ENV: "p"})
    assert default is not None and default.openid_url == teams.DEFAULT_OPENID_URL and default.jwks_file is None
    with live_server(reference_models, tmp_path, {teams.APP_ID_ENV: TEAMS_APP_ID, teams.JWKS_FILE_ENV: str(jwks)}) as s:
        answer = post(s, b"{}", issuer.token())
        assert answer.status == 404
        assert answer.json["error"]["code"] == "not_found"


async def test_keys_from_openid_metadata_are_fetched_once_and_again_for_a_new_key() -> None:
    first, second = BotFrameworkIssuer(kid="k1"), BotFrameworkIssuer(kid="k2")
    with running(FakePlatforms()) as fake:
        fake.jwks = first.jwks()
        async with aiohttp.ClientSession() as session:
            keys = teams.KeySet(openid_url=f"{fake.url}/botframework/openid", http=lambda: session)
            assert (await keys.get("k1")) is not None
            assert (await keys.get("k1")) is not None
            assert len(fake.to("/botframework/openid")) == len(fake.to("/botframework/keys")) == 1

            fake.jwks = {"keys": first.jwks()["keys"] + second.jwks()["keys"]}
            assert (await keys.get("k2")) is None  # unknown, but the key set was fetched moments ago
            keys._fetched -= teams.KEYS_MIN_REFRESH + 1
            found = await keys.get("k2")
            assert found is not None and found.endorsements == ("msteams", "emulator")
            assert len(fake.to("/botframework/keys")) == 2

            claims, key = await teams.verify_token(keys, "app", f"Bearer {second.token('app')}")
            assert claims["aud"] == "app" and key is found

    async with aiohttp.ClientSession() as session:
        down = teams.KeySet(openid_url="http://127.0.0.1:9/openid", http=lambda: session)
        with pytest.raises(ApiError) as raised:
            await down.get("k1")
        assert raised.value.status == 503


def test_reply_activity_shapes() -> None:
    to = {
        "id": "a1",
        "channelId": "msteams",
        "from": {"id": "29:u"},
        "recipient": {"id": "28:b"},
        "conversation": {"id": "a:c"},
        "serviceUrl": "https://smba.example/amer/",
    }
    assert teams.reply_url(to) == "https://smba.example/amer/v3/conversations/a%3Ac/activities/a1"
    image = teams.reply_activity(BotUttered(text=None, data={"image": "https://x/y.png"}), to)
    assert image is not None and "text" not in image
    parsed = Activity.deserialize(image)
    assert HeroCard.deserialize(parsed.attachments[0].content).images[0].url == "https://x/y.png"
    assert teams.reply_activity(BotUttered(text=None), to) is None
