"""Read ``taiwa eval`` JSON reports and compare a run with a baseline run.

The report is the baseline format: a later run is compared with it metric by metric and
case by case, so a regression shows at once as a metric delta, a newly failing case (with
its cause and priority) or a change of versions that explains both.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from engine.diagnostics import EngineError

Report = Mapping[str, Any]
"""A ``taiwa eval`` JSON report, as parsed (``schema_version`` 1)."""

REPORT_SCHEMA_VERSION = 1
CAUSES = ("IR", "mode", "slot", "exec", "policy", "NLG")
"""Failure causes, in pipeline order."""

Unit = Literal["fraction", "ms", "count"]
Better = Literal["higher", "lower"] | None


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """One scalar of the report that can be compared and gated."""

    name: str
    """Dotted path in the report, e.g. ``latency_ms.p95``."""
    unit: Unit
    better: Better
    """Which direction is an improvement; None when neither is."""


def _specs(names: Sequence[str], unit: Unit, better: Better) -> tuple[MetricSpec, ...]:
    return tuple(MetricSpec(n, unit, better) for n in names)


SUMMARY_METRICS: tuple[MetricSpec, ...] = (
    *_specs(
        (
            "task_success_rate",
            "response_accuracy",
            "intent_accuracy",
            "intent_accuracy_by_group.in_scope",
            "intent_accuracy_by_group.oos",
            "intent_accuracy_by_group.smalltalk",
            "slot_precision",
            "slot_recall",
            "slot_f1",
        ),
        "fraction",
        "higher",
    ),
    MetricSpec("fallback_rate", "fraction", "lower"),
    MetricSpec("handoff_rate", "fraction", None),
    *_specs(("latency_ms.p50", "latency_ms.p95", "latency_ms.mean"), "ms", "lower"),
    MetricSpec("n_cases", "count", None),
    MetricSpec("n_turns", "count", None),
    MetricSpec("n_passed", "count", "higher"),
    MetricSpec("n_failed", "count", "lower"),
)
"""The metrics a comparison shows, in display order (``n_failed`` is n_cases - n_passed)."""

REPORT_METRICS: dict[str, MetricSpec] = {
    spec.name: spec for spec in (*SUMMARY_METRICS, *_specs([f"cause_counts.{c}" for c in CAUSES], "count", "lower"))
}
"""Every metric a gate may name (``policies.schema.json`` lists the same names)."""


class ReportError(EngineError, ValueError):
    """A report file (usually ``--baseline``) cannot be used."""

    def __init__(self, path: Path, problem: str, fix: str) -> None:
        self.path = path
        self.problem = problem
        self.fix = fix
        super().__init__(f"{path}: {problem}")


def load_report(path: Path) -> dict[str, Any]:
    """Read a JSON report written by ``taiwa eval --report``; raise :class:`ReportError` if unusable."""
    fix = "pass a report written by `taiwa eval --report FILE` (schema_version 1)"
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError:
        raise ReportError(path, "no such file", fix) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ReportError(path, f"cannot be read: {exc}", fix) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ReportError(path, f"is not JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})", fix) from None
    if not isinstance(data, dict):
        raise ReportError(path, f"is not a report: the top level is a JSON {type(data).__name__}", fix)
    version = data.get("schema_version")
    if version != REPORT_SCHEMA_VERSION:
        raise ReportError(
            path,
            f"has schema_version {json.dumps(version)}, expected {REPORT_SCHEMA_VERSION}",
            "re-run the baseline with this version of taiwa (`taiwa eval --report FILE`)",
        )
    return data


def metric_value(report: Report, name: str) -> float | None:
    """The number at dotted ``name`` in the report; None when absent or not a number."""
    if name == "n_failed":
        n_cases, n_passed = metric_value(report, "n_cases"), metric_value(report, "n_passed")
        return None if n_cases is None or n_passed is None else n_cases - n_passed
    node: Any = report
    for part in name.split("."):
        if not isinstance(node, Mapping):
            return None
        node = node.get(part)
    if isinstance(node, bool) or not isinstance(node, int | float):
        return None
    return float(node)


# -- cases ----------------------------------------------------------------------------

_PRIORITY = re.compile(r"^P\d$")
_USE_CASE_KEYS = ("use_case", "usecase", "use-case")


def tag_value(tags: object, key: str) -> str | None:
    """A tag's value from a dict of tags, or from a list of ``key:value`` / ``key=value`` tags."""
    if isinstance(tags, Mapping):
        value = tags.get(key)
        return None if value is None else str(value)
    if isinstance(tags, list):
        for tag in tags:
            text = str(tag)
            for sep in (":", "="):
                head, found, tail = text.partition(sep)
                if found and head.strip() == key:
                    return tail.strip()
    return None


