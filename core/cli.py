"""The ``latentgraph`` command: run, validate and inspect workflows headless.

Exit codes: 0 ok, 1 invalid workflow, 2 usage, 3 execution error, 130 interrupted.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path
from typing import Any

from latentgraph import plugins_cli, standard_json
from latentgraph import convert_cli
from latentgraph import serve_cli
from latentgraph.errors import ErrorReport, LatentgraphError

EXIT_OK, EXIT_INVALID, EXIT_USAGE, EXIT_FAILED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


class UsageError(LatentgraphError):
    pass


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "command", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return args.handler(args)
    except UsageError as exc:
        print(f"latentgraph: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except LatentgraphError as exc:
        print(f"latentgraph: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("latentgraph: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # a bug or an input nothing above caught: reported, never a traceback
        return _report_unexpected(args, exc)


def _report_unexpected(args: argparse.Namespace, exc: Exception) -> int:
    """One structured line (a JSON error with ``--json``); the traceback only with ``-v``."""
    kind = "too_deep" if isinstance(exc, RecursionError) else "internal_error"
    message = f"{type(exc).__name__}: {str(exc)[:300]}"
    if args.verbose:
        logging.getLogger("latentgraph").exception("unexpected error")
    if getattr(args, "json", False):
        body = {"error": {"type": kind, "message": message, "details": "", "extra_info": {}}, "node_errors": {}}
        print(standard_json.dumps({"status": "error", **body}, indent=2))
    print(f"latentgraph: unexpected error ({message}){'' if args.verbose else '; -v shows the traceback'}", file=sys.stderr)
    return EXIT_FAILED


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="latentgraph", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data-dir", help="base folder of models/, input/, output/ (default: $LATENTGRAPH_HOME or .)")
    common.add_argument("--device", help="cpu, cuda, cuda:1, mps (default: best available)")
    common.add_argument("--dtype", choices=["auto", "fp32", "fp16", "bf16"], help="model dtype (default: fp16 on GPU, fp32 on CPU)")
    common.add_argument(
        "--device-budget", "--vram-budget", type=_byte_size, metavar="SIZE",
        help="model weights allowed on the device at once, e.g. 6G, or auto (the GPU's memory less a reserve);"
        " least recently used models are offloaded to RAM, a model larger than this runs partly offloaded"
        " (default: $LATENTGRAPH_DEVICE_BUDGET, else no limit)",
    )
    common.add_argument("--plugins-dir", help="folder of plugin modules (default: <data dir>/plugins)")
    common.add_argument("--no-plugins", action="store_true", help="load only the built-in nodes")
    sub = parser.add_subparsers(dest="command")

    run = sub.add_parser("run", parents=[common], help="run a workflow")
    run.add_argument("workflow", help="workflow file: API JSON, editor JSON, or a PNG with the workflow inside")
    run.add_argument("--set", action="append", default=[], metavar="NODE.INPUT=VALUE", help="override an input; repeatable")
    run.add_argument("--map-model", action="append", default=[], metavar="OLD=NEW", help="use model file NEW where the workflow names OLD; repeatable")
    run.add_argument("--apply-seed-control", action="store_true", help="editor workflows: apply each seed's increment/decrement/randomize mode first")
    run.add_argument("--output-dir", help="where output images go (default: <data dir>/output)")
    run.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    run.set_defaults(handler=cmd_run)

    val = sub.add_parser("validate", parents=[common], help="check a workflow without running it")
    val.add_argument("workflow", help="workflow file: API JSON, editor JSON, or a PNG with the workflow inside")
    val.add_argument("--set", action="append", default=[], metavar="NODE.INPUT=VALUE")
    val.add_argument("--map-model", action="append", default=[], metavar="OLD=NEW", help="use model file NEW where the workflow names OLD")
    val.add_argument("--json", action="store_true", help="print errors as JSON")
    val.set_defaults(handler=cmd_validate)

    nodes = sub.add_parser("nodes", parents=[common], help="list node types (in /object_info's shape with --json)")
    nodes.add_argument("--json", action="store_true")
    nodes.set_defaults(handler=cmd_nodes)
    plugins_cli.add_parser(sub, common)
    serve_cli.add_parser(sub, [common])
    convert_cli.add_parser(sub, common)
    return parser


# -- engine assembly ----------------------------------------------------------------------------
def make_engine(args: argparse.Namespace, workflow: str | None = None, **settings_overrides: Any):
    """The engine a command runs on; ``workflow``'s own ``input/`` folder joins the input folders."""
    from latentgraph.engine import Engine
    from latentgraph.settings import Settings

    overrides = {k: v for k, v in settings_overrides.items() if v is not None}
    if args.device:
        overrides["device"] = args.device
    if args.dtype:
        overrides["dtype"] = args.dtype
    if getattr(args, "device_budget", None) is not None:
        overrides["device_budget"] = args.device_budget
    beside = Path(workflow).parent / "input" if workflow is not None else None
    if beside is not None and beside.is_dir():
        overrides["extra_input_dirs"] = (beside.resolve(),)
    settings = Settings.from_env(args.data_dir, **overrides)
    plugins_dir = Path(args.plugins_dir) if args.plugins_dir else settings.base_dir / "plugins"
    return Engine.create(
        settings,
        entry_points=not args.no_plugins,
        plugins_dir=None if args.no_plugins else plugins_dir,
        allow=_allow_list(),
    )


