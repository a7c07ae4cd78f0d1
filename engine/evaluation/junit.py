"""The golden-set report as JUnit XML, for CI systems (GitLab, Jenkins, GitHub Actions).

The shape follows what ``pytest --junitxml`` writes (``xunit2``): a ``<testsuites>`` root
with one ``<testsuite>`` whose ``tests``/``failures``/``errors``/``skipped`` counts match
its ``<testcase>`` children, suite-level ``<properties>``, and one ``<failure message=...>``
per failing case with the details as text. The use-case tag becomes the ``classname``
(``golden.<use_case>``), so CI groups the cases by use case.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from engine.evaluation.baseline import (
    REPORT_METRICS,
    Report,
    format_number,
    metric_value,
    priority_of,
    tags_text,
    use_case_of,
)

SUITE_NAME = "taiwa.golden"
DEFAULT_CLASS = "golden"
_ILLEGAL_XML = re.compile("[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def xml_text(value: object) -> str:
    """Text safe for XML 1.0: JSON for non-strings, characters XML forbids shown as ``\\xNN``."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, sort_keys=True)
    return _ILLEGAL_XML.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def build_junit(report: Report) -> ET.Element:
    """The ``<testsuites>`` element for a report."""
    cases = [c for c in report.get("cases") or [] if isinstance(c, Mapping)]
    details = {str(c.get("case_id")): c for c in report.get("failed_cases") or [] if isinstance(c, Mapping)}
    n_failed = sum(1 for c in cases if not c.get("passed"))
    seconds = metric_value(report, "run.seconds")
    if seconds is None:
        seconds = sum(_case_seconds(c) for c in cases)
    attrs = {
        "name": SUITE_NAME,
        "errors": "0",
        "failures": str(n_failed),
        "skipped": "0",
        "tests": str(len(cases)),
        "time": f"{seconds:.3f}",
    }
    root = ET.Element("testsuites", {"name": "taiwa eval"})
    suite = ET.SubElement(root, "testsuite", attrs)
    _properties(ET.SubElement(suite, "properties"), report)
    for case in cases:
        _testcase(suite, case, details.get(str(case.get("case_id")), {}))
    return root


def write_junit(report: Report, path: Path) -> None:
    """Write the JUnit XML file (UTF-8, with an XML declaration)."""
    tree = ET.ElementTree(build_junit(report))
    ET.indent(tree, space="  ")
    tree.write(path, encoding="utf-8", xml_declaration=True)


def _properties(parent: ET.Element, report: Report) -> None:
    for name in REPORT_METRICS:
        value = metric_value(report, name)
        if value is not None:
            ET.SubElement(parent, "property", {"name": name, "value": format_number(value)})
    versions = report.get("versions")
    if isinstance(versions, Mapping):
        for key, value in versions.items():
            if isinstance(value, Mapping):
                for sub, sub_value in value.items():
                    _property(parent, f"versions.{key}.{sub}", sub_value)
            else:
                _property(parent, f"versions.{key}", value)


def _property(parent: ET.Element, name: str, value: object) -> None:
    if value is not None:
        ET.SubElement(parent, "property", {"name": xml_text(name), "value": xml_text(value)})


def _case_seconds(case: Mapping[str, Any]) -> float:
    latencies = case.get("latencies_ms")
    if not isinstance(latencies, list):
        return 0.0
    return sum(float(x) for x in latencies if isinstance(x, int | float)) / 1000.0


def _testcase(suite: ET.Element, case: Mapping[str, Any], detail: Mapping[str, Any]) -> None:
    tags = case.get("tags", detail.get("tags"))
    use_case = use_case_of(tags)
    element = ET.SubElement(
        suite,
        "testcase",
        {
            "classname": xml_text(f"{DEFAULT_CLASS}.{use_case}" if use_case else DEFAULT_CLASS),
            "name": xml_text(str(case.get("case_id"))),
            "time": f"{_case_seconds(case):.3f}",
        },
    )
    if case.get("passed"):
        return
    cause = case.get("cause") or detail.get("cause") or "unknown"
    turn = case.get("turn") if case.get("turn") is not None else detail.get("turn")
    expected, got = detail.get("expected"), detail.get("got")
    summary = f"{cause} at turn {turn}" if turn is not None else str(cause)
    if "expected" in detail or "got" in detail:
        summary += f": expected {xml_text(expected)}, got {xml_text(got)}"
    failure = ET.SubElement(element, "failure", {"message": xml_text(summary), "type": xml_text(cause)})
    lines = [
        f"cause: {cause}",
        f"turn: {turn}",
        f"expected: {xml_text(expected)}",
        f"got: {xml_text(got)}",
        f"priority: {priority_of(case) or priority_of(detail) or '-'}",
        f"tags: {tags_text(tags)}",
    ]
    if detail.get("message"):
        lines.append(f"message: {xml_text(detail['message'])}")
    failure.text = xml_text("\n".join(lines))
