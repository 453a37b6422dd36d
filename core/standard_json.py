"""Standard JSON (RFC 8259) in and out: what browsers' ``JSON.parse`` and every client accept.

Python's ``json`` reads and writes ``NaN``/``Infinity`` (and turns ``1e400`` into infinity),
refuses integers over 4,300 digits with a bare ``ValueError`` and recurses once per nesting
level. :func:`loads` turns each of those into a :class:`JsonInputError` naming the value's path,
so the server (400) and the CLI (a structured error) refuse them at the edge; :func:`dumps`
never writes a non-finite float, whatever got past an edge.
"""

from __future__ import annotations

import json
import math
import sys
from typing import Any

#: Deeper nesting is refused: workflows nest ~15 levels, and every deep walk after parsing
#: (validation, copies, encoding) would otherwise risk ``RecursionError``.
MAX_DEPTH = 100
#: Integers must fit a double, as RFC 8259 advises for interoperability: ``float(x)`` never overflows.
MAX_INT = int(sys.float_info.max)
#: Digits of an integer literal we convert at all (Python's own limit is 4,300).
MAX_INT_DIGITS = 400


class JsonInputError(ValueError):
    """A document that is JSON to Python but not standard JSON we accept; ``path`` names the value."""

    def __init__(self, message: str, path: str = "", kind: str = "invalid_json") -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.message = message
        self.path = path
        self.kind = kind


class _TooLong:
    """Stands in for an integer literal too long to convert, so the walk can name its path."""


_TOO_LONG = _TooLong()


def _int_or_marker(text: str) -> Any:
    return _TOO_LONG if len(text.lstrip("-")) > MAX_INT_DIGITS else int(text)


def loads(text: str | bytes | bytearray, *, max_depth: int = MAX_DEPTH) -> Any:
    """Parse ``text``; raises ``json.JSONDecodeError`` (bad syntax) or :class:`JsonInputError`."""
    try:
        try:
            value = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise
        except ValueError:  # an integer literal over Python's digit limit: parse again, marking it
            value = json.loads(text, parse_int=_int_or_marker)
    except RecursionError:  # from either parse (a long integer *and* deep nesting: both)
        raise JsonInputError(f"nested deeper than {max_depth} levels", kind="too_deep") from None
    check(value, max_depth=max_depth)
    return value


def check(value: Any, *, max_depth: int = MAX_DEPTH) -> None:
    """Raise :class:`JsonInputError` for the first non-standard value (iteratively: no recursion)."""
    if plainly_standard(value, max_depth):
        return
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(value, ())]
    while stack:
        item, path = stack.pop()
        if isinstance(item, dict):
            if len(path) >= max_depth:
                raise JsonInputError(f"nested deeper than {max_depth} levels", path_text(path), "too_deep")
            for key, child in item.items():
                _check_text(key, (*path, str(key)))
                stack.append((child, (*path, str(key))))
        elif isinstance(item, list):
            if len(path) >= max_depth:
                raise JsonInputError(f"nested deeper than {max_depth} levels", path_text(path), "too_deep")
            stack.extend((child, (*path, i)) for i, child in enumerate(item))
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise JsonInputError("not a finite number (NaN, Infinity and numbers beyond ±1.8e308 are not JSON)", path_text(path), "non_finite_number")
        elif item is _TOO_LONG:
            raise JsonInputError(f"integer literal longer than {MAX_INT_DIGITS} digits", path_text(path), "number_too_large")
        elif isinstance(item, int) and not isinstance(item, bool):
            if abs(item) > MAX_INT:
                raise JsonInputError("integer beyond ±1.8e308 (does not fit a double)", path_text(path), "number_too_large")
        elif isinstance(item, str):
            _check_text(item, path)


def plainly_standard(value: Any, max_depth: int) -> bool:
    """True when ``value`` certainly passes :func:`check`: the same rules without building a path
    per value (a walk with paths was half the cost of running a large cached workflow). Anything
    unusual answers False, and :func:`check` then walks again to name the value's path."""
    if type(value) is not dict and type(value) is not list:
        return False
    level, max_int = [value], MAX_INT
    for _depth in range(max_depth):  # one nesting level at a time: no (value, depth) pairs
        deeper: list[Any] = []
        push = deeper.append
        for item in level:
            if type(item) is dict:
                for key in item:
                    if type(key) is not str or not (key.isascii() or _encodes(key)):
                        return False
                children = item.values()
            else:
                children = item
            for child in children:
                kind = type(child)
                if kind is str:
                    if not (child.isascii() or _encodes(child)):
                        return False
                elif kind is int:
                    if child > max_int or child < -max_int:
                        return False
                elif kind is dict or kind is list:
                    push(child)
                elif kind is float:
                    if child - child != 0.0:  # inf - inf and nan - nan are nan
                        return False
                elif child is not None and kind is not bool:
                    return False
        if not deeper:
            return True
        level = deeper
    return False  # containers at depth max_depth


def _encodes(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _check_text(text: str, path: tuple[str | int, ...]) -> None:
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise JsonInputError("string contains a lone UTF-16 surrogate", path_text(path), "invalid_string") from None


def path_text(path: tuple[str | int, ...]) -> str:
    """``("prompt", "3", "inputs", "x")`` → ``prompt.3.inputs.x``; list items as ``[i]``."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def dumps(value: Any, **kwargs: Any) -> str:
    """``json.dumps`` that never writes ``NaN``/``Infinity``: non-finite floats become ``null``."""
    kwargs.setdefault("default", str)
    try:
        return json.dumps(value, allow_nan=False, **kwargs)
    except ValueError:
        return json.dumps(finite(value), allow_nan=False, **kwargs)


def finite(value: Any) -> Any:
    """A copy of ``value`` with every non-finite float replaced by ``None``."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value
