"""``latentgraph serve``: the HTTP + websocket server on a persistent queue under the data dir."""

from __future__ import annotations

import argparse
import asyncio
import gc
import ipaddress
import logging
import os
import signal
import sys
from pathlib import Path

log = logging.getLogger("latentgraph.server")

QUEUE_FILE = "latentgraph-queue.sqlite3"
#: ``--preview-method`` values, as ComfyUI's (kept here so ``--help`` needs no server import).
PREVIEW_METHODS = ("none", "auto", "latent2rgb", "taesd")


def add_parser(subparsers, parents: list[argparse.ArgumentParser] = ()) -> argparse.ArgumentParser:
    serve = subparsers.add_parser("serve", parents=list(parents), help="serve the ComfyUI-compatible HTTP/websocket API")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, loopback only)")
    serve.add_argument("--port", type=int, default=8188, help="port (default: 8188; 0 picks a free one)")
    serve.add_argument(
        "--auth-token",
        default=None,
        help="require this token on every request (Bearer header or ?token=); default: $LATENTGRAPH_AUTH_TOKEN",
    )
    serve.add_argument("--max-upload-mb", type=float, default=64, help="largest accepted upload (default: 64)")
    serve.add_argument("--queue-db", help=f"queue/history database (default: <data dir>/{QUEUE_FILE})")
    serve.add_argument(
        "--queue-sync",
        choices=["full", "normal"],
        default="full",
        help="full (default): fsync each accepted prompt, survives power loss; normal: faster,"
        " survives a crash or kill -9 but not a power cut",
    )
    serve.add_argument("--history-size", type=int, default=10_000, help="history entries kept (default: 10000)")
    serve.add_argument(
        "--preview-method",
        choices=PREVIEW_METHODS,
        default="none",
        help="live previews sent during sampling unless a prompt's extra_data.preview_method says otherwise"
        " (default: none, as ComfyUI; auto, latent2rgb and taesd all use the latent→RGB approximation)",
    )
    serve.add_argument(
        "--max-prompt-crashes",
        type=_positive_int,
        default=3,
        metavar="N",
        help="a prompt the server process died running N times is failed instead of run again (default: 3)",
    )
    serve.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="extra Host name accepted when bound to loopback (e.g. behind a reverse proxy); repeatable",
    )
    serve.add_argument(
        "--no-editor",
        action="store_true",
        help="do not serve the web editor (ComfyUI's frontend) at /; the API stays",
    )
    serve.add_argument(
        "--editor-dir",
        metavar="PATH",
        help="serve this frontend build at / instead of the installed comfyui-frontend-package",
    )
    serve.add_argument(
        "--multi-user",
        action="store_true",
        help="several editor users (the Comfy-User header picks one); default: one user, 'default'",
    )
    serve.add_argument(
        "--workers",
        metavar="ray[://ADDRESS]",
        help="run prompts on Ray workers (pip install 'latentgraph[ray]'): 'ray' starts a local cluster,"
        " 'ray://HOST:PORT' joins one; the queue and history stay here (see docs/server.md)",
    )
    serve.add_argument(
        "--worker-count", type=_positive_int, metavar="N",
        help="with --workers: workers to create (default: one per GPU in the cluster, else one per CPU)",
    )
    serve.set_defaults(handler=cmd_serve)
    return serve


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def is_loopback(host: str) -> bool:
    if host in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def public_bind_warning(host: str, token: str | None) -> str | None:
    """The warning to print when the server is reachable from other machines without a token."""
    if token or is_loopback(host):
        return None
    return (
        f"latentgraph: WARNING: serving on {host} without --auth-token: anyone who can reach this address"
        " can run workflows, read your outputs and upload files"
    )


