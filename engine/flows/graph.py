"""Compile flows into graphs: resolved edges, reachability and link/call cycles.

This is the "compile" stage of loading. The runtime and ``taiwa visualize`` read the
edges from here, so what is drawn is exactly what runs.

A ``next`` list whose conditions all fail and that has no ``else`` ends the flow.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from engine.flows.model import END, ActionStep, CallStep, Flow, LinkStep, Step


@dataclass(frozen=True, slots=True)
class Edge:
    source: str
    target: str
    """A step id of the same flow, or END."""
    label: str
    """The branch condition, ``else``, ``on failure``, or "" for plain sequence."""


@dataclass(frozen=True)
class FlowGraph:
    flow: Flow
    edges: Mapping[str, tuple[Edge, ...]]
    """Outgoing edges by step id."""
    start: str
    """Id of the first step."""

    def reachable(self) -> set[str]:
        """Ids of the steps reachable from the first step."""
        seen: set[str] = set()
        todo = [self.start]
        while todo:
            current = todo.pop()
            if current in seen or current == END:
                continue
            seen.add(current)
            todo.extend(e.target for e in self.edges.get(current, ()))
        return seen

    def can_end_avoiding(self, flows: set[str]) -> bool:
        """Whether some path reaches END without a link/call into ``flows``."""
        seen: set[str] = set()
        todo = [self.start]
        while todo:
            current = todo.pop()
            if current == END:
                return True
            if current in seen:
                continue
            seen.add(current)
            step = self.flow.step(current)
            if isinstance(step, LinkStep | CallStep) and step.flow in flows:
                continue
            todo.extend(e.target for e in self.edges.get(current, ()))
        return False


def build_graph(flow: Flow) -> FlowGraph:
    """Resolve every step's outgoing edges (targets may name missing steps: see checks)."""
    edges: dict[str, tuple[Edge, ...]] = {}
    for i, step in enumerate(flow.steps):
        following = flow.steps[i + 1].id if i + 1 < len(flow.steps) else END
        edges[step.id] = tuple(_edges(step, following))
    return FlowGraph(flow, edges, flow.steps[0].id)


def _edges(step: Step, following: str) -> list[Edge]:
    out: list[Edge] = []
    if isinstance(step, LinkStep):
        return [Edge(step.id, END, f"link {step.flow}")]
    if step.next is None:
        out.append(Edge(step.id, following, ""))
    else:
        has_else = False
        for branch in step.next:
            if branch.condition is None:
                has_else = True
                out.append(Edge(step.id, branch.target, "" if len(step.next) == 1 else "else"))
            else:
                out.append(Edge(step.id, branch.target, branch.condition.text))
        if not has_else:
            out.append(Edge(step.id, END, "no branch matched"))
    if isinstance(step, ActionStep) and step.on_failure is not None:
        out.append(Edge(step.id, step.on_failure, "on failure"))
    return out


def flow_cycles(flows: Mapping[str, Flow]) -> list[list[str]]:
    """Strongly connected groups of flows that link/call each other (Tarjan)."""
    graph = {
        fid: sorted({s.flow for s in f.steps if isinstance(s, LinkStep | CallStep) and s.flow in flows})
        for fid, f in flows.items()
    }
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []
    counter = 0

    def visit(node: str) -> None:
        nonlocal counter
        index[node] = low[node] = counter
        counter += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                group.append(top)
                if top == node:
                    break
            if len(group) > 1 or node in graph[node]:
                groups.append(sorted(group))

    for fid in sorted(graph):
        if fid not in index:
            visit(fid)
    return groups
