"""The golden-set report as one self-contained HTML page.

Everything is inline (CSS, images as ``data:`` URIs), so the file can be attached to a CI
run or mailed and opened anywhere without a network. Images need matplotlib, an optional
dependency (``pip install 'taiwa[reports]'``); without it the page still renders, with a
note in place of each image and the confusion matrix as an HTML table. Every piece of
text from the report is escaped: case ids, expectations and bot output are user data.
"""

from __future__ import annotations

import base64
import datetime as dt
import importlib.util
import io
import json
import warnings
from collections.abc import Mapping, Sequence
from html import escape
from pathlib import Path
from typing import Any

from engine.evaluation.baseline import (
    CAUSES,
    SUMMARY_METRICS,
    Comparison,
    MetricDelta,
    Report,
    format_delta,
    format_number,
    metric_value,
    priority_of,
    tags_text,
)
from engine.evaluation.gates import GateResult

HEADLINE = ("task_success_rate", "response_accuracy", "intent_accuracy", "slot_f1", "latency_ms.p95")
NO_MATPLOTLIB = "Image not drawn: matplotlib is not installed (pip install 'taiwa[reports]')."

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1f2933;margin:0;background:#f5f7fa}
main{max-width:1100px;margin:0 auto;padding:24px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #d9e2ec;padding-bottom:4px}
.sub{color:#52606d;margin:0 0 16px}
.cards{display:flex;flex-wrap:wrap;gap:12px}
.card{background:#fff;border:1px solid #d9e2ec;border-radius:8px;padding:10px 14px;min-width:150px}
.card .v{font-size:24px;font-weight:600}.card .k{color:#52606d;font-size:12px}
table{border-collapse:collapse;background:#fff;width:100%;margin:4px 0}
th,td{border:1px solid #d9e2ec;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#eef2f7;font-weight:600}td.n{text-align:right;font-variant-numeric:tabular-nums}
.better{color:#18794e;font-weight:600}.worse{color:#c62828;font-weight:600}.changed{color:#a15c00}.same,.na{color:#7b8794}
.pass{color:#18794e;font-weight:600}.fail{color:#c62828;font-weight:600}.skip{color:#a15c00;font-weight:600}
.badge{display:inline-block;border-radius:4px;padding:0 6px;font-size:12px;font-weight:600}
.p0{background:#c62828;color:#fff}.p1{background:#e3e8ee}.new{background:#fde2e1;color:#c62828}
.warn{background:#fff4ce;border:1px solid #f0c36d;border-radius:6px;padding:8px 12px;margin:8px 0}
.note{color:#7b8794;font-style:italic;background:#fff;border:1px dashed #cbd2d9;padding:16px;border-radius:6px}
code,pre{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:12px}
pre{margin:0;white-space:pre-wrap;word-break:break-word;max-width:360px}
.bar{display:inline-block;height:10px;background:#c62828;border-radius:2px;vertical-align:middle}
img{max-width:100%;background:#fff;border:1px solid #d9e2ec;border-radius:6px}
.scroll{overflow-x:auto}.cm{width:auto}.cm td{text-align:center;min-width:22px;font-size:12px}
.cm th{font-size:12px}.cm thead th{writing-mode:vertical-rl;transform:rotate(180deg);white-space:nowrap}
"""


def matplotlib_available() -> bool:
    return importlib.util.find_spec("matplotlib") is not None


def write_html(
    report: Report,
    path: Path,
    comparison: Comparison | None = None,
    gate_results: Sequence[GateResult] | None = None,
) -> None:
    """Write the HTML report (UTF-8) to ``path``."""
    path.write_text(render_html(report, comparison=comparison, gate_results=gate_results), encoding="utf-8")


def render_html(
    report: Report,
    *,
    comparison: Comparison | None = None,
    gate_results: Sequence[GateResult] | None = None,
    images: bool = True,
) -> str:
    """The page as a string; ``images=False`` (or no matplotlib) draws no image."""
    draw = images and matplotlib_available()
    parts = [
        _header(report, gate_results),
        _cards(report, comparison),
        _gates(gate_results) if gate_results is not None else "",
        _metrics(report, comparison),
        _versions(report, comparison),
        _causes(report, comparison),
        _failed_cases(report, comparison),
        _changes(comparison) if comparison is not None else "",
        _confusion(report, draw),
        _latency(report, draw),
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>taiwa eval report</title><style>{_CSS}</style></head>"
        f"<body><main>{''.join(parts)}</main></body></html>\n"
    )


def _header(report: Report, gate_results: Sequence[GateResult] | None) -> str:
    n_cases, n_passed = metric_value(report, "n_cases"), metric_value(report, "n_passed")
    run = report.get("run")
    bits = [f"{format_number(n_passed)} of {format_number(n_cases)} cases passed"]
    bits.append(f"{format_number(metric_value(report, 'n_turns'))} turns")
    if isinstance(run, Mapping) and run.get("seconds") is not None:
        mode = "Ray" if run.get("ray") else "serial"
        bits.append(
            f"{format_number(metric_value(report, 'run.seconds'))} s ({mode}, {_count(run.get('workers'), 'worker')})"
        )
    if gate_results is not None:
        failed = [r for r in gate_results if not r.passed]
        verdict = (
            f'<span class="fail">✗ {len(failed)} gate(s) violated</span>'
            if failed
            else '<span class="pass">✓ gates pass</span>'
        )
        bits.append(verdict)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f'<h1>taiwa eval report</h1><p class="sub">{" · ".join(bits)} · generated {stamp}</p>'


def _delta_cell(delta: MetricDelta | None) -> str:
    if delta is None:
        return ""
    css = "na" if delta.trend == "n/a" else delta.trend
    return f'<span class="{css}">{escape(format_delta(delta.delta))}</span>'


def _cards(report: Report, comparison: Comparison | None) -> str:
    cards = []
    for name in HEADLINE:
        delta = comparison.metric(name) if comparison else None
        value = format_number(metric_value(report, name)) + (" ms" if name.startswith("latency") else "")
        extra = f" {_delta_cell(delta)}" if delta is not None else ""
        cards.append(
            f'<div class="card"><div class="k">{escape(name)}</div><div class="v">{escape(value)}{extra}</div></div>'
        )
    return f'<div class="cards">{"".join(cards)}</div>'


def _gates(results: Sequence[GateResult]) -> str:
    rows = []
    for r in results:
        status = (
            '<span class="skip">skipped</span>'
            if r.skipped
            else ('<span class="pass">pass</span>' if r.passed else '<span class="fail">FAIL</span>')
        )
        why = f"<br><small>{escape(r.gate.description)}</small>" if r.gate.description else ""
        rows.append(
            f"<tr><td>{status}</td><td><code>{escape(r.gate.label)}</code>{why}</td>"
            f"<td>{escape(r.message)}</td><td>{escape(str(r.gate.loc))}</td></tr>"
        )
    head = "<tr><th>result</th><th>gate</th><th>measured</th><th>declared at</th></tr>"
    return f"<h2>Quality gates</h2><table>{head}{''.join(rows)}</table>"


def _metrics(report: Report, comparison: Comparison | None) -> str:
    head = "<tr><th>metric</th><th>value</th>" + ("<th>baseline</th><th>Δ</th>" if comparison else "") + "</tr>"
    rows = []
    for spec in SUMMARY_METRICS:
        value = metric_value(report, spec.name)
        delta = comparison.metric(spec.name) if comparison else None
        if value is None and (delta is None or delta.baseline is None):
            continue
        row = f"<tr><td>{escape(spec.name)}</td><td class='n'>{format_number(value)}</td>"
        if comparison:
            baseline = delta.baseline if delta else None
            row += f"<td class='n'>{format_number(baseline)}</td><td class='n'>{_delta_cell(delta)}</td>"
        rows.append(row + "</tr>")
    return f"<h2>Metrics</h2><table>{head}{''.join(rows)}</table>"


def _versions(report: Report, comparison: Comparison | None) -> str:
    versions = report.get("versions")
    rows = []
    if isinstance(versions, Mapping):
        for key, value in versions.items():
            if isinstance(value, Mapping):
                rows += [
                    f"<tr><td>{escape(f'{key}.{k}')}</td><td><code>{escape(_text(v) or '—')}</code></td></tr>"
                    for k, v in value.items()
                ]
            else:
                rows.append(f"<tr><td>{escape(str(key))}</td><td><code>{escape(_text(value) or '—')}</code></td></tr>")
    warn = ""
    if comparison is not None and comparison.version_changes:
        changes = "; ".join(
            f"<code>{escape(c.field)}</code> {escape(str(c.baseline))} → {escape(str(c.current))}"
            for c in comparison.version_changes
        )
        lead = "The runs differ in" if comparison.versions_differ else "Versions changed:"
        warn = f'<div class="warn">{lead} {changes}</div>'
    return f"<h2>Versions</h2>{warn}<table><tr><th>what</th><th>version</th></tr>{''.join(rows)}</table>"


def _causes(report: Report, comparison: Comparison | None) -> str:
    raw = report.get("cause_counts")
    counts: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
    deltas = {c.cause: c for c in comparison.causes} if comparison else {}
    names = [*CAUSES, *sorted(k for k in counts if k not in CAUSES)]
    top = max([1, *(int(counts.get(c, 0) or 0) for c in names)])
    rows = []
    for cause in names:
        n = int(counts.get(cause, 0) or 0)
        bar = f'<span class="bar" style="width:{round(120 * n / top)}px"></span>' if n else ""
        cell = ""
        if comparison:
            d = deltas.get(cause)
            css = "same" if d is None or d.delta == 0 else ("worse" if d.delta > 0 else "better")
            cell = f"<td class='n'><span class='{css}'>{format_delta(d.delta if d else 0)}</span></td>"
        rows.append(f"<tr><td>{escape(cause)}</td><td class='n'>{n}</td>{cell}<td>{bar}</td></tr>")
    head = "<tr><th>cause</th><th>failed cases</th>" + ("<th>Δ</th>" if comparison else "") + "<th></th></tr>"
    return f"<h2>Failure causes</h2><table>{head}{''.join(rows)}</table>"


def _failed_cases(report: Report, comparison: Comparison | None) -> str:
    failed = [c for c in report.get("failed_cases") or [] if isinstance(c, Mapping)]
    if not failed:
        return '<h2>Failed cases</h2><p class="pass">No case failed.</p>'
    new = {c.case_id for c in comparison.newly_failing} if comparison else set()
    new |= {c.case_id for c in comparison.only_in_current if not c.passed} if comparison else set()
    failed.sort(key=lambda c: (priority_of(c) or "P~", str(c.get("case_id"))))
    rows = []
    for case in failed:
        case_id = str(case.get("case_id"))
        priority = priority_of(case) or ""
        badges = f'<span class="badge {escape(priority.lower())}">{escape(priority)}</span>' if priority else ""
        if case_id in new:
            badges += ' <span class="badge new">new</span>'
        rows.append(
            f"<tr><td><code>{escape(case_id)}</code> {badges}<br><small>{escape(tags_text(case.get('tags')))}</small></td>"
            f"<td>{escape(str(case.get('cause')))}</td><td class='n'>{escape(str(case.get('turn')))}</td>"
            f"<td><pre>{escape(_text(case.get('expected')))}</pre></td><td><pre>{escape(_text(case.get('got')))}</pre></td>"
            f"<td>{escape(_text(case.get('message')))}</td></tr>"
        )
    head = "<tr><th>case</th><th>cause</th><th>turn</th><th>expected</th><th>got</th><th>message</th></tr>"
    return f"<h2>Failed cases ({len(failed)})</h2><table>{head}{''.join(rows)}</table>"


def _count(n: object, word: str) -> str:
    return f"{escape(str(n))} {word}{'' if n == 1 else 's'}"


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _changes(comparison: Comparison) -> str:
    groups = (
        ("Newly failing", comparison.newly_failing),
        ("Newly passing", comparison.newly_passing),
        ("Only in this run", comparison.only_in_current),
        ("Only in the baseline", comparison.only_in_baseline),
    )
    rows = "".join(
        f"<tr><td>{title} ({len(cases)})</td><td>"
        + (
            ", ".join(
                f"<code>{escape(c.case_id)}</code>" + (f" ({escape(c.priority)})" if c.priority else "") for c in cases
            )
            or "—"
        )
        + "</td></tr>"
        for title, cases in groups
    )
    return f"<h2>Changes vs baseline</h2><table>{rows}</table>"


# -- images ---------------------------------------------------------------------------


def _confusion(report: Report, draw: bool) -> str:
    confusion = report.get("confusion")
    labels: list[str] = []
    matrix: list[list[float]] = []
    if isinstance(confusion, Mapping):
        labels = [str(x) for x in confusion.get("labels") or []]
        matrix = [[float(v) for v in row] for row in confusion.get("matrix") or [] if isinstance(row, list)]
    title = "<h2>Intent confusion matrix</h2><p class='sub'>Rows: expected intent; columns: predicted intent.</p>"
    if not labels or len(matrix) != len(labels):
        return title + '<p class="note">No confusion matrix in the report.</p>'
    if draw:
        return title + _img(_confusion_png(labels, matrix), "intent confusion matrix")
    return title + f'<p class="note">{NO_MATPLOTLIB}</p>' + _confusion_table(labels, matrix)


def _confusion_table(labels: list[str], matrix: list[list[float]]) -> str:
    top = max([1.0, *(v for row in matrix for v in row)])
    head = "<thead><tr><th></th>" + "".join(f"<th>{escape(x)}</th>" for x in labels) + "</tr></thead>"
    rows = []
    for label, row in zip(labels, matrix, strict=False):
        cells = "".join(_confusion_cell(v / top, v) for v in row)
        rows.append(f"<tr><th>{escape(label)}</th>{cells}</tr>")
    return f'<div class="scroll"><table class="cm">{head}<tbody>{"".join(rows)}</tbody></table></div>'


def _confusion_cell(intensity: float, value: float) -> str:
    color = "#fff" if intensity > 0.5 else "inherit"
    style = f"background:rgba(31,119,180,{0.9 * intensity:.2f});color:{color}"
    return f'<td style="{style}">{format_number(value) if value else ""}</td>'


def _latency(report: Report, draw: bool) -> str:
    latencies = [
        float(x)
        for case in report.get("cases") or []
        if isinstance(case, Mapping)
        for x in case.get("latencies_ms") or []
        if isinstance(x, int | float) and not isinstance(x, bool)
    ]
    title = "<h2>Turn latency</h2>"
    summary = ", ".join(
        f"{k} {format_number(metric_value(report, f'latency_ms.{k}'))} ms" for k in ("p50", "p95", "mean")
    )
    title += f"<p class='sub'>{len(latencies)} turns: {summary}</p>"
    if not latencies:
        return title + '<p class="note">No turn latencies in the report.</p>'
    if not draw:
        return title + f'<p class="note">{NO_MATPLOTLIB}</p>'
    marks = {k: metric_value(report, f"latency_ms.{k}") for k in ("p50", "p95")}
    return title + _img(_latency_png(latencies, marks), "turn latency histogram")


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'


def _png(figure: Any) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return buffer.getvalue()


def _confusion_png(labels: list[str], matrix: list[list[float]]) -> bytes:
    from matplotlib.figure import Figure

    size = min(16.0, max(4.5, 0.38 * len(labels) + 2.5))
    figure = Figure(figsize=(size, size))
    axes = figure.add_subplot()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # e.g. a glyph missing from the font: cosmetic
        image = axes.imshow(matrix, cmap="Blues")
        axes.set_xticks(range(len(labels)), labels=labels, rotation=90, fontsize=8)
        axes.set_yticks(range(len(labels)), labels=labels, fontsize=8)
        axes.set_xlabel("predicted intent")
        axes.set_ylabel("expected intent")
        if len(labels) <= 25:
            top = max([1.0, *(v for row in matrix for v in row)])
            for i, row in enumerate(matrix):
                for j, value in enumerate(row):
                    if value:
                        color = "white" if value > top / 2 else "black"
                        axes.text(j, i, format_number(value), ha="center", va="center", fontsize=7, color=color)
        figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04)
        return _png(figure)


def _latency_png(latencies: list[float], marks: Mapping[str, float | None]) -> bytes:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 3.2))
    axes = figure.add_subplot()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        axes.hist(latencies, bins=min(40, max(5, len(latencies) // 4)), color="#4c78a8")
        for (name, value), style in zip(marks.items(), ("--", ":"), strict=False):
            if value is not None:
                axes.axvline(value, color="#c62828", linestyle=style, label=f"{name} {format_number(value)} ms")
        axes.set_xlabel("turn latency (ms)")
        axes.set_ylabel("turns")
        if any(v is not None for v in marks.values()):
            axes.legend()
        return _png(figure)