def cmd_serve(args: argparse.Namespace) -> int:
    from latentgraph.cli import make_engine
    from latentgraph.server import ServerConfig, create_app
    from latentgraph.server.store import Store

    logging.getLogger("latentgraph").setLevel(logging.INFO)
    if not logging.getLogger().handlers:
        logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
    token = args.auth_token or os.environ.get("LATENTGRAPH_AUTH_TOKEN") or None
    loopback = is_loopback(args.host)
    warning = public_bind_warning(args.host, token)
    if warning:
        print(warning, file=sys.stderr)
    editor_dir = editor_folder(args)
    engine = make_engine(args)
    db_path = Path(args.queue_db) if args.queue_db else engine.settings.base_dir / QUEUE_FILE
    store = Store(db_path, max_history=args.history_size, synchronous=args.queue_sync, max_crashes=args.max_prompt_crashes)
    if store.recovered:
        log.warning("re-queued %d prompt(s) interrupted by the last shutdown: %s", len(store.recovered), ", ".join(store.recovered))
    config = ServerConfig(
        auth_token=token,
        max_upload_bytes=int(args.max_upload_mb * 1024 * 1024),
        allowed_hosts=frozenset(h.lower() for h in args.allow_host) if loopback else None,
        preview_method=args.preview_method,
        editor_dir=editor_dir,
        multi_user=args.multi_user,
        cluster=_cluster_config(args, engine),
    )
    app = create_app(engine, store, config)
    if args.preview_method == "taesd":
        log.warning("no TAESD decoder here: previews use the latent→RGB approximation")
    # torch & co. leave ~240k long-lived objects; a full GC pass over them stops every thread (the
    # event loop too) for ~0.4 s. Freeze them out of the collector's generations once loaded.
    gc.collect()
    gc.freeze()
    # Hand the GIL over more often than every 5 ms, so the event loop answers promptly while the
    # worker thread runs Python-heavy nodes (torch kernels release the GIL anyway).
    sys.setswitchinterval(0.001)
    try:
        asyncio.run(_serve(app, args.host, args.port))
    except Exception as exc:
        from latentgraph.server.cluster import ClusterUnavailable

        if not isinstance(exc, ClusterUnavailable):
            raise
        print(f"latentgraph serve: {exc}", file=sys.stderr)
        return 2
    finally:
        store.close()
    return 0


def _cluster_config(args: argparse.Namespace, engine):
    """``--workers``: the cluster to run prompts on (None: this process)."""
    if not getattr(args, "workers", None):
        return None
    from latentgraph.server.cluster import ClusterConfig, ClusterUnavailable, parse_workers, require_ray, spec_from_args

    try:
        address = parse_workers(args.workers)
        require_ray()
    except (ValueError, ClusterUnavailable) as exc:
        print(f"latentgraph serve: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    return ClusterConfig(spec=spec_from_args(args, engine), address=address, count=args.worker_count,
                         max_attempts=args.max_prompt_crashes)


def editor_folder(args: argparse.Namespace) -> Path | None:
    """The frontend folder to serve at ``/``: ``--editor-dir``, else the installed
    ``comfyui-frontend-package``; None with ``--no-editor`` or (with a warning) when it is missing."""
    from latentgraph.server import editor_assets

    if args.no_editor:
        return None
    if args.editor_dir:
        try:
            return editor_assets.check_editor_dir(Path(args.editor_dir))
        except ValueError as exc:
            print(f"latentgraph serve: --editor-dir: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
    folder = editor_assets.default_editor_dir()
    if folder is None:
        print(f"latentgraph: no web editor: {editor_assets.FRONTEND_PACKAGE} is not installed"
              f" (pip install {editor_assets.FRONTEND_PACKAGE}=={editor_assets.TESTED_FRONTEND_VERSION})", file=sys.stderr)
        return None
    version = editor_assets.package_version(editor_assets.FRONTEND_PACKAGE)
    if version and version != editor_assets.TESTED_FRONTEND_VERSION:
        log.info("web editor %s (tested with %s)", version, editor_assets.TESTED_FRONTEND_VERSION)
    return folder


async def _serve(app, host: str, port: int) -> None:
    from aiohttp import web

    from latentgraph.server.runner import make_runner

    runner = make_runner(app, handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = [s.getsockname() for s in (site._server.sockets if site._server else [])]
    actual = bound[0][1] if bound else port
    shown = f"[{host}]" if ":" in host else host
    print(f"latentgraph: serving on http://{shown}:{actual}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # Windows
            pass
    try:
        await stop.wait()
    finally:
        print("latentgraph: shutting down (a running prompt stays queued)", file=sys.stderr, flush=True)
        await runner.cleanup()
