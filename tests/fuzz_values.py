"""JSON text for the fuzz campaign (``fuzz_kit``), including what is not JSON, and weird values.

Bodies are written by :func:`dumps`, not ``json.dumps``: it must emit what no encoder would (``NaN``,
integers of 5,000 digits, lone surrogates, nesting deeper than Python recurses).
:func:`weird_value` draws one value of a kind that breaks naive servers.
"""

from __future__ import annotations

import json
import math
import random
import re
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Raw:
    """Text spliced into a body as is (``NaN``, ``1e400``, 5,000 digits, ``[[[…]]]``)."""

    text: str


def dumps(value: Any) -> str:
    """JSON text of ``value``; floats that are not finite come out as ``NaN``/``Infinity``."""
    spliced: list[str] = []

    def splice(item: Any) -> str:
        if not isinstance(item, Raw):
            raise TypeError(type(item).__name__)
        spliced.append(item.text)
        return f"\x00raw{len(spliced) - 1}\x00"

    try:
        text = json.dumps(value, default=splice)
    except (RecursionError, ValueError, TypeError):
        return _dumps_slowly(value)
    return _SPLICED.sub(lambda m: spliced[int(m[1])], text) if spliced else text


_SPLICED = re.compile(r'"\\u0000raw(\d+)\\u0000"')


def _dumps_slowly(value: Any) -> str:
    out: list[str] = []
    stack: list[Any] = [value]
    while stack:  # iterative: fuzzed values may nest deeper than Python recurses
        item = stack.pop()
        if isinstance(item, Raw):
            out.append(item.text)
        elif isinstance(item, str):
            out.append(json.dumps(item))
        elif item is None or isinstance(item, bool):
            out.append(json.dumps(item))
        elif isinstance(item, int):
            out.append(str(item) if item.bit_length() < 13_000 else "9" * 3900)
        elif isinstance(item, float):
            out.append("NaN" if math.isnan(item) else ("Infinity" if item > 0 else "-Infinity") if math.isinf(item) else repr(item))
        elif isinstance(item, dict):
            parts: list[Any] = [Raw("}")]
            for i, (k, v) in enumerate(reversed(list(item.items()))):
                parts.append(v)
                parts.append(Raw(json.dumps(str(k)) + ":"))
                if i < len(item) - 1:
                    parts.append(Raw(","))
            parts.append(Raw("{"))
            stack.extend(parts)
        elif isinstance(item, (list, tuple)):
            parts = [Raw("]")]
            for i, v in enumerate(reversed(list(item))):
                parts.append(v)
                if i < len(item) - 1:
                    parts.append(Raw(","))
            parts.append(Raw("["))
            stack.extend(parts)
        else:
            out.append(json.dumps(str(item)))
    return "".join(out)


def _nested(rng: random.Random) -> Raw:
    depth = rng.choice([20, 60, 99, 101, 500, 1200, 5000])
    left, right = rng.choice([("[", "]"), ('{"a":', "}")])
    return Raw(left * depth + "0" + right * depth)


def weird_value(rng: random.Random, *, big: bool = True) -> Any:
    """One value of a kind that breaks naive servers."""
    choices = [
        lambda: math.nan,
        lambda: math.inf,
        lambda: -math.inf,
        lambda: Raw("1e400"),
        lambda: Raw("-1e400"),
        lambda: Raw(str(10**400)),
        lambda: Raw("9" * rng.choice([4300, 4301, 5000])),
        lambda: 2**63,
        lambda: -(2**63) - 1,
        lambda: 2**64 + 1,
        lambda: 1e308,
        lambda: -0.0,
        lambda: 5e-324,
        lambda: rng.randint(-(10**30), 10**30),
        lambda: rng.choice([0, 1, -1, 7, 255, 65535]),
        lambda: rng.random() * 1000,
        lambda: "",
        lambda: "\x00",
        lambda: "a\x00b",
        lambda: Raw('"\\ud800"'),
        lambda: Raw('"\\udfff\\ud800x"'),
        lambda: "\u202e\u200b\ufeff",
        lambda: "🎨" * rng.randint(1, 50),
        lambda: "../../../etc/passwd",
        lambda: "C:\\Windows\\win.ini",
        lambda: "%s%n{0}${x}",
        lambda: "<script>alert(1)</script>",
        lambda: True,
        lambda: False,
        lambda: None,
        lambda: [],
        lambda: {},
        lambda: [None],
        lambda: {"": None},
        lambda: ["1", 0],
        lambda: ["999999", 0],
        lambda: [0, "0"],
        lambda: {"__value__": [1, 2]},
        lambda: _nested(rng),
    ]
    if big:
        choices += [
            lambda: "x" * rng.choice([4096, 65536, 300_000]),
            lambda: list(range(rng.choice([1000, 20000]))),
            lambda: {str(i): i for i in range(rng.choice([500, 5000]))},
        ]
    return rng.choice(choices)()
