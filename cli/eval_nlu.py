"""``taiwa eval nlu``: score the NLU on held-out data (benchmark JSONL files or the project's nlu_data).

The thin CLI edge of :mod:`engine.evaluation.nlu_eval`: it checks the arguments, loads the
data, shows progress, prints the tables and writes the report and the confusion-matrix image.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cli._common import check_project_dir, usage_error
from engine.diagnostics import ProjectError
from engine.evaluation.nlu_eval import (
    EvalDataError,
    EvalProgress,
    EvalSettings,
    Split,
    build_report,
    check_labels,
    describe_file,
    describe_project_data,
    evaluate,
    holdout_split,
    kfold_splits,
    load_jsonl,
)
from engine.nlu.oos import OOS
from engine.nlu.tokenize import TokenizerError
from engine.nlu.train import DataFileError
from engine.registry import UnknownComponentError

DEFAULT_HOLDOUT = 0.2

EXAMPLES = """examples:
  taiwa eval nlu --train ../shared/datasets/clinc150/train.jsonl --test ../shared/datasets/clinc150/test.jsonl \\
                 --val ../shared/datasets/clinc150/val.jsonl --report clinc.json
  taiwa eval nlu --project my-bot --folds 5            5-fold cross-validation of the project's nlu_data
  taiwa eval nlu --project my-bot --holdout 0.2 --seed 1 --confusion-png confusion.png

