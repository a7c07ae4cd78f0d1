"""Load a whole project directory, in stages, collecting every diagnostic.

parse (positions kept) -> schema-validate -> build typed models -> cross-check -> compile.
A stage only sees files that passed the previous one, so one broken file does not hide
the problems of the others.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from engine.actions.registry import discover_actions
from engine.diagnostics import Diagnostic, Location, ProjectError, sort_key
from engine.domain import Domain
from engine.errors import Errors
from engine.flows.graph import FlowGraph, build_graph
from engine.flows.model import Flow
from engine.loading.build_domain import build_domain
from engine.loading.build_flows import build_flows
from engine.loading.build_nlu import build_nlu
from engine.loading.build_policies import build_policies
from engine.loading.crosscheck import ProjectParts, cross_check
from engine.loading.schema_check import SCHEMA_KINDS, check_source
from engine.loading.yaml_reader import SourceFile, read_source
from engine.nlu.training_data import TrainingData
from engine.policies.config import PolicyConfig

REQUIRED_FOLDERS = ("domain", "flows", "nlu_data")
YAML_SUFFIXES = (".yml", ".yaml")


@dataclass(frozen=True)
class Project:
    """A loaded, checked and compiled assistant."""

    root: Path
    domain: Domain
    flows: Mapping[str, Flow]
    graphs: Mapping[str, FlowGraph]
    policies: PolicyConfig
    nlu: TrainingData
    revisions: Mapping[str, str]
    """Content hashes: ``domain``, ``flows``, ``policies``, ``nlu_data``, ``actions``, ``config``."""


@dataclass(frozen=True)
class LoadResult:
    project: Project | None
    """None when there are errors."""
    diagnostics: tuple[Diagnostic, ...] = field(default=())

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "error"]

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "warning"]


def yaml_files(folder: Path) -> list[Path]:
    """The YAML files under ``folder``, in a stable order (subfolders included; none if absent)."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.rglob("*") if p.suffix in YAML_SUFFIXES and p.is_file())


def project_files(root: Path, kind: str) -> list[Path]:
    """The YAML files of one folder of the project."""
    return yaml_files(root / kind)


def load_project(root: Path | str, *, import_actions: bool = True) -> LoadResult:
    """Load and check the project in ``root``; never raises for problems in its files."""
    root = Path(root)
    diags: list[Diagnostic] = []
    sources: dict[str, list[SourceFile]] = {kind: [] for kind in SCHEMA_KINDS}
    for kind in SCHEMA_KINDS:
        files = project_files(root, kind)
        if not files and kind in REQUIRED_FOLDERS:
            problem = "has no .yml or .yaml files" if (root / kind).is_dir() else "is missing"
            diags.append(Errors.E005.at(Location(f"{kind}/"), f"the folder {kind}/ {problem}"))
        for path in files:
            source, read_diags = read_source(root, path, kind)
            diags.extend(read_diags)
            if source is None:
                continue
            schema_diags = check_source(source)
            diags.extend(schema_diags)
            if not schema_diags:
                sources[kind].append(source)
    if any(d.severity == "error" for d in diags):
        # Models built from a partial project would report false unknown-name errors.
        return LoadResult(None, tuple(sorted(diags, key=sort_key)))

    domain, d1 = build_domain(sources["domain"])
    flows, d2 = build_flows(sources["flows"])
    policies, d3 = build_policies(sources["policies"])
    nlu, d4 = build_nlu(sources["nlu_data"])
    diags.extend(d1 + d2 + d3 + d4)

    implemented: frozenset[str] | None = None
    if import_actions and (root / "actions" / "__init__.py").is_file():
        try:
            implemented = frozenset(discover_actions(root))
        except Exception as exc:  # noqa: BLE001 - user code: report, never crash validate
            diags.append(
                Errors.E007.at(
                    Location("actions/__init__.py"), f"importing actions/ failed: {type(exc).__name__}: {exc}"
                )
            )

    parts = ProjectParts(domain, flows, policies, nlu, implemented)
    try:
        diags.extend(cross_check(parts))
    except RecursionError:
        diags.append(Errors.E309.at(Location("flows/"), "flows link/call each other too deeply to check"))
    diags = sorted(diags, key=sort_key)
    if any(d.severity == "error" for d in diags):
        return LoadResult(None, tuple(diags))
    graphs = {fid: build_graph(flow) for fid, flow in flows.items()}
    project = Project(root, domain, flows, graphs, policies, nlu, revisions(root))
    return LoadResult(project, tuple(diags))


def load_project_or_raise(root: Path | str) -> Project:
    """Load the project or raise :class:`ProjectError` with every diagnostic."""
    result = load_project(root)
    if result.project is None:
        raise ProjectError(result.diagnostics)
    return result.project


def revisions(root: Path) -> dict[str, str]:
    """Content hashes of the assistant's files, for reports and /version."""
    out: dict[str, str] = {}
    everything = hashlib.sha256()
    for kind in (*SCHEMA_KINDS, "actions"):
        digest = hashlib.sha256()
        folder = root / kind
        paths = (
            sorted(p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
            if folder.is_dir()
            else []
        )
        for path in paths:
            digest.update(path.relative_to(root).as_posix().encode())
            digest.update(path.read_bytes())
        out[kind] = digest.hexdigest()[:12]
        everything.update(digest.digest())
    out["config"] = everything.hexdigest()[:12]
    return out
