"""The dialogue engine driven from inline YAML: every step kind, the flow stack, policies,
fallback and handoff, tools and their failures, sessions. See ``engine_kit.py``."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from dialogue.engine_kit import Bot, bank_project, make_bot
from engine import events as ev
from engine.actions.registry import ActionContext, ActionSpec
from engine.actions.runner import ToolHttpError
from engine.dialogue.tracker import replay
from engine.events import Event, SlotSet
from engine.loading.project import Project


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    return bank_project(tmp_path_factory.mktemp("bank"))


def transfer(ctx: ActionContext) -> list[Event]:
    return [SlotSet("transfer_id", f"TX-{ctx.slots['recipient']}-{int(ctx.slots['amount'] or 0)}")]


def balance(ctx: ActionContext) -> list[Event]:
    return [SlotSet("balance", 120.5 if ctx.slots["account"] == "checking" else 9000.0)]


def bump(ctx: ActionContext) -> list[Event]:
    return [SlotSet("counter", float(ctx.slots.get("counter") or 0) + 1)]


TOOLS = {"do_transfer": transfer, "get_balance": balance, "bump": bump}


@pytest.fixture
def bot(project: Project) -> Bot:
    return make_bot(project, TOOLS)


def of(events: list[Event], kind: type) -> list:  # type: ignore[type-arg]
    return [e for e in events if isinstance(e, kind)]


# --------------------------------------------------------------------------- step kinds


async def test_a_flow_runs_collect_action_utter_and_branches_to_the_end(bot: Bot) -> None:
    assert await bot.texts("/transfer_money") == ["Who should receive the money?"]
    assert await bot.texts('/inform{"recipient": "Ann"}') == ["How much?"]
    result = await bot.say('/inform{"amount": "50"}')
    assert [m.text for m in result.messages] == ["Send 50.0 to Ann?"]
    assert [b["payload"] for b in result.messages[0].buttons] == ["/affirm", "/deny"]
    assert await bot.texts("/affirm") == ["Sent 50.0 to Ann (TX-Ann-50)."]
    events = await bot.events()
    state = replay(bot.processor.project.domain, events)
    assert state.stack == ()
    assert of(events, ev.FlowCompleted) == [ev.FlowCompleted("transfer_money")]
    called = of(events, ev.ToolCalled)
    assert [(c.name, c.status, c.error_type) for c in called] == [("do_transfer", "ok", None)]


async def test_the_else_branch_and_set_slots_step(bot: Bot) -> None:
    await bot.say('/transfer_money{"recipient": "Bob", "amount": 20}')
    assert await bot.texts("/deny") == ["Transfer cancelled."]
    state = await bot.processor.state("c1")
    assert state.slot("amount") is None  # set_slots: amount: null
    assert state.active_flow is None


async def test_entities_in_the_triggering_message_fill_later_collect_steps(bot: Bot) -> None:
    result = await bot.say('/transfer_money{"recipient": "Ann", "amount": 30}')
    assert [m.text for m in result.messages] == ["Send 30.0 to Ann?"]  # both collects skipped


async def test_a_collect_step_with_ask_before_filling_asks_even_when_filled(bot: Bot) -> None:
    await bot.say('/transfer_money{"recipient": "Ann", "amount": 30}')
    await bot.say("/affirm")
    # confirm_transfer is reset when the flow ends; a filled value would still be asked again.
    assert (await bot.processor.state("c1")).slot("confirm_transfer") is None


async def test_call_runs_a_sub_flow_and_comes_back(bot: Bot) -> None:
    assert await bot.texts("/check_balance") == ["Which account, checking or savings?"]
    state = await bot.processor.state("c1")
    assert [f.flow for f in state.stack] == ["check_balance", "verify"]
    assert state.stack[-1].how == "call"
    assert await bot.texts('/inform{"account": "checking"}') == ["Your PIN?"]
    assert await bot.texts('/inform{"pin": "1234"}') == ["Your checking balance is 120.5."]
    state = await bot.processor.state("c1")
    assert state.stack == ()
    assert state.slot("pin") is None  # reset when check_balance (the root) ended
    assert state.slot("account") == "checking"  # reset_after_flow_ends: false


async def test_slot_filling_mode_takes_answers_in_any_order(bot: Bot) -> None:
    await bot.say("/check_balance")
    # Asked for the account, the user gives the PIN first: the flow asks only what is missing.
    assert await bot.texts('/inform{"pin": "9999"}') == ["Which account, checking or savings?"]
    assert await bot.texts('/inform{"account": "savings"}') == ["Your savings balance is 9000.0."]


async def test_step_by_step_mode_leaves_values_for_later_steps_alone(bot: Bot) -> None:
    await bot.say("/transfer_money")
    # Asked for the recipient, the user gives an amount only: STEP_BY_STEP asks again.
    result = await bot.say('/inform{"amount": 10}')
    assert [m.text for m in result.messages] == ["Who should receive the money?"]
    assert result.state.slot("amount") is None


async def test_link_replaces_the_flow(bot: Bot) -> None:
    assert await bot.texts("/goodbye") == ["Bye!", "How did we do?"]
    state = await bot.processor.state("c1")
    assert [(f.flow, f.how) for f in state.stack] == [("feedback", "link")]
    bot.nlu.understands("all good", ("chitchat", 0.3), ("greet", 0.2))
    assert await bot.texts("all good") == ["Thanks for the feedback."]


async def test_from_text_fills_the_slot_being_collected(bot: Bot) -> None:
    await bot.say("/give_feedback")
    bot.nlu.understands("great service, fast answers", ("chitchat", 0.3), ("greet", 0.2))
    assert await bot.texts("great service, fast answers") == ["Thanks for the feedback."]
    events = await bot.events()
    assert SlotSet("feedback", "great service, fast answers") in events


# --------------------------------------------------------------------------- the flow stack


async def test_a_new_flow_interrupts_and_the_old_one_resumes(bot: Bot) -> None:
    await bot.say("/transfer_money")
    assert await bot.texts("/check_balance") == ["Which account, checking or savings?"]
    state = await bot.processor.state("c1")
    assert [(f.flow, f.interrupted_by) for f in state.stack] == [
        ("transfer_money", "check_balance"),
        ("check_balance", None),
        ("verify", None),
    ]
    texts = await bot.texts('/inform{"account": "checking", "pin": "1"}')
    assert texts == ["Your checking balance is 120.5.", "Back to money transfer.", "Who should receive the money?"]
    events = await bot.events()
    assert ev.FlowInterrupted("transfer_money", "check_balance") in events
    assert ev.FlowResumed("transfer_money") in events
    assert await bot.texts('/inform{"recipient": "Ann"}') == ["How much?"]


async def test_cancel_ends_the_active_flow_and_says_so(bot: Bot) -> None:
    await bot.say("/transfer_money")
    await bot.say('/inform{"recipient": "Ann"}')
    bot.nlu.understands("never mind", ("cancel", 0.95), ("deny", 0.03))
    assert await bot.texts("never mind") == ["Okay, stopped."]
    state = await bot.processor.state("c1")
    assert state.stack == ()
    assert ev.FlowCancelled("transfer_money", "user_cancelled") in await bot.events()


async def test_cancel_in_a_sub_flow_cancels_its_caller_and_resumes_an_interrupted_flow(bot: Bot) -> None:
    await bot.say("/transfer_money")
    await bot.say("/check_balance")
    texts = await bot.texts("/cancel")
    assert texts == ["Okay, stopped.", "Back to money transfer.", "Who should receive the money?"]
    events = await bot.events()
    assert ev.FlowCancelled("verify", "user_cancelled") in events
    assert ev.FlowCancelled("check_balance", "user_cancelled") in events
    assert [f.flow for f in (await bot.processor.state("c1")).stack] == ["transfer_money"]


async def test_a_correction_updates_the_slot_and_reruns_what_depends_on_it(bot: Bot) -> None:
    await bot.say('/transfer_money{"recipient": "Ann", "amount": 30}')
    # At the confirmation, "actually send 40": the amount changes, the question is asked again.
    texts = await bot.texts('/inform{"amount": 40}')
    assert texts == ["Updated.", "Send 40.0 to Ann?"]
    assert await bot.texts("/affirm") == ["Sent 40.0 to Ann (TX-Ann-40)."]


async def test_a_correction_in_a_slot_filling_flow(bot: Bot) -> None:
    await bot.say("/check_balance")
    await bot.say('/inform{"account": "checking"}')
    texts = await bot.texts('/inform{"account": "savings"}')
    assert texts == ["Updated.", "Your PIN?"]
    assert (await bot.processor.state("c1")).slot("account") == "savings"


# --------------------------------------------------------------------------- validation


async def test_a_rejection_says_its_response_and_asks_again(bot: Bot) -> None:
    await bot.say('/transfer_money{"recipient": "Ann"}')
    texts = await bot.texts('/inform{"amount": 5000}')
    assert texts == ["That is over your daily limit of 1000.", "How much?"]
    state = await bot.processor.state("c1")
    assert state.slot("amount") is None
    assert state.top is not None and state.top.retries == 1
    rejected = of(await bot.events(), ev.SlotRejected)
    assert rejected[0].name == "amount" and rejected[0].response == "utter_too_much"


async def test_a_value_of_the_wrong_type_is_rejected_with_the_reason(bot: Bot) -> None:
    await bot.say("/check_balance")
    texts = await bot.texts('/inform{"account": "crypto"}')
    assert texts[0].startswith("Sorry, that doesn't look right: expected one of checking, savings")
    assert texts[1] == "Which account, checking or savings?"


async def test_after_max_retries_the_flow_gives_up_and_falls_back(bot: Bot) -> None:
    await bot.say('/transfer_money{"recipient": "Ann"}')
    await bot.say('/inform{"amount": 5000}')  # retry 1 (max_retries: 1)
    texts = await bot.texts('/inform{"amount": 7000}')  # retry 2 > 1: give up
    state = await bot.processor.state("c1")
    assert state.stack == ()
    events = await bot.events()
    assert ev.FlowCancelled("transfer_money", "max_retries") in events
    assert of(events, ev.FallbackTriggered)[-1].reason == "max_retries"
    assert texts[-1] == "Sorry, could you rephrase?"


async def test_a_message_that_does_not_answer_counts_as_a_retry(bot: Bot) -> None:
    await bot.say("/transfer_money")
    bot.nlu.understands("hmm", ("chitchat", 0.3), ("greet", 0.25))
    assert await bot.texts("hmm") == ["Who should receive the money?"]
    decided = of(await bot.events(), ev.PolicyDecided)[-1]
    assert decided.policy == "flow_policy" and "waiting for recipient" in decided.reason


# --------------------------------------------------------------------------- policies


async def test_a_rule_outranks_a_flow_and_the_flow_asks_again(bot: Bot) -> None:
    await bot.say("/transfer_money")
    bot.nlu.understands("how are you", ("chitchat", 0.9), ("greet", 0.05))
    texts = await bot.texts("how are you")
    assert texts == ["I'm fine, thanks.", "Who should receive the money?"]
    decided = of(await bot.events(), ev.PolicyDecided)[-1]
    assert decided.policy == "rule_policy"
    assert "flow_policy" not in decided.reason  # a pending question yields to a confident rule


RULE_FOR_A_FLOW_INTENT = """
rules:
  - rule: balance by phone only
    when:
      intent: check_balance
    then: [utter_chitchat]
