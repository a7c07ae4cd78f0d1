"""Documents for the loader fuzz tests: a small valid project, and Hypothesis strategies
for files that follow the schemas closely enough to reach the builders and cross-checks
(with random values mixed in, rarely, so most files still pass the schema stage)."""

from __future__ import annotations

import io
import json
from typing import Any

from hypothesis import strategies as st
from ruamel.yaml import YAML

KINDS = ("domain", "flows", "policies", "nlu_data")

MINIMAL: dict[str, str] = {
    "domain/domain.yml": """\
intents:
  - greet
  - bye:
      use_entities: [city]
entities:
  - city:
      roles: [from, to]
slots:
  name:
    type: text
    mappings:
      - type: from_text
  level:
    type: categorical
    values: [low, high]
    mappings:
      - type: from_intent
        intent: greet
        value: low
responses:
  utter_greet:
    - text: "Hi {name}"
      condition: "level == 'low'"
    - text: Hello
  utter_ask_name:
    - text: What is your name?
  utter_ask_level:
    - text: Which level?
      buttons:
        - {title: Low, payload: /greet}
actions:
  - action_check
""",
    "flows/flows.yml": """\
flows:
  greet_flow:
    description: Greet the user.
    nlu_trigger:
      - intent: greet
    steps:
      - collect: name
        rejections:
          - if: "name == 'x'"
            utter: utter_greet
      - id: check
        action: action_check
        on_failure: END
        next:
          - if: level is set
            then: done
          - else: ask
      - id: ask
        collect: level
      - id: done
        utter: utter_greet
""",
    "nlu_data/nlu.yml": """\
nlu:
  - intent: greet
    examples: |
      - hi
      - hello
      - hey there
      - good morning
      - good evening
      - hi from [Paris]{"entity": "city", "role": "from"}
      - howdy
      - greetings
      - hello bot
      - hey
  - intent: bye
    examples:
      - bye
      - goodbye
      - see you
      - see you later
      - bye bye
      - farewell
      - later
      - ciao
      - cheers
      - good night
""",
    "policies/policies.yml": """\
rules:
  - rule: say bye
    when:
      intent: bye
      if: name is set
    then: [utter_greet]
""",
}


def dump_yaml(data: Any, style: str) -> str:
    if style == "json":
        return json.dumps(data, indent=1)
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = style == "flow"
    out = io.StringIO()
    yaml.dump(data, out)
    return out.getvalue()


NAMES = ["greet", "bye", "name", "level", "city", "utter_greet", "utter_ask_name", "action_check", "greet_flow"]
NAMES += ["f2", "END", "check", "ask", "done", "s1", "missing", "x-1", "action_listen"]


def rarely(usual: st.SearchStrategy[Any], odd: st.SearchStrategy[Any], one_in: int = 10) -> st.SearchStrategy[Any]:
    """``usual``, and one time in ``one_in`` ``odd`` (kept rare so most files pass the schemas)."""
    return st.integers(1, one_in).flatmap(lambda i: odd if i == 1 else usual)


name = rarely(st.sampled_from(NAMES), st.sampled_from(["1bad", "a b", ""]), 50)
scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    name,
    st.text(max_size=12),
)


def _nested(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8) | name, inner, max_size=3)


anything = st.recursive(scalar, _nested, max_leaves=12)


