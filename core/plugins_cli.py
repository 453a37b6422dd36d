"""``latentgraph plugins``: which plugins loaded, what they added, and what went wrong."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def add_parser(subparsers: Any, common: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``plugins`` command; ``common`` carries --data-dir, --plugins-dir, --no-plugins …"""
    parser = subparsers.add_parser(
        "plugins",
        parents=[common],
        help="list plugins: version, source, hooks, nodes added, load time, errors",
        description="List the plugins an engine would load (the same selection as `latentgraph run`): "
        "entry points of the 'latentgraph' group, modules in the plugins folder, filtered by "
        "LATENTGRAPH_PLUGINS ('a,b' only these, '-c' all but c, '' none).",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON list")
    parser.add_argument("--check", action="store_true", help="exit with status 1 when any plugin reported an error")
    parser.set_defaults(handler=cmd_plugins)
    return parser


def cmd_plugins(args: argparse.Namespace) -> int:
    from latentgraph.cli import make_engine

    engine = make_engine(args)
    plugins = engine.host.describe()
    if args.json:
        print(json.dumps(plugins, indent=2))
    else:
        print(format_plugins(plugins))
    failed = any(p["errors"] for p in plugins)
    return 1 if args.check and failed else 0


def format_plugins(plugins: list[dict[str, Any]]) -> str:
    lines = []
    for p in plugins:
        state = "" if p["enabled"] else "  [disabled by LATENTGRAPH_PLUGINS]"
        version = f" {p['version']}" if p["version"] else ""
        lines.append(f"{p['name']}{version}  ({p['source']}: {p['location']}){state}")
        if not p["enabled"]:
            continue
        lines.append(f"    load time: {p['load_seconds'] * 1000:.1f} ms")
        lines.append(f"    hooks: {', '.join(p['hooks']) or '-'}")
        nodes = p["nodes"]
        shown = ", ".join(nodes[:12]) + (f" … (+{len(nodes) - 12})" if len(nodes) > 12 else "")
        lines.append(f"    nodes ({len(nodes)}): {shown or '-'}")
        for error in p["errors"]:
            lines.append(f"    ERROR: {error}")
    if not plugins:
        lines.append("no plugins loaded")
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    from latentgraph.cli import main

    sys.exit(main(["plugins", *sys.argv[1:]]))