def use_case_of(tags: object) -> str | None:
    """The use-case tag: ``use_case`` of a dict, else the first plain word of a list."""
    for key in _USE_CASE_KEYS:
        value = tag_value(tags, key)
        if value:
            return value
    if isinstance(tags, list):
        for tag in tags:
            text = str(tag)
            if text and not _PRIORITY.match(text) and ":" not in text and "=" not in text:
                return text
    return None


def priority_of(case: Mapping[str, Any]) -> str | None:
    """``priority`` of a case entry, else its priority tag."""
    priority = case.get("priority")
    if isinstance(priority, str) and priority:
        return priority
    tags = case.get("tags")
    found = tag_value(tags, "priority")
    if found:
        return found
    if isinstance(tags, list):
        return next((str(t) for t in tags if _PRIORITY.match(str(t))), None)
    return None


def tags_text(tags: object) -> str:
    """Tags for display: ``key=value, ...`` for a dict, comma-separated for a list."""
    if isinstance(tags, Mapping):
        return ", ".join(f"{k}={v}" for k, v in tags.items())
    if isinstance(tags, list):
        return ", ".join(str(t) for t in tags)
    return ""


@dataclass(frozen=True, slots=True)
class CaseOutcome:
    """How one golden case ended in one report."""

    case_id: str
    passed: bool
    priority: str | None = None
    cause: str | None = None
    """The first failing turn's cause (IR, mode, slot, exec, policy, NLG); None if it passed."""
    turn: int | None = None
    """The first failing turn (as the report numbers it)."""


def case_outcomes(report: Report) -> dict[str, CaseOutcome]:
    """Every case of the report by id (from ``cases``; ``failed_cases`` fills the gaps)."""
    failed = {str(c.get("case_id")): c for c in _dicts(report.get("failed_cases"))}
    out: dict[str, CaseOutcome] = {}
    for case in _dicts(report.get("cases")):
        case_id = str(case.get("case_id"))
        detail = failed.get(case_id, {})
        out[case_id] = CaseOutcome(
            case_id,
            bool(case.get("passed")),
            priority_of(case) or priority_of(detail),
            _str_or_none(case.get("cause") or detail.get("cause")),
            _int_or_none(case.get("turn") if case.get("turn") is not None else detail.get("turn")),
        )
    for case_id, detail in failed.items():
        if case_id not in out:
            cause, turn = _str_or_none(detail.get("cause")), _int_or_none(detail.get("turn"))
            out[case_id] = CaseOutcome(case_id, False, priority_of(detail), cause, turn)
    return out


def _dicts(value: object) -> list[Mapping[str, Any]]:
    return [v for v in value if isinstance(v, Mapping)] if isinstance(value, list) else []


def _str_or_none(value: object) -> str | None:
    return None if value is None else str(value)


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


# -- comparison -----------------------------------------------------------------------

Trend = Literal["better", "worse", "same", "changed", "n/a"]


@dataclass(frozen=True, slots=True)
class MetricDelta:
    """One metric in both runs."""

    spec: MetricSpec
    baseline: float | None
    current: float | None

    @property
    def delta(self) -> float | None:
        """current - baseline; None when either run lacks the metric."""
        if self.baseline is None or self.current is None:
            return None
        return self.current - self.baseline

    @property
    def trend(self) -> Trend:
        delta = self.delta
        if delta is None:
            return "n/a"
        if abs(delta) < 1e-9:
            return "same"
        if self.spec.better is None:
            return "changed"
        return "better" if (delta > 0) == (self.spec.better == "higher") else "worse"