exit codes: 0 evaluated, 1 training failed or the project has errors, 2 usage or data error
"""


def add_parser(sub: Any) -> None:
    """Add ``nlu`` to the sub-commands of ``taiwa eval``."""
    parser = sub.add_parser(
        "nlu",
        help="score the NLU on held-out data: accuracy, macro F1, per intent, confusion, OOS, entities",
        description="Train the NLU pipeline and score it on held-out data: a test file, a stratified\n"
        "hold-out of the training data, or k-fold cross-validation. Without --test, --holdout or\n"
        f"--folds, {DEFAULT_HOLDOUT:.0%} of the data is held out. Out-of-scope figures appear when the\n"
        "test data has the --oos-label intent; the threshold is chosen on --val, never on the test.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    data = parser.add_argument_group("data")
    data.add_argument("--train", type=Path, metavar="FILE.jsonl", help='training rows {"text", "intent"}')
    data.add_argument("--test", type=Path, metavar="FILE.jsonl", help="test rows (same format)")
    data.add_argument("--val", type=Path, metavar="FILE.jsonl", help="validation rows: choose the OOS threshold here")
    data.add_argument(
        "--project", type=Path, metavar="DIR", help="train on this project's nlu_data (default without --train: .)"
    )
    data.add_argument("--language", default="en", help="language of the JSONL files (default: en)")
    split = parser.add_argument_group("split (instead of --test)")
    split.add_argument("--holdout", type=float, metavar="FRACTION", help="hold out this share of every intent")
    split.add_argument("--folds", type=int, metavar="K", help="stratified k-fold cross-validation")
    split.add_argument("--seed", type=int, default=0, help="random seed of the split (default: 0)")
    model = parser.add_argument_group("model")
    model.add_argument(
        "--pipeline",
        type=Path,
        metavar="FILE.yml",
        help="a YAML `pipeline:` list (default: the project's, or built-in)",
    )
    model.add_argument("--threshold", type=float, metavar="T", help="a fixed OOS threshold (instead of --val)")
    model.add_argument(
        "--min-oos-recall", type=float, metavar="R", help="with --val: best accuracy among thresholds reaching recall R"
    )
    model.add_argument(
        "--oos-label",
        metavar="LABEL",
        help=f"the out-of-scope intent (default: the training data's `oos` or `out_of_scope`, else {OOS})",
    )
    output = parser.add_argument_group("output")
    output.add_argument("--report", type=Path, metavar="FILE.json", help="write the JSON report")
    output.add_argument(
        "--confusion-png", type=Path, metavar="FILE.png", help="draw the confusion matrix (needs matplotlib)"
    )
    output.add_argument("--json", action="store_true", help="print the JSON report instead of the tables")
    parser.set_defaults(run=run)


@dataclass(frozen=True)
class _Plan:
    splits: list[Split]
    settings: EvalSettings
    data: dict[str, Any]
    split: dict[str, Any]


def run(args: argparse.Namespace) -> int:
    problem = _check_arguments(args)
    if problem is not None:
        return problem
    try:
        plan = _plan(args)
    except ProjectError as exc:
        for d in exc.diagnostics:
            if d.severity == "error":
                sys.stderr.write(d.format() + "\n")
        sys.stderr.write(f"✗ {len(exc.errors)} error(s) in the project; fix them (see `taiwa validate`)\n")
        return 1
    except DataFileError as exc:
        sys.stderr.write(f"{exc}\n")
        return 2
    except (EvalDataError, UnknownComponentError, TokenizerError, ValueError) as exc:
        return usage_error(str(exc))
    try:
        with _progress_display() as progress:
            outcome = evaluate(plan.splits, plan.settings, progress)
    except (TokenizerError, ValueError) as exc:
        sys.stderr.write(f"taiwa: error: training failed: {exc}\n")
        return 1
    report = build_report(
        outcome, data=plan.data, split=plan.split, pipeline=plan.settings.pipeline, oos_label=args.oos_label
    )
    if args.report is not None:
        args.report.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    if args.confusion_png is not None:
        draw_confusion(report["confusion"]["labels"], report["confusion"]["matrix"], args.confusion_png)
    if args.json:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
    else:
        print_tables(report, written=[p for p in (args.report, args.confusion_png) if p is not None])
    return 0


def _check_arguments(args: argparse.Namespace) -> int | None:
    """Exit code 2 with a message for contradictory or impossible options, before any work."""
    if args.train is not None and args.project is not None:
        return usage_error("--train and --project both give training data", "pass one of them")
    split_options = [name for name, value in (("--test", args.test), ("--holdout", args.holdout)) if value is not None]
    if args.folds is not None:
        split_options.append("--folds")
    if len(split_options) > 1:
        return usage_error(f"{' and '.join(split_options)} each choose the test data", "pass only one of them")
    if args.folds is not None and args.folds < 2:
        return usage_error(f"--folds {args.folds}: cross-validation needs at least 2 folds", "pass --folds 2 or more")
    if args.holdout is not None and not 0 < args.holdout < 1:
        return usage_error(f"--holdout {args.holdout}: expected a fraction between 0 and 1", "e.g. --holdout 0.2")
    for flag, value in (("--threshold", args.threshold), ("--min-oos-recall", args.min_oos_recall)):
        if value is not None and not 0 <= value <= 1:
            return usage_error(f"{flag} {value}: expected a number between 0 and 1")
    if args.threshold is not None and args.val is not None:
        return usage_error("--threshold and --val both set the OOS threshold", "pass only one of them")
    if args.min_oos_recall is not None and args.val is None:
        return usage_error("--min-oos-recall chooses the threshold on validation data", "pass --val FILE with it")
    for flag, path in (
        ("--train", args.train),
        ("--test", args.test),
        ("--val", args.val),
        ("--pipeline", args.pipeline),
    ):
        if path is not None and not path.is_file():
            return usage_error(f"{flag} {path}: no such file", "pass an existing file")
    for flag, path in (("--report", args.report), ("--confusion-png", args.confusion_png)):
        if path is not None and not path.parent.is_dir():
            return usage_error(f"{flag} {path}: the folder {str(path.parent)!r} does not exist", "create it first")
    if args.confusion_png is not None and importlib.util.find_spec("matplotlib") is None:
        return usage_error(
            "--confusion-png needs matplotlib, which is not installed", "pip install matplotlib (or leave the flag out)"
        )
    if args.train is None:
        return check_project_dir(args.project or Path())
    return None


def _plan(args: argparse.Namespace) -> _Plan:
    """Load the data and the pipeline, cut the splits and check the labels (raises on bad input)."""
    from engine.nlu.pipeline import DEFAULT_COMPONENTS, build_pipeline, load_pipeline_file
    from engine.policies.config import OUT_OF_SCOPE_INTENTS

    entity_names: frozenset[str] = frozenset()
    if args.train is not None:
        train = load_jsonl(args.train, args.language)
        pipeline = build_pipeline(DEFAULT_COMPONENTS)
        data: dict[str, Any] = {"train": describe_file(args.train)}
    else:
        from engine.loading.project import load_project

        root = args.project or Path()
        loaded = load_project(root, import_actions=False)
        if loaded.project is None:
            raise ProjectError(loaded.diagnostics)
        train = loaded.project.nlu
        pipeline = build_pipeline([(c.name, c.options) for c in loaded.project.policies.pipeline])
        entity_names = frozenset(loaded.project.domain.entities)
        data = {"train": describe_project_data(root)}
    if args.pipeline is not None:
        pipeline = load_pipeline_file(args.pipeline)
        data["pipeline"] = describe_file(args.pipeline)
    val: tuple[tuple[str, str], ...] = ()
    if args.val is not None:
        val = tuple((ex.text, ex.intent) for ex in load_jsonl(args.val, train.language).examples)
        data["val"] = describe_file(args.val)
    by_threshold = bool(val) or args.threshold is not None
    train_labels = [ex.intent for ex in train.examples]
    if args.oos_label is None:
        present = set(train_labels)
        args.oos_label = next((name for name in OUT_OF_SCOPE_INTENTS if name in present), OOS)
    check_labels(train_labels, [], "training", oos_label=args.oos_label, oos_by_threshold=by_threshold)
    if val:
        check_labels(train_labels, (i for _, i in val), "validation", oos_label=args.oos_label, oos_by_threshold=True)
    if args.test is not None:
        test = load_jsonl(args.test, train.language)
        data["test"] = describe_file(args.test)
        labels = (ex.intent for ex in test.examples)
        check_labels(train_labels, labels, "test", oos_label=args.oos_label, oos_by_threshold=by_threshold)
        splits = [Split(train, test.examples)]
        split: dict[str, Any] = {"kind": "files"}
    elif args.folds is not None:
        splits = kfold_splits(train, args.folds, args.seed)
        split = {"kind": "k-fold", "folds": args.folds, "seed": args.seed}
    else:
        fraction = args.holdout if args.holdout is not None else DEFAULT_HOLDOUT
        splits = holdout_split(train, fraction, args.seed)
        split = {"kind": "holdout", "fraction": fraction, "seed": args.seed}
    settings = EvalSettings(
        pipeline=pipeline,
        entity_names=entity_names,
        val=val,
        threshold=args.threshold,
        min_oos_recall=args.min_oos_recall,
        oos_label=args.oos_label,
    )
    return _Plan(splits, settings, data, split)


@contextmanager
def _progress_display() -> Iterator[EvalProgress]:
    """A rich progress bar on a terminal; otherwise one plain stderr line per phase."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    if not console.is_terminal:
        last: list[str] = []

        def plain(phase: str, done: int, total: int) -> None:
            head = phase.split(":")[0]
            if last != [head]:
                last[:] = [head]
                sys.stderr.write(f"{head} ...\n")

        yield plain
        return
    with Progress(
        TextColumn("[bold]{task.description:<40}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task("starting", total=1)

        def update(phase: str, done: int, total: int) -> None:
            bar.update(task, description=phase, completed=done, total=total)

        yield update


def draw_confusion(labels: list[str], matrix: list[list[int]], path: Path) -> None:
    """The row-normalised confusion matrix as an image (matplotlib, an optional dependency)."""
    import numpy as np

    matplotlib: Any = importlib.import_module("matplotlib")
    matplotlib.use("Agg")
    pyplot: Any = importlib.import_module("matplotlib.pyplot")
    counts = np.asarray(matrix, dtype=float)
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    n = len(labels)
    side = min(max(6.0, 3 + 0.14 * n), 40.0)
    font = max(3.0, min(10.0, 700 / max(n, 1) / 2))
    fig, ax = pyplot.subplots(figsize=(side, side))
    try:
        image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
        ax.set_xticks(range(n), labels, rotation=90, fontsize=font)
        ax.set_yticks(range(n), labels, fontsize=font)
        ax.set_xlabel("predicted intent")
        ax.set_ylabel("gold intent")
        ax.set_title("Confusion matrix (share of each gold intent)")
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
        fig.tight_layout()
        fig.savefig(path, dpi=100 if n > 60 else 150)
    finally:
        pyplot.close(fig)


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def print_tables(report: dict[str, Any], written: Sequence[Path] = ()) -> None:
    """The overall figures, the 10 worst intents and the most confused pairs, as rich tables."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not console.is_terminal:  # a pipe or a file: room for long intent names
        console = Console(width=max(console.width, 120))
    overall = Table(title="NLU evaluation", show_header=False, title_justify="left")
    overall.add_column("figure")
    overall.add_column("value", justify="right")
    split = report["split"]
    how = {"files": "test file", "holdout": f"{split.get('fraction', 0):.0%} hold-out", "k-fold": "k-fold"}
    overall.add_row("accuracy", _percent(report["accuracy"]))
    overall.add_row("macro F1", _percent(report["macro_f1"]))
    if "oos_recall" in report:
        overall.add_row("in-scope accuracy", _percent(report["in_scope_accuracy"]))
        overall.add_row("OOS recall", _percent(report["oos_recall"]))
        thresholds = ", ".join(f"{t:.3f}" for t in report["oos"]["thresholds"])
        rule = report["oos"]["threshold_rule"]
        overall.add_row("OOS threshold", f"{thresholds} ({rule})" if thresholds else rule)
    if "entity_f1" in report:
        overall.add_row("entity F1", f"{report['entity_f1']:.1%} ({report['entities']['support']} entities)")
    overall.add_row("split", f"{how.get(split['kind'], split['kind'])}, {report['models']} model(s)")
    overall.add_row("train / test examples", f"{report['n_train']:,} / {report['n_test']:,}")
    overall.add_row("intents", str(report["n_intents"]))
    overall.add_row("train time", f"{report['train_seconds']:.2f} s")
    speed = report["utterances_per_second"]
    overall.add_row("predict time", f"{report['predict_seconds']:.2f} s" + (f" ({speed:,} utt/s)" if speed else ""))
    console.print(overall)

    labels, matrix = report["confusion"]["labels"], report["confusion"]["matrix"]
    worst = Table(title="10 worst intents (by F1)", title_justify="left")
    for column in ("intent", "precision", "recall", "F1", "support", "most often taken for"):
        worst.add_column(column, justify="left" if column in {"intent", "most often taken for"} else "right")
    for label in report["worst_intents"]:
        score = report["per_intent"][label]
        row = matrix[labels.index(label)]
        mistakes = [(count, other) for other, count in zip(labels, row, strict=True) if other != label and count]
        taken_for = "-" if not mistakes else "{1} ({0})".format(*max(mistakes))
        worst.add_row(
            label,
            _percent(score["precision"]),
            _percent(score["recall"]),
            _percent(score["f1"]),
            str(score["support"]),
            taken_for,
        )
    console.print(worst)

    if report["confused_pairs"]:
        pairs = Table(title="Most confused pairs", title_justify="left")
        for column in ("gold intent", "predicted as", "count", "share of gold"):
            pairs.add_column(column, justify="right" if column in {"count", "share of gold"} else "left")
        for pair in report["confused_pairs"]:
            support = report["per_intent"][pair["gold"]]["support"]
            pairs.add_row(pair["gold"], pair["predicted"], str(pair["count"]), _percent(pair["count"] / support))
        console.print(pairs)
    for path in written:
        console.print(f"wrote {path}")