def _byte_size(text: str) -> int | str:
    from latentgraph.settings import parse_bytes

    if text.strip().lower() == "auto":
        return "auto"
    try:
        return parse_bytes(text)
    except (ValueError, KeyError):
        raise argparse.ArgumentTypeError(f"expected a size such as 6G, 512M or 1000000, got {text!r}") from None


def _allow_list() -> list[str] | None:
    import os

    value = os.environ.get("LATENTGRAPH_PLUGINS")
    return None if value is None else [p.strip() for p in value.split(",") if p.strip()]


def require_file(path: str) -> None:
    if not Path(path).is_file():
        raise UsageError(f"workflow file not found: {path}")


def load_workflow(
    path: str, overrides: list[str], registry, *, model_map: list[str] = (), apply_controls: bool = False
) -> tuple[Any, dict[str, Any]]:
    """Read API JSON, editor JSON or a PNG; returns (API-format data, extra per-prompt data).

    ``extra`` carries the editor JSON (``workflow``) for SaveImage to embed, or ``report`` when the
    file could not be read or converted.
    """
    require_file(path)
    from latentgraph.sources import WorkflowSourceError, apply_model_map, load_source

    try:
        loaded = load_source(path, registry, apply_controls=apply_controls)
    except WorkflowSourceError as exc:
        raise UsageError(str(exc)) from None
    if loaded.report:
        return loaded.prompt, {"report": loaded.report}
    try:
        apply_model_map(loaded.prompt, list(model_map), registry)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    apply_overrides(loaded.prompt, overrides)
    return loaded.prompt, loaded.extra


def apply_overrides(data: Any, overrides: list[str]) -> None:
    """``--set NODE.INPUT=VALUE``: VALUE is JSON if it parses, else a string."""
    if not overrides:
        return
    if not isinstance(data, dict):
        raise UsageError("--set needs an API-format workflow")
    for item in overrides:
        target, eq, raw = item.partition("=")
        node_id, dot, name = target.partition(".")
        if not eq or not dot or not node_id or not name:
            raise UsageError(f"--set {item!r}: expected NODE_ID.INPUT=VALUE")
        node = data.get(node_id)
        if node is None:
            matches = [k for k, v in data.items() if isinstance(v, dict) and v.get("_meta", {}).get("title") == node_id]
            if len(matches) != 1:
                raise UsageError(f"--set {item!r}: no node '{node_id}' in the workflow (ids: {', '.join(list(data)[:30])})")
            node = data[matches[0]]
        try:
            value = standard_json.loads(raw)
        except standard_json.JsonInputError as exc:
            raise UsageError(f"--set {item[:80]!r}: {exc}") from None
        except ValueError:  # not JSON: a string
            value = raw
        if isinstance(value, list):
            value = {"__value__": value}
        node.setdefault("inputs", {})[name] = value


