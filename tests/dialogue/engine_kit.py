"""A small bank assistant written inline, and a harness to chat with it in tests.

Messages are either shortcuts (``/inform{"amount": 50}``: intent and entities given, no
NLU) or texts looked up in a :class:`ScriptedNlu` table, so a test states exactly what the
NLU "understood" (confidence, ranking) and checks what the engine does with it.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.actions.registry import ActionContext, ActionSpec
from engine.actions.runner import LocalActionRunner
from engine.dialogue.executor import Switches
from engine.dialogue.processor import MessageProcessor, TurnResult
from engine.events import Event
from engine.loading.project import Project, load_project_or_raise
from engine.nlu.entities import ExtractedEntity
from engine.nlu.model import IntentScore, ParseResult
from engine.stores.memory import InMemoryTrackerStore

DOMAIN = """
intents:
  - greet
  - goodbye
  - transfer_money
  - check_balance
  - give_feedback
  - cancel
  - affirm
  - deny
  - inform
  - human_handoff
  - chitchat
  - spin

entities:
  - amount
  - recipient
  - account
  - pin

slots:
  recipient:
    type: text
    mappings:
      - type: from_entity
        entity: recipient
  amount:
    type: float
    min_value: 1
    mappings:
      - type: from_entity
        entity: amount
  confirm_transfer:
    type: bool
    mappings:
      - type: from_intent
        intent: affirm
        value: true
        active_flow: transfer_money
      - type: from_intent
        intent: deny
        value: false
        active_flow: transfer_money
  account:
    type: categorical
    values: [checking, savings]
    mappings:
      - type: from_entity
        entity: account
  pin:
    type: text
    mappings:
      - type: from_entity
        entity: pin
  balance:
    type: float
    mappings:
      - type: controlled
  transfer_id:
    type: text
    mappings:
      - type: controlled
  feedback:
    type: text
    mappings:
      - type: from_text
        active_flow: feedback
  counter:
    type: float
    initial_value: 0
    mappings:
      - type: controlled

actions:
  - do_transfer
  - get_balance
  - bump

session_config:
  session_expiration_time: 10
  carry_over_slots_to_new_session: false

responses:
  utter_greet:
    - text: "Hello!"
  utter_goodbye:
    - text: "Bye!"
  utter_chitchat:
    - text: "I'm fine, thanks."
  utter_ask_recipient:
    - text: "Who should receive the money?"
  utter_ask_amount:
    - text: "How much?"
  utter_ask_confirm_transfer:
    - text: "Send {amount} to {recipient}?"
      buttons:
        - title: "Yes"
          payload: "/affirm"
        - title: "No"
          payload: "/deny"
  utter_too_much:
    - text: "That is over your daily limit of 1000."
  utter_transfer_done:
    - text: "Sent {amount} to {recipient} ({transfer_id})."
  utter_transfer_failed:
    - text: "The transfer did not go through."
  utter_transfer_cancelled:
    - text: "Transfer cancelled."
  utter_ask_account:
    - text: "Which account, checking or savings?"
  utter_ask_pin:
    - text: "Your PIN?"
  utter_balance:
    - text: "Your {account} balance is {balance}."
  utter_ask_feedback:
    - text: "How did we do?"
  utter_thanks_feedback:
    - text: "Thanks for the feedback."
  utter_ask_rephrase:
    - text: "Sorry, could you rephrase?"
  utter_default:
    - text: "I can't help with that."
  utter_handoff:
    - text: "Passing you to a person."
  utter_tool_failure:
    - text: "Something went wrong; passing you to a person."
  utter_tool_unavailable:
    - text: "That service is off right now."
  utter_flow_cancelled:
    - text: "Okay, stopped."
  utter_flow_resumed:
    - text: "Back to {flow_name}."
  utter_correction_acknowledged:
    - text: "Updated."
  utter_no_investment_advice:
    - text: "I can't give investment advice."
  utter_vip_greet:
    - text: "Welcome back, valued customer!"
"""

FLOWS = """
flows:
  transfer_money:
    name: money transfer
    description: Send money to someone.
    nlu_trigger:
      - intent: transfer_money
        confidence_threshold: 0.6
    max_retries: 1
    steps:
      - collect: recipient
      - collect: amount
        rejections:
          - if: amount > 1000
            utter: utter_too_much
      - collect: confirm_transfer
        ask_before_filling: true
        next:
          - if: confirm_transfer == true
            then: send
          - else: dropped
      - id: send
        action: do_transfer
        on_failure: failed
      - utter: utter_transfer_done
        next: END
      - id: failed
        utter: utter_transfer_failed
        next: END
      - id: dropped
        utter: utter_transfer_cancelled
      - id: dropped_reset
        set_slots:
          - amount: null
        next: END

  check_balance:
    name: balance check
    description: Tell the user their balance.
    nlu_trigger:
      - intent: check_balance
    steps:
      - call: verify
      - action: get_balance
      - utter: utter_balance

  verify:
    name: verification
    description: Ask for the account and PIN, in any order.
    mode: SLOT_FILLING
    steps:
      - collect: account
        reset_after_flow_ends: false
      - collect: pin

  feedback:
    description: Ask for feedback.
    nlu_trigger:
      - intent: give_feedback
    steps:
      - collect: feedback
      - utter: utter_thanks_feedback

  spin:
    description: A flow that loops without ever waiting.
    nlu_trigger:
      - intent: spin
    steps:
      - id: again
        action: bump
        next: again

  goodbye_then_feedback:
    description: Say goodbye, then hand over to the feedback flow.
    nlu_trigger:
      - intent: goodbye
    steps:
      - utter: utter_goodbye
      - link: feedback
