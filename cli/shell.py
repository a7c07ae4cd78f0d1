"""``taiwa shell``: chat with the trained assistant in the terminal.

Buttons are shown as numbered choices (type the number to press one); ``/intent{"slot":
"value"}`` bypasses the NLU; ``--debug`` prints, per turn, the intent ranking, entities,
slot changes, the flow stack, the policy decision and the tools called. Reads from a pipe
as well as from a terminal, so a session can be scripted (``taiwa shell < script.txt``).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid
from pathlib import Path
from typing import Any, TextIO

from rich.console import Console
from rich.markup import escape

from cli._common import add_project_option, check_project_dir, usage_error
from engine import events as ev
from engine.diagnostics import EngineError, ProjectError
from engine.dialogue.assistant import Assistant, open_assistant
from engine.dialogue.processor import TurnResult

EXIT_COMMANDS = frozenset({"/stop", "/exit", "/quit"})


def add_parser(sub: Any) -> None:
    parser = sub.add_parser(
        "shell",
        help="chat with the assistant in the terminal",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        epilog=(
            "examples:\n"
            "  taiwa shell --project my-bot\n"
            "  taiwa shell --debug\n"
            '  printf "hi\\n/open_ticket\\n" | taiwa shell\n\n'
            "in the shell: a number presses a button; /intent{...} skips the NLU; /restart starts over;\n"
            "/release gives a handed-over conversation back to the bot; /stop ends the session"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_project_option(parser)
    parser.add_argument("--model", type=Path, help="model folder (default: PROJECT/models, the latest)")
    parser.add_argument("--debug", action="store_true", help="show what the engine understood and decided each turn")
    parser.add_argument(
        "--store",
        default="memory://",
        metavar="URL",
        help="tracker store URL (default: memory://, forgotten on exit; e.g. sqlite:///chat.db)",
    )
    parser.add_argument("--conversation-id", default=None, help="conversation id (default: a new one)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    bad = check_project_dir(args.project)
    if bad is not None:
        return bad
    try:
        return asyncio.run(_session(args, sys.stdin, Console(highlight=False, soft_wrap=True)))
    except KeyboardInterrupt:
        return 0


async def _session(args: argparse.Namespace, stdin: TextIO, out: Console) -> int:
    try:
        assistant = await open_assistant(args.project, model=args.model, store_url=args.store)
    except ProjectError as exc:
        sys.stderr.write(str(exc) + "\nFix: run `taiwa validate` and correct the errors it lists.\n")
        return 1
    except (EngineError, FileNotFoundError, ValueError) as exc:
        return usage_error(str(exc).split(" Fix: ")[0], _fix_of(str(exc)))
    try:
        return await _chat(assistant, args, stdin, out)
    finally:
        await assistant.close()


def _fix_of(message: str) -> str | None:
    return message.split(" Fix: ", 1)[1] if " Fix: " in message else None


async def _chat(assistant: Assistant, args: argparse.Namespace, stdin: TextIO, out: Console) -> int:
    cid = args.conversation_id or f"shell-{uuid.uuid4().hex[:8]}"
    interactive = stdin.isatty()
    out.print(
        f"[bold]taiwa shell[/] · model {assistant.nlu.model_id} · conversation {cid}\n"
        "[dim]Type a message; a number presses a button; /stop ends the session.[/]"
    )
    buttons: list[dict[str, str]] = []
    loop = asyncio.get_running_loop()
    while True:
        if interactive:
            out.print("[bold cyan]You:[/] ", end="")
        line = await loop.run_in_executor(None, stdin.readline)
        if not line:
            break
        text = line.strip()
        if not text:
            continue
        if not interactive:
            out.print(f"[bold cyan]You:[/] {escape(text)}")
        if text in EXIT_COMMANDS:
            break
        if text == "/release":
            await assistant.processor.release_handoff(cid)
            out.print("[dim](handoff released: the bot answers again)[/]")
            continue
        if text.isdigit() and buttons:
            index = int(text) - 1
            if not 0 <= index < len(buttons):
                out.print(f"[yellow]There is no button {text}; choose 1 to {len(buttons)}.[/]")
                continue
            text = buttons[index]["payload"]
            out.print(f"[dim](pressed: {escape(buttons[index]['title'])} → {escape(text)})[/]")
        result = await assistant.processor.handle(cid, text, channel="shell")
        buttons = _show(result, out)
        if args.debug:
            _debug(result, out)
        if result.state.handoff is not None and any(isinstance(e, ev.HandoffRequested) for e in result.events):
            out.print(
                f"[magenta](handed over to a person: {result.state.handoff}. The bot stays silent; /release gives it back.)[/]"
            )
    out.print("[dim]Bye.[/]")
    return 0


def _show(result: TurnResult, out: Console) -> list[dict[str, str]]:
    buttons: list[dict[str, str]] = []
    for message in result.messages:
        if message.text:
            out.print(f"[bold green]Bot:[/] {escape(message.text)}")
        if "image" in message.data:
            out.print(f"     [dim]image: {escape(str(message.data['image']))}[/]")
        for button in message.buttons:
            buttons.append(button)
            out.print(f"     [bold]{len(buttons)}.[/] {escape(button['title'])} [dim]{escape(button['payload'])}[/]")
    return buttons


def _debug(result: TurnResult, out: Console) -> None:
    p = result.parse
    user = next((e for e in result.events if isinstance(e, ev.UserUttered)), None)
    if user is not None:
        ranking = ", ".join(f"{r.get('name')} {float(r.get('confidence') or 0):.2f}" for r in user.ranking[:5])
        out.print(
            f"  [dim]IR[/]   intent {user.intent} ({user.confidence:.2f}, {user.source}) · ranking: {escape(ranking)}"
        )
        if user.entities:
            ents = ", ".join(f"{e.get('entity')}={e.get('value')!r}" for e in user.entities)
            out.print(f"  [dim]IR[/]   entities: {escape(ents)}")
    elif p is None:
        out.print("  [dim]IR[/]   (command)")
    for change in result.events:
        if isinstance(change, ev.SlotSet):
            out.print(f"  [dim]ST[/]   slot {change.name} = {escape(repr(change.value))}")
        elif isinstance(change, ev.SlotRejected):
            out.print(
                f"  [dim]ST[/]   [yellow]rejected {change.name} = {escape(repr(change.value))}: {escape(change.reason)}[/]"
            )
    if result.decision is not None:
        out.print(f"  [dim]DM[/]   {result.decision.policy}: {escape(result.decision.reason)}")
    for e in result.events:
        if isinstance(e, ev.ToolCalled):
            err = f" {e.error_type}: {e.message}" if e.error_type else ""
            out.print(
                f"  [dim]EXEC[/] tool {e.name} {e.status} in {e.latency_ms:.1f} ms ({e.attempts} attempt(s)){escape(err)}"
            )
        elif isinstance(e, ev.FlowStarted | ev.FlowCompleted | ev.FlowCancelled | ev.FlowInterrupted | ev.FlowResumed):
            out.print(f"  [dim]EXEC[/] {e.type} {escape(str(getattr(e, 'flow', '')))}")
    stack = " > ".join(f.flow + (f"@{f.step}" if f.step else "") for f in result.state.stack) or "(no active flow)"
    out.print(f"  [dim]stack[/] {escape(stack)}")
    for error in result.errors:
        out.print(f"  [red]error[/] {escape(error)}")
    nodes = " ".join(f"{k} {v:.2f}" for k, v in result.nodes_ms.items())
    out.print(f"  [dim]time  {result.latency_ms:.2f} ms ({nodes})[/]")