def mostly(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Usually a well-formed value, sometimes anything at all."""
    return rarely(strategy, anything, 25)


COND_BITS = ["name", "slots.level", "level", "x", "==", "!=", "<", ">=", "'low'", '"high"', "1", "-2.5", "1e3"]
COND_BITS += ["true", "null", "and", "or", "not", "is", "set", "in", "[", "]", "(", ")", ",", "=", "a.b.c", "'"]
condition = st.one_of(
    st.sampled_from(["name is set", "level == 'low'", "level in ['low', 'mid']", "not name", "x > 1 or y"]),
    st.lists(st.sampled_from(COND_BITS), min_size=1, max_size=8).map(" ".join),
    st.text(min_size=1, max_size=20),
)
target = st.sampled_from(["END", "s1", "s2", "check", "missing"])
next_ = st.one_of(
    target,
    st.lists(
        st.fixed_dictionaries({"if": condition, "then": target}) | st.fixed_dictionaries({"else": target}),
        min_size=1,
        max_size=3,
    ),
)
step_id = st.sampled_from(["s1", "s2", "check", "s1"])
common = {"id": step_id, "next": next_, "description": st.text(max_size=5)}
steps = st.one_of(
    st.fixed_dictionaries(
        {"collect": name},
        optional={
            **common,
            "utter": name,
            "ask_before_filling": st.booleans(),
            "max_retries": st.integers(-1, 3),
            "rejections": st.lists(st.fixed_dictionaries({"if": condition, "utter": name}), max_size=2),
        },
    ),
    st.fixed_dictionaries({"action": name}, optional={**common, "on_failure": target}),
    st.fixed_dictionaries({"utter": name}, optional=common),
    st.fixed_dictionaries(
        {"set_slots": st.lists(st.dictionaries(name, scalar, min_size=1, max_size=1), min_size=1, max_size=2)},
        optional=common,
    ),
    st.fixed_dictionaries({"noop": st.just(True), "next": next_}, optional={"id": step_id}),
    st.fixed_dictionaries({"link": name}, optional={"id": step_id}),
    st.fixed_dictionaries({"call": name}, optional=common),
)
flow = st.fixed_dictionaries(
    {"description": st.text(min_size=1, max_size=8), "steps": st.lists(mostly(steps), min_size=1, max_size=5)},
    optional={
        "if": condition,
        "mode": st.sampled_from(["STEP_BY_STEP", "SLOT_FILLING"]),
        "nlu_trigger": st.lists(
            st.fixed_dictionaries({"intent": name}, optional={"confidence_threshold": st.floats(0, 1)}),
            min_size=1,
            max_size=2,
        ),
        "persisted_slots": st.lists(name, max_size=2, unique=True),
        "max_retries": st.integers(0, 3),
    },
)
flows_doc = st.fixed_dictionaries({"flows": st.dictionaries(name, mostly(flow), min_size=1, max_size=3)})

intents = name | st.lists(name, min_size=1, max_size=2)
MAPPINGS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "from_entity": ({"entity": name}, {"role": name, "group": name, "intent": intents, "active_flow": name}),
    "from_intent": ({"intent": intents, "value": scalar}, {"not_intent": intents}),
    "from_text": ({}, {"intent": intents, "not_intent": intents, "active_flow": name}),
    "controlled": ({}, {"active_flow": name}),
}
mapping = st.sampled_from(sorted(MAPPINGS)).flatmap(
    lambda t: st.fixed_dictionaries({"type": st.just(t), **MAPPINGS[t][0]}, optional=MAPPINGS[t][1])
)
TYPED_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "text": st.text(max_size=5),
    "bool": st.booleans(),
    "categorical": st.sampled_from(["low", "high", "mid", 1]),
    "float": st.integers(-9, 9) | st.floats(-9, 9),
    "list": st.lists(scalar, max_size=2),
    "any": scalar,
}
SLOT_EXTRAS: dict[str, dict[str, Any]] = {
    "categorical": {
        "values": st.lists(st.sampled_from(["low", "high", 1, 2.5, True]), min_size=1, max_size=3, unique=True)
    },
    "float": {"min_value": st.integers(-5, 5), "max_value": st.integers(-5, 5)},
}
slot = st.sampled_from(sorted(TYPED_VALUES)).flatmap(
    lambda t: st.fixed_dictionaries(
        {"type": st.just(t), **({"values": SLOT_EXTRAS[t]["values"]} if t == "categorical" else {})},
        optional={
            "initial_value": rarely(TYPED_VALUES[t], scalar),
            "mappings": st.lists(mostly(mapping), max_size=2),
            **({k: v for k, v in SLOT_EXTRAS.get(t, {}).items() if k != "values"}),
        },
    )
)
button = st.fixed_dictionaries({"title": st.just("B"), "payload": st.sampled_from(["/greet", "/nope", "/bye{}", "x"])})
variation = st.fixed_dictionaries(
    {"text": st.sampled_from(["Hi {name}", "{missing}", "{", "}{", "{name!r}", "{0}", "plain", "{level.x}"])},
    optional={
        "condition": condition
        | st.lists(st.fixed_dictionaries({"type": st.just("slot"), "name": name, "value": scalar}), min_size=1),
        "buttons": st.lists(button, max_size=2),
        "channel": st.just("web"),
    },
)
domain_doc = st.fixed_dictionaries(
    {},
    optional={
        "intents": st.lists(name | st.dictionaries(name, st.just({"use_entities": ["city", "nope"]}), min_size=1,
                                                   max_size=1), max_size=4),
        "entities": st.lists(name | st.just({"city": {"roles": ["from"], "groups": ["g"]}}), max_size=3),
        "slots": st.dictionaries(name, mostly(slot), max_size=3),
        "responses": st.dictionaries(name, st.lists(mostly(variation), min_size=1, max_size=2), max_size=3),
        "actions": st.lists(name, max_size=3),
        "session_config": st.fixed_dictionaries({}, optional={"session_expiration_time": st.integers(0, 60)}),
    },
)  # fmt: skip
example = st.one_of(
    st.sampled_from(["hi", "hello there", "from [Paris](city)", "[x](city:to)", "[a]{bad}", "[b](1x)", "[c]("]),
    st.sampled_from(['[P]{"entity": "city", "role": "nope"}', '[P]{"entity": 3}', '[P]{"x": 1, "entity": "c"}']),
    st.text(alphabet="ab []{}():\"',-\n", min_size=1, max_size=20),
)
nlu_entry = st.one_of(
    st.fixed_dictionaries({"intent": name, "examples": st.lists(example, min_size=1, max_size=4)}),
    st.fixed_dictionaries(
        {"intent": name, "examples": st.lists(example, min_size=1, max_size=4).map(lambda xs: "- " + "\n- ".join(xs))}
    ),
    st.fixed_dictionaries({"synonym": st.just("canon"), "examples": st.lists(example, min_size=1, max_size=2)}),
    st.fixed_dictionaries({"regex": name, "examples": st.lists(st.sampled_from(["\\d+", "(", "[a-", "a{2}"]), min_size=1)}),
    st.fixed_dictionaries({"lookup": name, "examples": st.lists(example, min_size=1, max_size=2)}),
)  # fmt: skip
nlu_doc = st.fixed_dictionaries(
    {"nlu": st.lists(mostly(nlu_entry), max_size=4)}, optional={"language": st.sampled_from(["en", "ja", "EN"])}
)
rule = st.fixed_dictionaries(
    {
        "rule": st.sampled_from(["r1", "r2", "say bye"]),
        "when": st.fixed_dictionaries({"intent": name}, optional={"if": condition}),
        "then": st.lists(name, min_size=1, max_size=2),
    }
)
policies_doc = st.fixed_dictionaries(
    {},
    optional={
        "rules": st.lists(mostly(rule), max_size=3),
        "fallback": st.fixed_dictionaries({}, optional={"response": name}),
        "handoff": st.fixed_dictionaries({}, optional={"intents": st.lists(name, max_size=2), "response": name}),
        "emergency": st.fixed_dictionaries({}, optional={"tools": st.dictionaries(name, st.booleans(), max_size=2)}),
        "guardrails": st.fixed_dictionaries(
            {},
            optional={
                "disallowed_topics": st.lists(
                    st.fixed_dictionaries({"name": name, "keywords": st.just(["k"]), "response": name}), max_size=1
                )
            },
        ),
        "nlu_threshold": st.floats(0, 1),
        "pipeline": st.lists(st.fixed_dictionaries({"name": st.just("classifier.linear.v1")}), min_size=1),
    },
)
DOCS = {"domain": domain_doc, "flows": flows_doc, "nlu_data": nlu_doc, "policies": policies_doc}
# Random values under the real top-level keys: past the file-level schema, into the details.
UNDER_KEYS = st.one_of(
    st.builds(lambda k, v: {"flows": {k: v}}, name, anything),
    st.builds(lambda k, v: {"slots": {k: v}}, name, anything),
    st.builds(lambda k, v: {"responses": {k: v}}, name, anything),
    st.builds(lambda v: {"nlu": v}, st.lists(anything, max_size=3)),
    st.builds(lambda v: {"rules": v}, st.lists(anything, max_size=3)),
)