@dataclass(frozen=True, slots=True)
class CauseDelta:
    cause: str
    baseline: int
    current: int

    @property
    def delta(self) -> int:
        return self.current - self.baseline


@dataclass(frozen=True, slots=True)
class VersionChange:
    """A version the two runs differ in (``model_id``, ``revisions.flows``, ...)."""

    field: str
    baseline: str | None
    current: str | None


@dataclass(frozen=True)
class Comparison:
    """A run compared with a baseline run."""

    metrics: tuple[MetricDelta, ...]
    newly_failing: tuple[CaseOutcome, ...]
    """Passed in the baseline, fail now (with the current cause and turn)."""
    newly_passing: tuple[CaseOutcome, ...]
    """Failed in the baseline, pass now (with the baseline's cause and turn)."""
    only_in_current: tuple[CaseOutcome, ...]
    """Cases the baseline did not have (new or renamed)."""
    only_in_baseline: tuple[CaseOutcome, ...]
    """Cases that are gone (removed or renamed)."""
    causes: tuple[CauseDelta, ...]
    version_changes: tuple[VersionChange, ...]

    @property
    def versions_differ(self) -> bool:
        """The runs used another model or other assistant files (metric changes may come from that)."""
        return any(c.field == "model_id" or c.field.startswith("revisions.") for c in self.version_changes)

    def metric(self, name: str) -> MetricDelta | None:
        return next((m for m in self.metrics if m.spec.name == name), None)


def compare(current: Report, baseline: Report) -> Comparison:
    """Compare a report with a baseline report (both ``schema_version`` 1)."""
    metrics = tuple(
        MetricDelta(spec, metric_value(baseline, spec.name), metric_value(current, spec.name))
        for spec in SUMMARY_METRICS
    )
    now, before = case_outcomes(current), case_outcomes(baseline)
    newly_failing = [c for cid, c in now.items() if not c.passed and cid in before and before[cid].passed]
    newly_passing = [before[cid] for cid, c in now.items() if c.passed and cid in before and not before[cid].passed]
    return Comparison(
        metrics=metrics,
        newly_failing=tuple(sorted(newly_failing, key=_case_order)),
        newly_passing=tuple(sorted(newly_passing, key=_case_order)),
        only_in_current=tuple(sorted((c for cid, c in now.items() if cid not in before), key=_case_order)),
        only_in_baseline=tuple(sorted((c for cid, c in before.items() if cid not in now), key=_case_order)),
        causes=_cause_deltas(current, baseline),
        version_changes=_version_changes(current, baseline),
    )


def _case_order(case: CaseOutcome) -> tuple[str, str]:
    return (case.priority or "P~", case.case_id)  # P0 first, cases without a priority last


def _cause_counts(report: Report) -> dict[str, int]:
    counts = report.get("cause_counts")
    if not isinstance(counts, Mapping):
        return {}
    return {str(k): int(v) for k, v in counts.items() if isinstance(v, int | float) and not isinstance(v, bool)}


def _cause_deltas(current: Report, baseline: Report) -> tuple[CauseDelta, ...]:
    now, before = _cause_counts(current), _cause_counts(baseline)
    extra = sorted((set(now) | set(before)) - set(CAUSES))
    return tuple(CauseDelta(c, before.get(c, 0), now.get(c, 0)) for c in (*CAUSES, *extra))


def _flat_versions(report: Report) -> dict[str, str | None]:
    versions = report.get("versions")
    if not isinstance(versions, Mapping):
        return {}
    out: dict[str, str | None] = {}
    for key, value in versions.items():
        if isinstance(value, Mapping):
            out.update({f"{key}.{k}": _str_or_none(v) for k, v in value.items()})
        else:
            out[str(key)] = _str_or_none(value)
    return out


