"""``taiwa visualize``: draw flows as Mermaid, DOT or PNG."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from cli._common import add_project_option, check_project_dir, usage_error
from engine.diagnostics import closest
from engine.flows.diagram import to_dot, to_mermaid
from engine.loading.project import load_project


def add_parser(sub: Any) -> None:
    parser = sub.add_parser(
        "visualize",
        help="draw flows as a diagram (Mermaid, DOT or PNG)",
        description="Draw one flow, or all, from the compiled flow graphs. PNG needs Graphviz's `dot`.",
        epilog="examples:\n  taiwa visualize create_ticket\n  taiwa visualize --format png --output flows.png",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_project_option(parser)
    parser.add_argument("flow", nargs="?", help="the flow to draw (default: all flows)")
    parser.add_argument("--format", choices=("mermaid", "dot", "png"), default="mermaid")
    parser.add_argument("--output", "-o", type=Path, help="write to this file (required for png; default: stdout)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    bad = check_project_dir(args.project)
    if bad is not None:
        return bad
    if args.format == "png" and args.output is None:
        return usage_error("--format png needs --output FILE", "add `--output flows.png`")
    result = load_project(args.project, import_actions=False)
    if result.project is None:
        for d in result.errors:
            sys.stderr.write(d.format() + "\n")
        sys.stderr.write("✗ the project has errors; run `taiwa validate` for the full report\n")
        return 1
    graphs = result.project.graphs
    if args.flow is not None:
        if args.flow not in graphs:
            hint = closest(args.flow, graphs)
            fix = f"did you mean {hint!r}? " if hint else ""
            return usage_error(f"there is no flow {args.flow!r}", f"{fix}flows: {', '.join(sorted(graphs))}")
        selected = [graphs[args.flow]]
    else:
        selected = [graphs[k] for k in sorted(graphs)]
    if args.format == "mermaid":
        return _emit(to_mermaid(selected), args.output)
    dot_text = to_dot(selected)
    if args.format == "dot":
        return _emit(dot_text, args.output)
    dot = shutil.which("dot")
    if dot is None:
        sys.stderr.write(
            "taiwa: error: --format png needs Graphviz's `dot`, which is not installed\n"
            "  Fix: install Graphviz (e.g. `apt-get install graphviz`), or use --format mermaid / dot\n"
        )
        return 1
    proc = subprocess.run(
        [dot, "-Tpng", "-o", str(args.output)], input=dot_text.encode(), capture_output=True, timeout=60, check=False
    )
    if proc.returncode != 0:
        sys.stderr.write(f"taiwa: error: dot failed: {proc.stderr.decode(errors='replace').strip()}\n")
        return 1
    sys.stdout.write(f"wrote {args.output}\n")
    return 0


def _emit(text: str, output: Path | None) -> int:
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text, encoding="utf-8")
        sys.stdout.write(f"wrote {output}\n")
    return 0
