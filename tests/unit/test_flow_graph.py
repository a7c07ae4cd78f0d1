"""Flow graphs: resolved edges, reachability, link/call cycles and ways to END."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest

from engine.flows.graph import Edge, FlowGraph, build_graph, flow_cycles
from engine.flows.model import END, Flow
from engine.loading.build_flows import build_flows
from engine.loading.project import load_project
from engine.loading.schema_check import check_source
from engine.loading.yaml_reader import parse_text

ROOT = Path(__file__).resolve().parents[2]


def load_flows(text: str) -> Mapping[str, Flow]:
    source, diags = parse_text(text, "flows/f.yml", "flows")
    assert source is not None, [d.format() for d in diags]
    assert check_source(source) == [], [d.format() for d in check_source(source)]
    flows, build_diags = build_flows([source])
    assert build_diags == [], [d.format() for d in build_diags]
    return flows


def graph(steps: str, flow_id: str = "f") -> FlowGraph:
    return build_graph(load_flows(f"flows:\n  {flow_id}:\n    description: d\n    steps:\n{steps}")[flow_id])


def edges(g: FlowGraph, step_id: str) -> list[tuple[str, str]]:
    return [(e.target, e.label) for e in g.edges[step_id]]


def test_implicit_next_is_the_following_step_then_end() -> None:
    g = graph("      - {id: a, utter: x}\n      - {id: b, action: y}\n      - {id: c, collect: z}\n")
    assert g.start == "a"
    assert edges(g, "a") == [("b", "")]
    assert edges(g, "b") == [("c", "")]
    assert edges(g, "c") == [(END, "")]
    assert g.edges["a"] == (Edge("a", "b", ""),)


def test_generated_ids_are_used_for_edges() -> None:
    g = graph("      - utter: x\n      - action: y\n")
    first, second = g.flow.steps
    assert g.start == first.id
    assert edges(g, first.id) == [(second.id, "")]


def test_explicit_next_replaces_the_implicit_one() -> None:
    g = graph("      - {id: a, utter: x, next: c}\n      - {id: b, utter: x}\n      - {id: c, utter: x, next: END}\n")
    assert edges(g, "a") == [("c", "")]
    assert edges(g, "c") == [(END, "")]


def test_branches_with_else() -> None:
    g = graph(
        "      - id: a\n        collect: p\n        next:\n"
        "          - if: p == 'high'\n            then: b\n"
        "          - if: p is not set\n            then: END\n"
        "          - else: c\n"
        "      - {id: b, utter: x}\n      - {id: c, utter: x}\n"
    )
    assert edges(g, "a") == [("b", "p == 'high'"), (END, "p is not set"), ("c", "else")]


def test_branches_without_else_end_the_flow() -> None:
    g = graph(
        "      - id: a\n        collect: p\n        next:\n          - if: p\n            then: b\n      - {id: b, utter: x}\n"
    )
    assert edges(g, "a") == [("b", "p"), (END, "no branch matched")]


def test_a_single_else_is_unlabelled() -> None:
    g = graph("      - id: a\n        utter: x\n        next:\n          - else: b\n      - {id: b, utter: x}\n")
    assert edges(g, "a") == [("b", "")]


def test_link_ends_the_flow_and_call_continues() -> None:
    g = graph("      - {id: a, call: other}\n      - {id: b, link: other}\n      - {id: c, utter: x}\n")
    assert edges(g, "a") == [("b", "")]
    assert edges(g, "b") == [(END, "link other")]
    assert g.reachable() == {"a", "b"}


def test_on_failure_is_an_extra_edge() -> None:
    g = graph(
        "      - {id: a, action: act, on_failure: failed}\n      - {id: b, utter: ok, next: END}\n"
        "      - {id: failed, utter: sorry}\n"
    )
    assert edges(g, "a") == [("b", ""), ("failed", "on failure")]
    assert g.reachable() == {"a", "b", "failed"}


def test_on_failure_to_end() -> None:
    g = graph("      - {id: a, action: act, on_failure: END}\n")
    assert edges(g, "a") == [(END, ""), (END, "on failure")]


def test_reachability() -> None:
    g = graph(
        "      - {id: a, utter: x, next: c}\n      - {id: b, utter: x}\n      - {id: c, utter: x, next: END}\n"
        "      - {id: d, utter: x, next: a}\n"
    )
    assert g.reachable() == {"a", "c"}


def test_reachability_ignores_missing_targets() -> None:
    g = graph("      - {id: a, utter: x, next: nowhere}\n      - {id: b, utter: x}\n")
    assert "b" not in g.reachable()  # the missing target itself is E307's business
    assert edges(g, "a") == [("nowhere", "")]


def test_loops_inside_a_flow_terminate() -> None:
    g = graph(
        "      - id: a\n        collect: p\n        next:\n          - if: p\n            then: END\n"
        "          - else: a\n"
    )
    assert g.reachable() == {"a"}
    assert g.can_end_avoiding(set())


def flows(spec: dict[str, list[str]]) -> Mapping[str, Flow]:
    """Flows whose steps are `link X`, `call X`, `end` (a branch to END) or `utter`."""
    lines = ["flows:"]
    for fid, steps in spec.items():
        lines += [f"  {fid}:", "    description: d", "    steps:"]
        for i, step in enumerate(steps):
            if step == "end":
                lines += [f"      - id: s{i}", "        collect: p", "        next:"]
                lines += ["          - if: p", "            then: END", f"          - else: s{i + 1}"]
            else:
                lines.append(f"      - {{id: s{i}, {step.replace(' ', ': ')}}}")
    return load_flows("\n".join(lines) + "\n")


@pytest.mark.parametrize(
    ("spec", "cycles"),
    [
        ({"a": ["utter x"]}, []),
        ({"a": ["link b"], "b": ["utter x"]}, []),
        ({"a": ["call b"], "b": ["call c"], "c": ["utter x"]}, []),
        ({"a": ["link b"], "b": ["link a"]}, [["a", "b"]]),
        ({"a": ["link a"]}, [["a"]]),
        ({"a": ["call a"]}, [["a"]]),
        ({"a": ["call b"], "b": ["link c"], "c": ["link a"], "d": ["link a"]}, [["a", "b", "c"]]),
        ({"a": ["link b"], "b": ["link a"], "c": ["link d"], "d": ["link c"]}, [["a", "b"], ["c", "d"]]),
        ({"a": ["link missing"]}, []),
    ],
)
def test_flow_cycles(spec: dict[str, list[str]], cycles: list[list[str]]) -> None:
    assert sorted(flow_cycles(flows(spec))) == cycles


def test_can_end_avoiding() -> None:
    loop = flows({"a": ["link b"], "b": ["link a"]})
    assert not build_graph(loop["a"]).can_end_avoiding({"a", "b"})
    assert build_graph(loop["a"]).can_end_avoiding({"c"})

    escape = flows({"a": ["end", "link b"], "b": ["link a"]})
    assert build_graph(escape["a"]).can_end_avoiding({"a", "b"})
    assert not build_graph(escape["b"]).can_end_avoiding({"a", "b"})

    self_link = flows({"a": ["utter x", "link a"]})
    assert not build_graph(self_link["a"]).can_end_avoiding({"a"})

    call_then_end = flows({"a": ["call b", "utter x"], "b": ["utter y"]})
    assert build_graph(call_then_end["a"]).can_end_avoiding({"a"})
    assert not build_graph(call_then_end["a"]).can_end_avoiding({"b"})


def test_reference_flows_compile() -> None:
    result = load_project(ROOT, import_actions=False)
    assert result.project is not None
    for fid, g in result.project.graphs.items():
        assert g.flow.id == fid
        assert g.reachable() == {s.id for s in g.flow.steps}
        assert set(g.edges) == {s.id for s in g.flow.steps}
