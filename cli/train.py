"""``taiwa train``: train the NLU of a project into a content-addressed model artifact."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from cli._common import add_project_option, check_project_dir
from engine.diagnostics import ProjectError
from engine.nlu.tokenize import TokenizerError
from engine.registry import UnknownComponentError


def add_parser(sub: Any) -> None:
    parser = sub.add_parser(
        "train",
        help="train the NLU (intents, entities) into models/<model_id>/",
        description="Validate the project, then train its NLU pipeline. Unchanged training data and "
        "configuration reuse the existing model (its id is their fingerprint); --force retrains.",
        epilog="examples:\n  taiwa train --project my-bot\n"
        "  taiwa train --data ../shared/datasets/banking77/train.jsonl --out models/banking77",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_project_option(parser)
    parser.add_argument("--force", action="store_true", help="retrain even if an identical model exists")
    parser.add_argument("--out", type=Path, help="models folder (default: PROJECT/models)")
    parser.add_argument("--json", action="store_true", help="print the model card as JSON")
    parser.add_argument(
        "--data",
        type=Path,
        metavar="FILE.jsonl",
        help='train from a JSONL file of {"text", "intent"} rows instead of a project (default --out: ./models)',
    )
    parser.add_argument("--language", default="en", help="language of --data (default: en)")
    parser.add_argument(
        "--pipeline", type=Path, metavar="FILE.yml", help="with --data: a YAML file with a `pipeline:` list"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from engine.nlu.pipeline import load_pipeline_file
    from engine.nlu.train import train_data_file, train_project

    if args.data is None:
        bad = check_project_dir(args.project)
        if bad is not None:
            return bad
    elif not args.data.is_file():
        sys.stderr.write(f"taiwa: error: --data {args.data}: no such file. Fix: pass a JSONL file\n")
        return 2
    quiet = args.json or not sys.stderr.isatty()
    with Progress(
        TextColumn("[bold]training[/] {task.description:<18}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        transient=True,
        disable=quiet,
        console=None,
    ) as bar:
        task = bar.add_task("loading project", total=5)

        def progress(stage: str, done: int, total: int) -> None:
            bar.update(task, description=stage, completed=done, total=total)
            if quiet and not args.json:
                sys.stderr.write(f"training: {stage} ({done}/{total})\n")

        try:
            if args.data is not None:
                outcome = train_data_file(
                    args.data,
                    language=args.language,
                    pipeline=load_pipeline_file(args.pipeline) if args.pipeline else None,
                    out=args.out or Path("models"),
                    force=args.force,
                    progress=progress,
                )
            else:
                outcome = train_project(args.project, force=args.force, out=args.out, progress=progress)
        except ProjectError as exc:
            for d in exc.diagnostics:
                if d.severity == "error":
                    sys.stderr.write(d.format() + "\n")
            sys.stderr.write(f"✗ {len(exc.errors)} error(s); fix them (see `taiwa validate`) and train again\n")
            return 1
        except (UnknownComponentError, TokenizerError, ValueError) as exc:
            sys.stderr.write(f"taiwa: error: {exc}\n")
            return 1
    card = outcome.card
    if args.json:
        sys.stdout.write(
            json.dumps(
                {
                    "model_id": outcome.model_id,
                    "path": str(outcome.model_dir),
                    "skipped": outcome.skipped,
                    "card": card,
                },
                indent=2,
            )
            + "\n"
        )
        return 0
    if outcome.skipped:
        sys.stdout.write(
            f"✓ nothing changed: model {outcome.model_id} is up to date ({outcome.model_dir}). Use --force to retrain.\n"
        )
        return 0
    data = card["data"]
    cv = card.get("cross_validation", {})
    sys.stdout.write(
        f"✓ trained {outcome.model_id} in {card['train_seconds']:.1f} s: {data['examples']} examples, "
        f"{data['intents']} intents, {card['features']:,} features -> {outcome.model_dir}\n"
    )
    if "intent_accuracy" in cv:
        sys.stdout.write(
            f"  {cv['folds']}-fold cross-validation: intent accuracy {cv['intent_accuracy']:.1%}, "
            f"macro F1 {cv['intent_macro_f1']:.1%}, entity F1 {cv['entity_f1']:.1%} ({cv['entity_support']} entities)\n"
        )
    elif "skipped" in cv:
        sys.stdout.write(f"  cross-validation skipped: {cv['skipped']}\n")
    return 0
