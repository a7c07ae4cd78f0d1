"""The LLM fallback inside a turn: an unsure NLU asks the provider chain (a local fake
server speaking the OpenAI wire format), and the engine acts on the answer."""

from __future__ import annotations

import pytest
from fakes.llm_domain import FAST, config, provider
from fakes.llm_server import FakeLlmServer, Reply, openai_answer

from dialogue.engine_kit import Bot, bank_project, make_bot
from engine import events as ev
from engine.llm.fallback import LlmFallback
from engine.loading.project import Project


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    return bank_project(tmp_path_factory.mktemp("bank"))


def with_llm(project: Project, server: FakeLlmServer) -> tuple[Bot, LlmFallback]:
    bot = make_bot(project)
    llm = LlmFallback(
        config([provider("local", server.openai_base)], threshold=0.5), project.domain, backoff=FAST, environ={}
    )
    bot.processor.llm = llm
    return bot, llm


async def test_an_unsure_nlu_asks_the_llm_and_the_flow_starts(project: Project) -> None:
    answer = openai_answer("transfer_money", 0.9, [{"entity": "recipient", "value": "Ann"}])
    async with FakeLlmServer(answer) as server:
        bot, llm = with_llm(project, server)
        async with llm:
            bot.nlu.understands("wire some cash over to Ann", ("chitchat", 0.3), ("greet", 0.2))
            result = await bot.say("wire some cash over to Ann")
        assert len(server.received) == 1
    assert [m.text for m in result.messages] == ["How much?"]  # recipient came from the LLM's entities
    user = next(e for e in result.events if isinstance(e, ev.UserUttered))
    assert (user.intent, user.source) == ("transfer_money", "llm")
    called = [e for e in result.events if isinstance(e, ev.LlmCalled)]
    assert len(called) == 1 and called[0].outcome == "llm" and called[0].provider == "local"


async def test_when_every_provider_fails_the_nlu_answer_stands(project: Project) -> None:
    async with FakeLlmServer(Reply(status=500), default=Reply(status=500)) as server:
        bot, llm = with_llm(project, server)
        async with llm:
            bot.nlu.understands("wire some cash over to Ann", ("chitchat", 0.3), ("greet", 0.2))
            result = await bot.say("wire some cash over to Ann")
    assert [m.text for m in result.messages] == ["Sorry, could you rephrase?"]
    called = [e for e in result.events if isinstance(e, ev.LlmCalled)]
    assert len(called) == 1 and called[0].outcome == "failed" and called[0].error


async def test_a_confident_nlu_never_asks(project: Project) -> None:
    async with FakeLlmServer(openai_answer("greet")) as server:
        bot, llm = with_llm(project, server)
        async with llm:
            bot.nlu.understands("hello there", ("greet", 0.95), ("chitchat", 0.01))
            assert await bot.texts("hello there") == ["Hello!"]
        assert server.received == []
