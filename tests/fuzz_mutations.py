"""Mutations of the example workflows for the fuzz campaign (``fuzz_kit``).

:class:`Mutator` edits ``workflows/*.json`` (API format) and ``workflows/editor/*.json`` (the
editor's format): type swaps, NaN/Infinity, huge integers, deep nesting, unicode and NUL, missing
and extra fields, links to nowhere, cycles, wrong slot indices, long strings within the limits.
"""

from __future__ import annotations

import copy
import json
import math
import random
from pathlib import Path
from typing import Any

from fuzz_values import Raw, weird_value

WORKFLOWS = Path(__file__).resolve().parents[1] / "workflows"


def load_examples() -> tuple[list[dict], list[dict]]:
    """(API-format examples, editor-format examples), parsed from ``workflows/``."""
    api = [json.loads(p.read_text()) for p in sorted(WORKFLOWS.glob("*.json"))]
    editor = [json.loads(p.read_text()) for p in sorted((WORKFLOWS / "editor").glob("*.json"))]
    return api, editor


def _paths(value: Any, prefix: tuple = (), limit: int = 2000) -> list[tuple]:
    """Every container path in ``value`` (bounded), for picking a spot to mutate."""
    out: list[tuple] = []
    stack = [(prefix, value)]
    while stack and len(out) < limit:
        path, item = stack.pop()
        if isinstance(item, dict):
            out.append(path)
            stack.extend((path + (k,), v) for k, v in item.items())
        elif isinstance(item, list):
            out.append(path)
            stack.extend((path + (i,), v) for i, v in enumerate(item))
    return out


def _links_to(inputs: Any, nid: str) -> bool:
    return isinstance(inputs, dict) and any(isinstance(v, list) and v[:1] == [nid] for v in inputs.values())


def _get(value: Any, path: tuple) -> Any:
    for key in path:
        value = value[key]
    return value