"""


@pytest.mark.parametrize(("flow_priority", "winner"), [(5, "rule_policy"), (9, "flow_policy")])
async def test_priorities_decide_between_a_rule_and_a_flow_for_the_same_intent(
    tmp_path: Path, flow_priority: int, winner: str
) -> None:
    order = f"""
policies:
  - {{name: rule_policy, priority: 6}}
  - {{name: flow_policy, priority: {flow_priority}}}
  - {{name: fallback_policy, priority: 1}}
"""
    project = bank_project(tmp_path, {"policies/order.yml": order, "policies/more_rules.yml": RULE_FOR_A_FLOW_INTENT})
    bot = make_bot(project, TOOLS)
    result = await bot.say("/check_balance")
    assert result.decision is not None and result.decision.policy == winner
    loser = "flow_policy (trigger)" if winner == "rule_policy" else "rule_policy (rule)"
    assert f"outranked: {loser}" in result.decision.reason
    expected = "I'm fine, thanks." if winner == "rule_policy" else "Which account, checking or savings?"
    assert [m.text for m in result.messages] == [expected]


async def test_an_answer_is_not_taken_by_a_rule(bot: Bot) -> None:
    await bot.say("/give_feedback")
    bot.nlu.understands("hello", ("greet", 0.97), ("chitchat", 0.01))
    assert await bot.texts("hello") == ["Thanks for the feedback."]


# --------------------------------------------------------------------------- fallback and handoff


async def test_low_confidence_asks_to_rephrase_with_the_top_intents_as_buttons(bot: Bot) -> None:
    bot.nlu.understands("blorp", ("check_balance", 0.3), ("transfer_money", 0.25), ("greet", 0.1))
    result = await bot.say("blorp")
    assert [m.text for m in result.messages] == ["Sorry, could you rephrase?"]
    assert result.messages[0].buttons == (
        {"title": "balance check", "payload": "/check_balance"},
        {"title": "money transfer", "payload": "/transfer_money"},
    )
    assert of(list(result.events), ev.FallbackTriggered) == [
        ev.FallbackTriggered("low_confidence", ("check_balance", "transfer_money"))
    ]


async def test_ambiguous_intents_fall_back(bot: Bot) -> None:
    bot.nlu.understands("money stuff", ("check_balance", 0.52), ("transfer_money", 0.45))
    result = await bot.say("money stuff")
    assert of(list(result.events), ev.FallbackTriggered)[0].reason == "ambiguous"


async def test_repeated_fallback_hands_over_and_the_bot_stays_silent_until_released(bot: Bot) -> None:
    bot.nlu.understands("blorp", ("check_balance", 0.3), ("greet", 0.1))
    await bot.say("blorp")
    result = await bot.say("blorp")
    assert [m.text for m in result.messages] == ["Passing you to a person."]
    assert ev.HandoffRequested("repeated_fallback") in result.events
    silent = await bot.say("/greet")
    assert silent.messages == ()
    assert silent.decision is not None and "stays silent" in silent.decision.reason
    await bot.processor.release_handoff("c1")
    assert await bot.texts("/greet") == ["Hello!"]


async def test_a_fallback_between_two_good_turns_does_not_count_towards_handoff(bot: Bot) -> None:
    bot.nlu.understands("blorp", ("check_balance", 0.3), ("greet", 0.1))
    await bot.say("blorp")
    await bot.say("/greet")
    result = await bot.say("blorp")
    assert ev.HandoffRequested("repeated_fallback") not in result.events


async def test_asking_for_a_person_hands_over(bot: Bot) -> None:
    await bot.say("/transfer_money")
    bot.nlu.understands("talk to a human", ("human_handoff", 0.92), ("greet", 0.02))
    result = await bot.say("talk to a human")
    assert [m.text for m in result.messages] == ["Passing you to a person."]
    assert ev.HandoffRequested("user_request") in result.events
    assert ev.FlowCancelled("transfer_money", "handoff") in result.events


async def test_an_unhandled_confident_intent_gets_the_default_response(bot: Bot) -> None:
    assert await bot.texts("/affirm") == ["I can't help with that."]


# --------------------------------------------------------------------------- tools


async def test_a_failing_tool_takes_the_declared_failure_branch(project: Project) -> None:
    def broken(ctx: ActionContext) -> list[Event]:
        raise ToolHttpError(500, "bank core down")

    bot = make_bot(project, {**TOOLS, "do_transfer": broken})
    await bot.say('/transfer_money{"recipient": "Ann", "amount": 30}')
    result = await bot.say("/affirm")
    assert [m.text for m in result.messages] == ["The transfer did not go through."]
    called = of(list(result.events), ev.ToolCalled)
    assert [(c.status, c.error_type) for c in called] == [("error", "tool_5xx")]
    assert result.state.handoff is None


async def test_a_failing_tool_without_a_branch_says_sorry_and_hands_over(project: Project) -> None:
    def broken(ctx: ActionContext) -> list[Event]:
        raise RuntimeError("boom")

    bot = make_bot(project, {**TOOLS, "get_balance": broken})
    await bot.say('/check_balance{"account": "checking", "pin": "1"}')
    events = await bot.events()
    assert of(events, ev.ToolCalled)[-1].error_type == "tool_error"
    assert ev.HandoffRequested("tool_failure") in events
    assert of(events, ev.BotUttered)[-1].text == "Something went wrong; passing you to a person."
    assert (await bot.processor.state("c1")).stack == ()


async def test_a_slow_tool_times_out(project: Project) -> None:
    async def slow(ctx: ActionContext) -> list[Event]:
        await asyncio.sleep(5)
        return []

    spec = ActionSpec("do_transfer", slow, 0.05, False, 0, "test:slow")
    bot = make_bot(project, {**TOOLS, "do_transfer": spec})
    await bot.say('/transfer_money{"recipient": "Ann", "amount": 30}')
    result = await bot.say("/affirm")
    assert of(list(result.events), ev.ToolCalled)[0].error_type == "tool_timeout"
    assert [m.text for m in result.messages] == ["The transfer did not go through."]


async def test_a_tool_switched_off_answers_unavailable(bot: Bot) -> None:
    bot.tools_off.add("do_transfer")
    await bot.say('/transfer_money{"recipient": "Ann", "amount": 30}')
    result = await bot.say("/affirm")
    assert [m.text for m in result.messages] == ["That service is off right now."]
    assert of(list(result.events), ev.ToolCalled)[0].status == "disabled"
    assert result.state.stack == ()
    bot.tools_off.clear()  # switched back on without a restart
    await bot.say('/transfer_money{"recipient": "Ann", "amount": 30}')
    assert (await bot.texts("/affirm"))[0].startswith("Sent 30.0")


async def test_an_action_setting_an_unknown_slot_or_a_bad_value_is_ignored(project: Project) -> None:
    def sloppy(ctx: ActionContext) -> list[Event]:
        return [SlotSet("nope", 1), SlotSet("balance", "lots"), SlotSet("transfer_id", "TX-1")]

    bot = make_bot(project, {**TOOLS, "do_transfer": sloppy})
    await bot.say('/transfer_money{"recipient": "Ann", "amount": 30}')
    result = await bot.say("/affirm")
    assert result.state.slot("transfer_id") == "TX-1"
    sets = of(list(result.events), SlotSet)
    assert all(s.name != "nope" for s in sets) and SlotSet("balance", "lots") not in sets


async def test_the_loop_limit_stops_a_runaway_flow_with_a_clear_error(bot: Bot) -> None:
    result = await bot.say("/spin")
    assert result.errors and "ran more than 12 steps in one turn" in result.errors[0]
    assert "Fix:" in result.errors[0]
    assert ev.FlowCancelled("spin", "loop_limit") in result.events
    assert [m.text for m in result.messages] == ["Something went wrong; passing you to a person."]


# --------------------------------------------------------------------------- sessions


async def test_a_session_expires_after_inactivity_and_slots_are_not_carried_over(bot: Bot) -> None:
    await bot.say('/transfer_money{"recipient": "Ann"}')
    bot.clock[0] += 11 * 60  # session_expiration_time: 10 minutes
    result = await bot.say("/greet")
    assert [m.text for m in result.messages] == ["Hello!"]
    assert result.state.stack == ()
    assert result.state.slot("recipient") is None  # carry_over_slots_to_new_session: false
    assert len(of(await bot.events(), ev.SessionStarted)) == 2


async def test_within_the_session_nothing_is_reset(bot: Bot) -> None:
    await bot.say('/transfer_money{"recipient": "Ann"}')
    bot.clock[0] += 9 * 60
    assert await bot.texts('/inform{"amount": 10}') == ["Send 10.0 to Ann?"]


async def test_restart_forgets_everything(bot: Bot) -> None:
    await bot.say('/transfer_money{"recipient": "Ann"}')
    result = await bot.say("/restart")
    assert result.state.stack == () and result.state.slot("recipient") is None
    assert ev.Restarted() in result.events


async def test_the_same_message_id_is_processed_once(bot: Bot) -> None:
    first = await bot.say("/greet", message_id="m-1")
    again = await bot.say("/greet", message_id="m-1")
    assert [m.text for m in first.messages] == ["Hello!"]
    assert again.duplicate and again.events == ()
    assert len(of(await bot.events(), ev.UserUttered)) == 1


async def test_state_is_a_replay_of_the_stored_events(bot: Bot) -> None:
    await bot.say("/transfer_money")
    await bot.say("/check_balance")
    await bot.say('/inform{"account": "savings"}')
    fresh = make_bot(bot.processor.project, TOOLS, store=bot.store)  # another process, same store
    assert (await fresh.processor.state("c1")).stack == (await bot.processor.state("c1")).stack
    assert await fresh.texts('/inform{"pin": "0"}') == [
        "Your savings balance is 9000.0.",
        "Back to money transfer.",
        "Who should receive the money?",
    ]


async def test_a_rule_with_a_slot_condition_beats_the_plain_rule_when_it_holds(bot: Bot) -> None:
    assert await bot.texts("/greet") == ["Hello!"]
    await bot.say('/inform{"account": "savings"}')
    assert await bot.texts("/greet") == ["Welcome back, valued customer!"]


# --------------------------------------------------------------------------- guardrails


async def test_a_disallowed_topic_gets_its_response_whatever_the_priorities(bot: Bot) -> None:
    await bot.say("/transfer_money")
    bot.nlu.understands("any stock tips for me?", ("transfer_money", 0.9), ("greet", 0.01))
    result = await bot.say("any stock tips for me?")
    assert [m.text for m in result.messages] == ["I can't give investment advice.", "Who should receive the money?"]
    assert result.decision is not None and result.decision.policy == "guardrail_policy"
    assert result.state.handoff is None


async def test_a_keyword_matches_whole_words_only(bot: Bot) -> None:
    bot.nlu.understands("bitcoinish things", ("chitchat", 0.9), ("greet", 0.01))
    assert await bot.texts("bitcoinish things") == ["I'm fine, thanks."]


async def test_strict_policy_hands_a_disallowed_topic_to_a_person(bot: Bot) -> None:
    bot.strict[0] = True  # switched at run time
    bot.nlu.understands("should I buy Bitcoin?", ("chitchat", 0.6), ("greet", 0.1))
    result = await bot.say("should I buy Bitcoin?")
    assert [m.text for m in result.messages] == ["I can't give investment advice."]
    assert ev.HandoffRequested("policy") in result.events
    assert (await bot.say("/greet")).messages == ()


SLOT_TYPES = {
    "domain/limits.yml": """
