"""Build a project from inline YAML for dialogue tests: the tiny pizza assistant plus overrides."""

from __future__ import annotations

import shutil
from pathlib import Path

from engine.loading.project import Project, load_project_or_raise

TINY = Path(__file__).parent.parent / "fixtures" / "tiny"


def project_from_yaml(tmp_path: Path, files: dict[str, str] | None = None) -> Project:
    """Copy ``tests/fixtures/tiny`` and write ``files`` (relative path -> YAML) over it."""
    root = tmp_path / "project"
    shutil.copytree(TINY, root)
    for rel, text in (files or {}).items():
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    return load_project_or_raise(root)