class Mutator:
    """Mutations of API-format and editor-format workflows, all drawn from ``rng``."""

    def __init__(self, rng: random.Random, api: list[dict], editor: list[dict]) -> None:
        self.rng = rng
        self.api = api
        self.editor = editor

    # generic: any JSON tree
    def tree(self, value: Any, rounds: int = 1) -> Any:
        """``rounds`` random edits anywhere in ``value``: replace, delete, add, duplicate, swap type."""
        rng = self.rng
        value = copy.deepcopy(value)
        for _ in range(rounds):
            paths = _paths(value)
            if not paths:
                return weird_value(rng)
            path = rng.choice(paths)
            holder = _get(value, path)
            keys = list(holder) if isinstance(holder, dict) else list(range(len(holder)))
            op = rng.randrange(6)
            if op == 0 and keys:  # replace a value
                holder[rng.choice(keys)] = weird_value(rng)
            elif op == 1 and keys:  # delete one
                del holder[rng.choice(keys)]
            elif op == 2:  # add one
                if isinstance(holder, dict):
                    holder[rng.choice(["extra", "", "\x00", "__proto__", "constructor", "🎨", "x" * 500])] = weird_value(rng)
                else:
                    holder.insert(rng.randint(0, len(holder)), weird_value(rng))
            elif op == 3 and keys:  # duplicate one (as a sibling)
                k = rng.choice(keys)
                if isinstance(holder, dict):
                    holder[f"{k}_copy"] = copy.deepcopy(holder[k])
                else:
                    holder.append(copy.deepcopy(holder[k]))
            elif op == 4 and keys:  # swap the type: str↔number↔list↔dict
                k = rng.choice(keys)
                old = holder[k]
                holder[k] = {str: lambda v: 1, int: lambda v: str(v), float: lambda v: [v], list: lambda v: {"0": v}, dict: lambda v: list(v.values()), bool: lambda v: "true"}.get(type(old), lambda v: 0)(old)
            elif path:  # replace the container itself
                parent = _get(value, path[:-1])
                parent[path[-1]] = weird_value(rng)
        return value

    # API format: {"id": {"class_type", "inputs"}}
    def api_workflow(self) -> Any:
        rng = self.rng
        wf = copy.deepcopy(rng.choice(self.api))
        for _ in range(rng.choice([1, 1, 1, 2, 3, 8])):
            wf = self._api_once(wf)
            if not isinstance(wf, dict):
                break
        return wf

    def _api_once(self, wf: dict) -> Any:
        rng = self.rng
        ids = [k for k, v in wf.items() if isinstance(v, dict)]
        if not ids:
            return self.tree(wf)
        nid = rng.choice(ids)
        node = wf[nid]
        inputs = node.get("inputs") if isinstance(node.get("inputs"), dict) else None
        names = list(inputs) if inputs else []
        op = rng.randrange(16)
        if op == 0:
            del wf[nid]
        elif op == 1:
            node.pop("class_type", None)
        elif op == 2:
            node["class_type"] = rng.choice([weird_value(rng, big=False), "NoSuchNode", "SaveImage", "KSampler", "PreviewImage", "", "__init__"])
        elif op == 3:
            node["inputs"] = weird_value(rng)
        elif op == 4 and names:
            inputs[rng.choice(names)] = weird_value(rng)
        elif op == 5 and names:
            del inputs[rng.choice(names)]
        elif op == 6 and inputs is not None:
            inputs[rng.choice(["extra", "zzz", "", "\x00"])] = weird_value(rng)
        elif op == 7 and names:  # a link to nowhere
            inputs[rng.choice(names)] = [rng.choice(["999", "", "x" * 300, "\x00", nid + "0"]), 0]
        elif op == 8 and names:  # a wrong slot index
            other = rng.choice(ids)
            inputs[rng.choice(names)] = [other, rng.choice([-1, 3, 99, 2**31, 2**64, 1.5, math.nan, "0", None, [0]])]
        elif op == 9 and names:  # a malformed link
            inputs[rng.choice(names)] = rng.choice([[nid], [nid, 0, 0], [[nid], 0], [None, None], [1, 0], [{"a": 1}, 0]])
        elif op == 10 and names:  # a cycle: link this node to one of its dependants, or itself
            dependants = [k for k in ids if k in wf and isinstance(wf[k], dict) and _links_to(wf[k].get("inputs"), nid)]
            inputs[rng.choice(names)] = [rng.choice(dependants or [nid]), 0]
        elif op == 11:  # a weird node id
            wf[rng.choice(["", "\x00", "-1", "1e400", "x" * 1000, "🎨", " 3", "03"])] = copy.deepcopy(node)
        elif op == 12:
            wf[nid] = weird_value(rng)
        elif op == 13:
            node["_meta"] = weird_value(rng)
        elif op == 14 and len(wf) < 100:  # many nodes (within the node limit)
            for i in range(rng.choice([50, 500, 3000])):
                wf[f"c{i}"] = copy.deepcopy(node)
        else:
            return self.tree(wf, rng.randint(1, 3))
        return wf

    # editor format: {"nodes": [...], "links": [[id, from, from_slot, to, to_slot, type]], ...}
    def editor_workflow(self) -> Any:
        rng = self.rng
        wf = copy.deepcopy(rng.choice(self.editor))
        for _ in range(rng.choice([1, 1, 1, 2, 3, 8])):
            wf = self._editor_once(wf)
            if not isinstance(wf, dict):
                break
        return wf

    def _editor_once(self, wf: dict) -> Any:
        rng = self.rng
        nodes = [n for n in wf.get("nodes", []) if isinstance(n, dict)] if isinstance(wf.get("nodes"), list) else []
        links = wf.get("links") if isinstance(wf.get("links"), list) else []
        node_ids = [n.get("id") for n in nodes]
        op = rng.randrange(16)
        if op == 0 and links:  # a link to nowhere
            link = rng.choice(links)
            if isinstance(link, list) and len(link) >= 5:
                link[rng.choice([1, 3])] = rng.choice([9999, -1, 0, "4", None, math.inf, 2**64])
        elif op == 1 and links:  # wrong slot indices
            link = rng.choice(links)
            if isinstance(link, list) and len(link) >= 5:
                link[rng.choice([2, 4])] = rng.choice([-1, 7, 99, 2**31, 2**64, 1.5, math.nan, math.inf, "0", None])
        elif op == 2 and len(nodes) >= 2 and links:  # a cycle: the last node feeds the first
            first, last = nodes[0], nodes[-1]
            new_id = max((l[0] for l in links if isinstance(l, list) and l and isinstance(l[0], int)), default=0) + 1
            links.append([new_id, last.get("id"), 0, first.get("id"), 0, "*"])
            if isinstance(first.get("inputs", []), list):
                first.setdefault("inputs", []).append({"name": "loop", "type": "*", "link": new_id})
        elif op == 3 and nodes:  # widgets of the wrong types or counts
            node = rng.choice(nodes)
            values = node.get("widgets_values")
            if isinstance(values, list) and values and rng.random() < 0.7:
                values[rng.randrange(len(values))] = weird_value(rng)
            else:
                node["widgets_values"] = weird_value(rng)
        elif op == 4 and nodes:
            rng.choice(nodes)["mode"] = rng.choice([math.inf, math.nan, -1, 2, 4, 99, 2**64, "0", None, Raw("1e400")])
        elif op == 5 and nodes:
            rng.choice(nodes)["type"] = rng.choice(["NoSuchNode", "", None, 1, "Reroute", "PrimitiveNode", "Note", "SaveImage"])
        elif op == 6 and nodes:  # an input's link to nowhere
            node = rng.choice(nodes)
            ins = node.get("inputs")
            if isinstance(ins, list) and ins and isinstance(ins[0], dict):
                rng.choice(ins)["link"] = rng.choice([9999, -1, math.inf, "1", [1], 2**64])
        elif op == 7 and nodes:  # an output's links to nowhere
            node = rng.choice(nodes)
            outs = node.get("outputs")
            if isinstance(outs, list) and outs and isinstance(outs[0], dict):
                rng.choice(outs)["links"] = rng.choice([[9999], None, [math.nan], "1", [[1]], list(range(200))])
        elif op == 8 and nodes:  # duplicate node ids
            wf["nodes"].append(copy.deepcopy(rng.choice(nodes)))
        elif op == 9 and nodes:
            rng.choice(nodes)["id"] = rng.choice([weird_value(rng, big=False), node_ids[0] if node_ids else 1])
        elif op == 10:
            wf["links"] = weird_value(rng)
        elif op == 11:
            wf["nodes"] = weird_value(rng)
        elif op == 12:  # a subgraph definition, possibly broken
            wf.setdefault("definitions", {})
            if isinstance(wf["definitions"], dict):
                wf["definitions"]["subgraphs"] = rng.choice([
                    weird_value(rng),
                    [{"id": "sg", "nodes": copy.deepcopy(nodes[:2]), "links": [], "inputs": [], "outputs": []}],
                    [{"id": "sg", "nodes": [{"id": 1, "type": "sg", "mode": 0}], "links": []}],
                ])
                if nodes and rng.random() < 0.5:
                    rng.choice(nodes)["type"] = "sg"
        elif op == 13 and links:  # a link of the wrong shape
            links[rng.randrange(len(links))] = rng.choice([[], [1], {"id": 1}, None, "1", [1, 2, 3, 4, 5, 6, 7, 8], weird_value(rng)])
        elif op == 14 and 0 < len(nodes) < 100:  # many nodes (within the limits)
            for i in range(rng.choice([50, 500, 2000])):
                extra = copy.deepcopy(rng.choice(nodes))
                extra["id"] = 100_000 + i
                wf["nodes"].append(extra)
        else:
            return self.tree(wf, rng.randint(1, 3))
        return wf
