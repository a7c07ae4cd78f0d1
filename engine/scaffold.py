"""``taiwa init``: copy the reference assistant into a new project folder.

The reference assistant lives at the top of the taiwa repository (``domain/``, ``flows/``,
``policies/``, ``nlu_data/``, ``actions/``): the scaffold is the same files the project's
own tests check, so a new project is valid and trainable by construction.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import engine
from engine.diagnostics import EngineError

PROJECT_FOLDERS = ("domain", "flows", "policies", "nlu_data", "actions")
GOLDEN_FOLDER = "tests/golden"
"""The reference assistant's golden set (``taiwa eval``), scaffolded with it."""
SCHEMA_DIR = ".schemas"
_REPO_SCHEMA_PREFIX = "$schema=../engine/schemas/"
_REPO_GOLDEN_SCHEMA_PREFIX = "$schema=../../engine/schemas/"


class ScaffoldError(EngineError, ValueError):
    """The scaffold could not be written."""


def reference_assistant_dir() -> Path:
    """Where the reference assistant's files are (the taiwa checkout)."""
    root = Path(engine.__file__).resolve().parent.parent
    if all((root / name).is_dir() for name in PROJECT_FOLDERS):
        return root
    raise ScaffoldError(
        f"the reference assistant was not found next to the engine ({root}). "
        "Fix: install taiwa from a checkout (`pip install -e .`), which ships it."
    )


def scaffold(target: Path, *, force: bool = False) -> list[Path]:
    """Write a new project into ``target``; return the files written."""
    from engine.loading.schema_check import SCHEMA_KINDS, load_schema

    source = reference_assistant_dir()
    if target.exists() and not target.is_dir():
        raise ScaffoldError(f"{target} exists and is not a folder. Fix: choose another path.")
    if target.exists() and any(target.iterdir()) and not force:
        raise ScaffoldError(f"{target} is not empty. Fix: choose a new folder, or pass --force to write into it.")
    if target.resolve() == source.resolve():
        raise ScaffoldError("the target is the taiwa checkout itself. Fix: choose another folder.")
    target.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for folder in (*PROJECT_FOLDERS, GOLDEN_FOLDER):
        for path in sorted((source / folder).rglob("*")):
            if not path.is_file() or "__pycache__" in path.parts or path.suffix in (".pyc", ".db", ".sqlite"):
                continue
            dest = target / path.relative_to(source)
            dest.parent.mkdir(parents=True, exist_ok=True)
            if path.suffix in (".yml", ".yaml"):
                text = path.read_text("utf-8").replace(_REPO_SCHEMA_PREFIX, f"$schema=../{SCHEMA_DIR}/")
                text = text.replace(_REPO_GOLDEN_SCHEMA_PREFIX, f"$schema=../../{SCHEMA_DIR}/")
                dest.write_text(text, encoding="utf-8")
            else:
                shutil.copyfile(path, dest)
            written.append(dest)
    schema_dir = target / SCHEMA_DIR
    schema_dir.mkdir(exist_ok=True)
    for kind in (*SCHEMA_KINDS, "golden"):
        dest = schema_dir / f"{kind}.schema.json"
        dest.write_text(json.dumps(load_schema(kind), indent=2) + "\n", encoding="utf-8")
        written.append(dest)
    gitignore = target / ".gitignore"
    if not gitignore.exists():
        gitignore.write_text(".taiwa/\nmodels/\n__pycache__/\n*.db\n", encoding="utf-8")
        written.append(gitignore)
    return written
