"""Draw compiled flows as Mermaid or Graphviz DOT text.

Drawn from :class:`~engine.flows.graph.FlowGraph`, the same edges the runtime follows.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from engine.flows.graph import FlowGraph
from engine.flows.model import END, ActionStep, CallStep, CollectStep, LinkStep, NoopStep, SetSlotsStep, Step, UtterStep


def step_label(step: Step) -> str:
    """A short human label for a step."""
    if isinstance(step, CollectStep):
        return f"collect {step.slot}"
    if isinstance(step, ActionStep):
        return f"action {step.action}"
    if isinstance(step, UtterStep):
        return f"utter {step.response}"
    if isinstance(step, SetSlotsStep):
        return "set " + ", ".join(f"{n}={v!r}" for n, v, _ in step.values)
    if isinstance(step, LinkStep):
        return f"link → {step.flow}"
    if isinstance(step, CallStep):
        return f"call {step.flow}"
    assert isinstance(step, NoopStep)
    return "noop"


def _node_id(flow_id: str, step_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", f"{flow_id}__{step_id}")


def _mermaid_text(text: str) -> str:
    return text.replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;")


def to_mermaid(graphs: Iterable[FlowGraph]) -> str:
    graphs = list(graphs)
    shown = {g.flow.id for g in graphs}
    lines = ["flowchart TD"]
    for g in graphs:
        fid = g.flow.id
        lines.append(f'  subgraph {_node_id(fid, "sg")}["{_mermaid_text(fid)} ({g.flow.mode})"]')
        lines.append(f'    {_node_id(fid, "START")}(["start {_mermaid_text(fid)}"])')
        lines.append(f'    {_node_id(fid, END)}((("END")))')
        for step in g.flow.steps:
            shape = ('{{"', '"}}') if isinstance(step, CollectStep) else ('["', '"]')
            lines.append(f"    {_node_id(fid, step.id)}{shape[0]}{_mermaid_text(step_label(step))}{shape[1]}")
        lines.append(f"    {_node_id(fid, 'START')} --> {_node_id(fid, g.start)}")
        for step in g.flow.steps:
            for edge in g.edges[step.id]:
                arrow = (
                    " -. " + _mermaid_text(edge.label) + " .-> "
                    if edge.label == "on failure"
                    else (f' -->|"{_mermaid_text(edge.label)}"| ' if edge.label else " --> ")
                )
                lines.append(f"    {_node_id(fid, step.id)}{arrow}{_node_id(fid, edge.target)}")
        lines.append("  end")
    for g in graphs:
        for step in g.flow.steps:
            if isinstance(step, LinkStep | CallStep) and step.flow in shown:
                lines.append(f"  {_node_id(g.flow.id, step.id)} -.->|{step.kind}| {_node_id(step.flow, 'START')}")
    return "\n".join(lines) + "\n"


def _dot_text(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def to_dot(graphs: Iterable[FlowGraph]) -> str:
    graphs = list(graphs)
    shown = {g.flow.id for g in graphs}
    lines = [
        "digraph flows {",
        '  rankdir=TB; node [fontname="Helvetica", fontsize=11]; edge [fontname="Helvetica", fontsize=9];',
    ]
    for g in graphs:
        fid = g.flow.id
        lines.append(f"  subgraph cluster_{_node_id(fid, 'c')} {{")
        lines.append(f'    label="{_dot_text(fid)} ({g.flow.mode})"; style=rounded; color=gray60;')
        lines.append(f'    {_node_id(fid, "START")} [label="start", shape=oval, style=filled, fillcolor="#d7ecff"];')
        lines.append(f'    {_node_id(fid, END)} [label="END", shape=doublecircle];')
        for step in g.flow.steps:
            shape = "hexagon" if isinstance(step, CollectStep) else "box"
            lines.append(f'    {_node_id(fid, step.id)} [label="{_dot_text(step_label(step))}", shape={shape}];')
        lines.append(f"    {_node_id(fid, 'START')} -> {_node_id(fid, g.start)};")
        for step in g.flow.steps:
            for edge in g.edges[step.id]:
                attrs = (
                    f' [label="{_dot_text(edge.label)}"'
                    + (", style=dashed, color=red" if edge.label == "on failure" else "")
                    + "]"
                )
                lines.append(
                    f"    {_node_id(fid, step.id)} -> {_node_id(fid, edge.target)}{attrs if edge.label else ''};"
                )
        lines.append("  }")
    for g in graphs:
        for step in g.flow.steps:
            if isinstance(step, LinkStep | CallStep) and step.flow in shown:
                lines.append(
                    f'  {_node_id(g.flow.id, step.id)} -> {_node_id(step.flow, "START")} [style=dotted, label="{step.kind}"];'
                )
    lines.append("}")
    return "\n".join(lines) + "\n"
