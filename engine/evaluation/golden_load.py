"""Read and check a golden set: ``tests/golden/*.yml`` of a project.

The stages are the project's own: parse with positions (:mod:`engine.loading.yaml_reader`)
-> JSON Schema (``engine/schemas/golden.schema.json`` through
:func:`engine.loading.schema_check.check_source`) -> cross-check every name against the
assistant (intents, entities, slots and their values, responses, flows, tools) -> plain
case dicts. Every problem is collected, located (``file:line:col``) and explained; nothing
here raises for a mistake in the files.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.actions.registry import ActionSpec, discover_actions
from engine.diagnostics import Diagnostic, Location, ProjectError, sort_key
from engine.errors import Errors
from engine.evaluation.gc_pause import gc_paused
from engine.evaluation.golden_crosscheck import GoldenChecker
from engine.loading.project import Project, yaml_files
from engine.loading.schema_check import check_source
from engine.loading.yaml_reader import SourceFile, parse_text

GOLDEN_DIR = Path("tests") / "golden"
"""Where a project keeps its golden set."""

KIND = "golden"
"""The schema kind (``engine/schemas/golden.schema.json``)."""


class GoldenSetError(ProjectError):
    """The golden set has errors; carries every diagnostic."""

    def __str__(self) -> str:
        errors = [d for d in self.diagnostics if d.severity == "error"]
        return f"{len(errors)} error(s) in the golden set\n" + "\n".join(d.format() for d in errors)


@dataclass(frozen=True)
class GoldenSet:
    """A checked golden set: its cases as plain dicts (see :func:`engine.evaluation.golden.case_from_dict`)."""

    cases: tuple[dict[str, Any], ...]
    files: tuple[str, ...]
    """The files read, as reported (relative to the project when inside it)."""
    revision: str
    """Content hash of the files (for the report's ``versions.revisions.golden``)."""
    diagnostics: tuple[Diagnostic, ...] = field(default=())

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "error"]


def golden_files(path: Path) -> list[Path]:
    """The YAML files of a golden set folder (subfolders included), or the one file given."""
    return [path] if path.is_file() else yaml_files(path)


def project_actions(root: Path) -> Mapping[str, ActionSpec]:
    """The actions the project's own ``actions/`` package registers (none without one)."""
    if not (root / "actions" / "__init__.py").is_file():
        return {}
    return discover_actions(root)


def project_tools(project: Project) -> frozenset[str]:
    """Every tool the assistant may call: declared in ``domain/`` or registered in ``actions/``."""
    return frozenset(project.domain.actions) | frozenset(project_actions(project.root))


def load_golden(project: Project, path: Path | None = None) -> GoldenSet:
    """Read and check the golden set at ``path`` (default: ``PROJECT/tests/golden``)."""
    with gc_paused():  # 20,000 generated cases: 15 s instead of 34-38 s
        return _load_golden(project, path)


def _load_golden(project: Project, path: Path | None) -> GoldenSet:
    target = path if path is not None else project.root / GOLDEN_DIR
    files = golden_files(target)
    shown = _shown(project.root, target)
    if not files:
        problem = "does not exist" if not target.exists() else "has no .yml or .yaml files"
        diag = Errors.E402.at(Location(shown if target.is_file() else shown.rstrip("/") + "/"), f"{shown} {problem}")
        return GoldenSet((), (), "", (diag,))
    diags: list[Diagnostic] = []
    sources: list[SourceFile] = []
    digest = hashlib.sha256()
    for file in files:
        rel = _shown(project.root, file)
        source, read_diags = _read(file, rel)
        digest.update(rel.encode() + b"\0" + (source.text.encode() if source else b""))
        diags.extend(read_diags)
        if source is None:
            continue
        schema_diags = check_source(source)
        diags.extend(schema_diags)
        if not schema_diags:
            sources.append(source)
    checker = GoldenChecker(project, project_tools(project))
    cases: list[dict[str, Any]] = []
    for source in sources:
        cases.extend(checker.check_file(source))
    diags.extend(checker.diagnostics)
    if not cases and not any(d.severity == "error" for d in diags):
        diags.append(Errors.E402.at(Location(shown), f"{shown} has no cases"))
    ordered = tuple(sorted(diags, key=sort_key))
    ok = not any(d.severity == "error" for d in ordered)
    return GoldenSet(
        tuple(cases) if ok else (), tuple(_shown(project.root, f) for f in files), digest.hexdigest()[:12], ordered
    )


def load_golden_or_raise(project: Project, path: Path | None = None) -> GoldenSet:
    """:func:`load_golden`, raising :class:`GoldenSetError` when the set has errors."""
    golden = load_golden(project, path)
    if golden.errors:
        raise GoldenSetError(golden.diagnostics)
    return golden


def _shown(root: Path, path: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path.as_posix()


def _read(file: Path, rel: str) -> tuple[SourceFile | None, list[Diagnostic]]:
    try:
        text = file.read_bytes().decode("utf-8")
    except OSError as exc:
        return None, [Errors.E003.at(Location(rel), f"cannot read the file: {exc.strerror or exc}")]
    except UnicodeDecodeError as exc:
        return None, [Errors.E003.at(Location(rel), f"byte at offset {exc.start} is not valid UTF-8")]
    source, diags = parse_text(text, rel, KIND, fast=True)  # generated sets run to many MB
    return source, [_golden_top_level(d) if d.code == "E004" else d for d in diags]


def _golden_top_level(diag: Diagnostic) -> Diagnostic:
    return Errors.E004.at(
        diag.location,
        diag.message,
        expected="a mapping with a `cases:` list (and optional default `stubs:`)",
        fix="Start the file with `cases:` and put each case under it as a list item (`- case_id: ...`).",
    )
