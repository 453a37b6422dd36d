"""``latentgraph convert IN [-o OUT]``: editor JSON (or a PNG with a workflow) → API-format JSON.

``--to editor`` goes the other way, so a headless workflow can be opened in ComfyUI's editor.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from latentgraph import standard_json


def add_parser(subparsers: argparse._SubParsersAction, parents: argparse.ArgumentParser | list[argparse.ArgumentParser] | None = None) -> None:
    """Register the ``convert`` command; ``parents`` are the shared engine options (data dir, plugins)."""
    if isinstance(parents, argparse.ArgumentParser):
        parents = [parents]
    cmd = subparsers.add_parser(
        "convert",
        parents=list(parents or []),
        help="convert an editor-format workflow (JSON, or a PNG with one inside) to the API format",
    )
    cmd.add_argument("workflow", help="editor JSON, API JSON, or a PNG written by SaveImage or ComfyUI")
    cmd.add_argument("-o", "--output", help="file to write (default: standard output)")
    cmd.add_argument("--to", choices=["api", "editor"], default="api", help="the format to write (default: api)")
    cmd.add_argument(
        "--apply-seed-control",
        action="store_true",
        help="apply each seed's control_after_generate mode (increment, decrement, randomize) like the editor does when queueing",
    )
    cmd.set_defaults(handler=cmd_convert)


def cmd_convert(args: argparse.Namespace) -> int:
    from latentgraph.cli import EXIT_INVALID, EXIT_OK, UsageError, make_engine
    from latentgraph.sources import WorkflowSourceError, load_source

    if not Path(args.workflow).is_file():
        raise UsageError(f"workflow file not found: {args.workflow}")
    engine = make_engine(args)
    try:
        loaded = load_source(args.workflow, engine.registry, apply_controls=args.apply_seed_control)
    except WorkflowSourceError as exc:
        raise UsageError(str(exc)) from None
    if loaded.report:
        print(f"{args.workflow}: cannot convert", file=sys.stderr)
        print(loaded.report.format(), file=sys.stderr)
        return EXIT_INVALID
    result = loaded.prompt
    if args.to == "editor":
        from latentgraph.editor_format import api_to_editor

        result, report = api_to_editor(loaded.prompt if isinstance(loaded.prompt, dict) else {}, engine.registry)
        if report:
            print(f"{args.workflow}: cannot write it in the editor format", file=sys.stderr)
            print(report.format(), file=sys.stderr)
            return EXIT_INVALID
    text = standard_json.dumps(result, indent=2) + "\n"
    if args.output and args.output != "-":
        Path(args.output).write_text(text, encoding="utf-8")
        count = len(loaded.prompt) if isinstance(loaded.prompt, dict) else 0
        print(f"{args.workflow} ({loaded.kind}) → {args.output} ({args.to}): {count} node(s)", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return EXIT_OK