intents:
  - set_limit
slots:
  limit:
    type: float
    initial_value: 100
  limit_note:
    type: text
""",
    "flows/limits.yml": """
flows:
  set_limit:
    description: Set the daily limit to a fixed value.
    nlu_trigger:
      - intent: set_limit
    steps:
      - set_slots:
          - limit: 5
          - limit_note: lowered
""",
    "nlu_data/limits.yml": """
nlu:
  - intent: set_limit
    examples: |
      - lower my limit
      - set the limit
""",
}


async def test_initial_values_and_set_slots_take_the_slots_type(tmp_path: Path) -> None:
    # A float slot written as `100` or `5` in YAML holds 100.0 and 5.0, as it would when the
    # user said "5": conditions, templates and actions see one type whatever set the value.
    bot = make_bot(bank_project(tmp_path, SLOT_TYPES), TOOLS)
    before = await bot.processor.state("c1")
    assert before.slot("limit") == 100.0 and isinstance(before.slot("limit"), float)
    await bot.say("/set_limit")
    sets = [e for e in await bot.events() if isinstance(e, SlotSet) and e.name == "limit"]
    assert [(s.value, type(s.value)) for s in sets] == [(5.0, float)]
    state = await bot.processor.state("c1")
    assert isinstance(state.slot("limit"), float)
    assert state.slot("limit_note") == "lowered"


async def test_logs_from_a_tool_and_its_failure_carry_the_turn(
    project: Project, caplog: pytest.LogCaptureFixture
) -> None:
    # The tool runs on a worker thread; what it logs belongs to the turn all the same.
    import json
    import logging

    from engine import structured_logs

    def failing_transfer(ctx: ActionContext) -> list[Event]:
        logging.getLogger("bank.transfers").warning("core banking refused the transfer")
        raise ToolHttpError(503, "core banking is down")

    saved = logging.getLogRecordFactory()
    structured_logs.stamp_turn_context()
    try:
        bot = make_bot(project, {**TOOLS, "do_transfer": failing_transfer})
        await bot.say('/transfer_money{"recipient": "Ann", "amount": 20}')
        with caplog.at_level(logging.WARNING):
            await bot.say("/affirm")
    finally:
        logging.setLogRecordFactory(saved)
    turn_id = [e for e in await bot.events() if isinstance(e, ev.UserUttered)][-1].turn_id
    by_message = {r.getMessage(): r for r in caplog.records}
    written = {m: json.loads(structured_logs.JsonFormatter().format(r)) for m, r in by_message.items()}
    for message in ("core banking refused the transfer", "tool failed"):
        line = written[message]
        assert (line["session_id"], line["turn_id"], line["node"]) == ("c1", turn_id, "EXEC"), message
    failed = written["tool failed"]
    assert (failed["tool_name"], failed["outcome"], failed["error_type"]) == ("do_transfer", "error", "tool_5xx")