# -- commands -----------------------------------------------------------------------------------
def cmd_validate(args: argparse.Namespace) -> int:
    require_file(args.workflow)
    engine = make_engine(args, args.workflow)
    data, extra = load_workflow(args.workflow, args.set, engine.registry, model_map=args.map_model)
    report: ErrorReport | None = extra.get("report")
    if report is None:
        _graph, report = engine.check(data)
    if args.json:
        print(standard_json.dumps({"valid": not report, **report.to_dict()}, indent=2))
    elif report:
        print(f"{args.workflow}: invalid workflow", file=sys.stderr)
        print(report.format(), file=sys.stderr)
        _print_model_hint(report, data, engine.registry)
    else:
        print(f"{args.workflow}: ok")
    return EXIT_INVALID if report else EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    from latentgraph.context import InterruptFlag
    from latentgraph.progress import ProgressPrinter

    require_file(args.workflow)
    engine = make_engine(args, args.workflow, output_dir=Path(args.output_dir).resolve() if args.output_dir else None)
    data, extra = load_workflow(
        args.workflow, args.set, engine.registry, model_map=args.map_model, apply_controls=args.apply_seed_control
    )
    report = extra.pop("report", None)
    graph = None
    if report is None:
        graph, report = engine.check(data)
    if graph is None:
        if args.json:
            print(standard_json.dumps({"status": "invalid", **report.to_dict()}, indent=2))
        else:
            print(f"{args.workflow}: invalid workflow", file=sys.stderr)
            print(report.format(), file=sys.stderr)
            _print_model_hint(report, data, engine.registry)
        return EXIT_INVALID

    interrupt = InterruptFlag()
    previous = signal.getsignal(signal.SIGINT)

    def on_sigint(signum, frame):  # first Ctrl-C stops at the next step; a second one kills
        interrupt.set()
        signal.signal(signal.SIGINT, previous)

    signal.signal(signal.SIGINT, on_sigint)
    try:
        with ProgressPrinter(graph, enabled=not args.quiet) as progress:
            result = engine.run(graph, sink=progress, interrupt=interrupt, extra=extra)
    finally:
        signal.signal(signal.SIGINT, previous)

    files = output_files(result.outputs, engine.settings)
    if args.json:
        print(standard_json.dumps({**result.to_dict(), "files": [str(f) for f in files]}, indent=2))
    else:
        _print_summary(result, graph, files)
    return {"success": EXIT_OK, "error": EXIT_FAILED, "interrupted": EXIT_INTERRUPTED}[result.status]


def _print_model_hint(report: ErrorReport, data: Any, registry) -> None:
    from latentgraph.sources import model_hint

    hint = model_hint(report, data, registry)
    if hint:
        print(hint, file=sys.stderr)


def output_files(outputs: dict[str, dict[str, Any]], settings) -> list[Path]:
    folders = {"output": settings.output_dir, "temp": settings.temp_dir, "input": settings.input_dir}
    files = []
    for ui in outputs.values():
        for item in ui.get("images", []) if isinstance(ui, dict) else []:
            folder = folders.get(item.get("type", "output"), settings.output_dir)
            files.append(folder / item.get("subfolder", "") / item["filename"])
    return files


def _print_summary(result, graph, files: list[Path]) -> None:
    out = sys.stderr
    if result.status == "error" and result.failure:
        f = result.failure
        where = f"node {f.node_id} ({f.class_type})" + (f" input '{f.input_name}'" if f.input_name else "")
        print(f"error in {where}: {f.message}", file=out)
    elif result.status == "interrupted":
        print(f"interrupted{' at node ' + result.interrupted_at if result.interrupted_at else ''}", file=out)
    for nid in result.executed:
        print(f"  {nid:>6} {graph.nodes[nid].class_type:<28} {result.seconds[nid]:8.3f}s", file=out)
    print(
        f"{len(result.executed)} node(s) executed, {len(result.cached)} cached, {result.total_seconds:.2f}s total",
        file=out,
    )
    for path in files:
        print(path)


def cmd_nodes(args: argparse.Namespace) -> int:
    from latentgraph.object_info import object_info

    engine = make_engine(args)
    info = object_info(engine.registry, engine.settings)
    if args.json:
        print(standard_json.dumps(info, indent=2))
        return EXIT_OK
    for name, node in sorted(info.items(), key=lambda kv: (kv[1]["category"], kv[0])):
        if "alias_of" in node:
            continue
        ins = ", ".join(f"{k}:{v[0] if isinstance(v[0], str) else 'COMBO'}" for k, v in node["input"]["required"].items())
        outs = ", ".join(node["output"])
        aliases = [a for a, n in info.items() if n.get("alias_of") == name]
        alias_text = f"  (alias: {', '.join(aliases)})" if aliases else ""
        print(f"{node['category']:<14} {name:<22} ({ins}) -> ({outs}){alias_text}")
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
