"""``taiwa schema export DIR``: write the JSON Schemas for editors and CI."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from cli._common import usage_error
from engine.loading.schema_check import SCHEMA_KINDS, load_schema


def add_parser(sub: Any) -> None:
    parser = sub.add_parser(
        "schema",
        help="export the JSON Schemas of the YAML files",
        description="Export one JSON Schema (draft 2020-12) per file kind: domain, flows, policies, nlu_data.",
        epilog="example: taiwa schema export .schemas   # then point `# yaml-language-server: $schema=` at them",
    )
    actions = parser.add_subparsers(dest="schema_command", metavar="ACTION")
    export = actions.add_parser("export", help="write <kind>.schema.json files into DIR")
    export.add_argument("dir", type=Path, metavar="DIR")
    parser.set_defaults(run=run)


def export_schemas(target: Path) -> list[Path]:
    """Write every schema into ``target``; return the written paths."""
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for kind in SCHEMA_KINDS:
        path = target / f"{kind}.schema.json"
        path.write_text(json.dumps(load_schema(kind), indent=2) + "\n", encoding="utf-8")
        written.append(path)
    return written


def run(args: argparse.Namespace) -> int:
    if args.schema_command != "export":
        return usage_error("say what to do with the schemas", "run `taiwa schema export DIR`")
    if args.dir.exists() and not args.dir.is_dir():
        return usage_error(f"{str(args.dir)!r} exists and is not a folder", "pass a folder path")
    for path in export_schemas(args.dir):
        sys.stdout.write(f"wrote {path}\n")
    return 0