def _version_changes(current: Report, baseline: Report) -> tuple[VersionChange, ...]:
    now, before = _flat_versions(current), _flat_versions(baseline)
    fields = sorted(set(now) | set(before), key=lambda f: (f != "model_id", f))
    return tuple(VersionChange(f, before.get(f), now.get(f)) for f in fields if before.get(f) != now.get(f))


# -- rendering ------------------------------------------------------------------------

TREND_STYLES: dict[Trend, str] = {
    "better": "green",
    "worse": "bold red",
    "same": "dim",
    "changed": "yellow",
    "n/a": "dim",
}


def format_number(value: float | None) -> str:
    """Four significant digits (``0.9333``, ``45.68``), whole numbers from 1000 on."""
    if value is None:
        return "—"
    if abs(value) >= 1000 or float(value).is_integer():
        return f"{value:.0f}"
    return f"{value:.4g}"


def format_delta(delta: float | None) -> str:
    if delta is None:
        return "—"
    if abs(delta) < 1e-9:
        return "±0"
    return ("+" if delta > 0 else "-") + format_number(abs(delta))


def render_comparison(console: Console, comparison: Comparison) -> None:
    """Print the comparison: versions, metric deltas, causes and the cases that changed."""
    if comparison.version_changes:
        style = "bold yellow" if comparison.versions_differ else "dim"
        head = "warning: the runs differ in" if comparison.versions_differ else "versions changed:"
        changes = "; ".join(
            f"{c.field} {escape(str(c.baseline))} → {escape(str(c.current))}" for c in comparison.version_changes
        )
        console.print(f"[{style}]{head}[/] {changes}")
    console.print(_metrics_table(comparison))
    console.print(_causes_table(comparison))
    if comparison.newly_failing:
        console.print(_cases_table("Newly failing", comparison.newly_failing, failing=True))
    if comparison.newly_passing:
        console.print(_cases_table("Newly passing", comparison.newly_passing, failing=False))
    for title, cases in (
        ("Only in this run", comparison.only_in_current),
        ("Only in the baseline", comparison.only_in_baseline),
    ):
        if cases:
            console.print(_cases_table(title, cases, failing=None))
    console.print(
        f"{len(comparison.newly_failing)} newly failing, {len(comparison.newly_passing)} newly passing, "
        f"{len(comparison.only_in_current)} new, {len(comparison.only_in_baseline)} gone"
    )


def _metrics_table(comparison: Comparison) -> Table:
    table = Table(title="Metrics vs baseline", title_justify="left")
    table.add_column("metric")
    for name in ("baseline", "current", "Δ"):
        table.add_column(name, justify="right")
    for m in comparison.metrics:
        if m.baseline is None and m.current is None:
            continue
        style = TREND_STYLES[m.trend]
        table.add_row(
            m.spec.name,
            format_number(m.baseline),
            format_number(m.current),
            f"[{style}]{format_delta(m.delta)}[/]",
        )
    return table


def _causes_table(comparison: Comparison) -> Table:
    table = Table(title="Failure causes", title_justify="left")
    table.add_column("cause")
    for name in ("baseline", "current", "Δ"):
        table.add_column(name, justify="right")
    for c in comparison.causes:
        style = "dim" if c.delta == 0 else ("bold red" if c.delta > 0 else "green")
        table.add_row(c.cause, str(c.baseline), str(c.current), f"[{style}]{format_delta(c.delta)}[/]")
    return table


def _cases_table(title: str, cases: Sequence[CaseOutcome], *, failing: bool | None) -> Table:
    table = Table(title=f"{title} ({len(cases)})", title_justify="left")
    for name in ("case_id", "priority", "cause", "turn", *(["result"] if failing is None else [])):
        table.add_column(name)
    for case in cases:
        row = [escape(case.case_id), case.priority or "—", case.cause or "—", _turn_text(case.turn)]
        if failing is None:
            row.append("[green]passed[/]" if case.passed else "[red]failed[/]")
        style = None
        if failing:
            style = "bold white on red" if case.priority == "P0" else "red"
        elif failing is False:
            style = "green"
        table.add_row(*row, style=style)
    return table


def _turn_text(turn: int | None) -> str:
    return "—" if turn is None else str(turn)