"""

RULES = """
rules:
  - rule: greet
    when:
      intent: greet
    then: [utter_greet]
  - rule: greet savers
    when:
      intent: greet
      if: account == 'savings'
    then: [utter_vip_greet]
  - rule: small talk
    when:
      intent: chitchat
    then: [utter_chitchat]
"""

POLICIES = """
nlu_threshold: 0.5
ambiguity_threshold: 0.1
fallback:
  response: utter_ask_rephrase
  max_in_a_row: 2
  offer_top_intents: 2
handoff:
  response: utter_handoff
  intents: [human_handoff]
  failure_response: utter_tool_failure
guardrails:
  disallowed_topics:
    - name: investment_advice
      keywords: [stock tips, bitcoin]
      response: utter_no_investment_advice
emergency:
  tools:
    do_transfer: true
  unavailable_response: utter_tool_unavailable
session:
  max_steps_per_turn: 12
"""

EXAMPLES = {
    "greet": ["hi", "hello", "hey"],
    "goodbye": ["bye", "goodbye", "see you"],
    "transfer_money": ["send money", "transfer money", "pay someone"],
    "check_balance": ["what is my balance", "check balance", "how much money do I have"],
    "give_feedback": ["I have feedback", "give feedback", "rate you"],
    "cancel": ["never mind", "cancel", "forget it"],
    "affirm": ["yes", "yep", "sure"],
    "deny": ["no", "nope", "not now"],
    "inform": ["[50](amount)", "to [Ann](recipient)", "[savings](account)"],
    "human_handoff": ["talk to a human", "a person please", "agent"],
    "chitchat": ["how are you", "what's up", "how is it going"],
    "spin": ["spin", "spin around", "loop"],
}


def _nlu_yaml() -> str:
    lines = ["nlu:"]
    for intent, examples in EXAMPLES.items():
        lines.append(f"  - intent: {intent}")
        lines.append("    examples: |")
        lines.extend(f"      - {e}" for e in examples)
    return "\n".join(lines) + "\n"


def bank_project(tmp_path: Path, overrides: Mapping[str, str] | None = None) -> Project:
    """The bank assistant, with ``overrides`` (relative path -> YAML) written over it."""
    root = tmp_path / "bank"
    files = {
        "domain/domain.yml": DOMAIN,
        "flows/flows.yml": FLOWS,
        "policies/rules.yml": RULES,
        "policies/policies.yml": POLICIES,
        "nlu_data/nlu.yml": _nlu_yaml(),
        **(overrides or {}),
    }
    for rel, text in files.items():
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    return load_project_or_raise(root)


@dataclass
class ScriptedNlu:
    """An NLU whose answers a test writes down: text -> ranking (and entities)."""

    table: dict[str, tuple[list[tuple[str, float]], list[dict[str, Any]]]] = field(default_factory=dict)
    model_id: str = "scripted"

    def understands(self, text: str, *ranking: tuple[str, float], entities: Sequence[dict[str, Any]] = ()) -> None:
        self.table[text] = (list(ranking), list(entities))

    def parse(self, text: str) -> ParseResult:
        ranking, entities = self.table.get(text, ([("chitchat", 0.2), ("greet", 0.15)], []))
        scores = tuple(IntentScore(n, c) for n, c in ranking)
        extracted = tuple(
            ExtractedEntity(
                str(e["entity"]),
                str(e["value"]),
                int(e.get("start", 0)),
                int(e.get("end", 0)),
                str(e.get("text", e["value"])),
                "scripted",
            )
            for e in entities
        )
        return ParseResult(text, scores[0], scores, extracted)


Tool = Callable[[ActionContext], Sequence[Event]]


@dataclass
class Bot:
    processor: MessageProcessor
    nlu: ScriptedNlu
    store: InMemoryTrackerStore
    clock: list[float]
    tools_off: set[str]
    strict: list[bool]

    async def say(self, text: str, cid: str = "c1", **kwargs: Any) -> TurnResult:
        return await self.processor.handle(cid, text, **kwargs)

    async def texts(self, text: str, cid: str = "c1") -> list[str]:
        result = await self.say(text, cid)
        return [m.text or "" for m in result.messages]

    async def events(self, cid: str = "c1") -> list[Event]:
        return await self.store.load(cid)


def make_bot(
    project: Project,
    tools: Mapping[str, Tool | ActionSpec] | None = None,
    *,
    store: InMemoryTrackerStore | None = None,
) -> Bot:
    specs: dict[str, ActionSpec] = {}
    for name, tool in (tools or {}).items():
        specs[name] = tool if isinstance(tool, ActionSpec) else ActionSpec(name, tool, 1.0, False, 0, f"test:{name}")
    nlu = ScriptedNlu()
    clock = [1_000_000.0]
    tools_off: set[str] = set()
    strict = [False]
    store = store or InMemoryTrackerStore()
    processor = MessageProcessor(
        project,
        nlu,  # type: ignore[arg-type]
        store,
        LocalActionRunner(specs),
        clock=lambda: clock[0],
        switches=lambda: Switches(frozenset(tools_off), strict[0]),
        rng=random.Random(7),
    )
    return Bot(processor, nlu, store, clock, tools_off, strict)
