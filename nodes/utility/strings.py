"""String nodes as ComfyUI has them (category utils/string): concatenate, replace, substring,
length, trim, contains, compare, case, and the three regex nodes."""

from __future__ import annotations

import re

from latentgraph.errors import NodeInputError
from latentgraph.node import In, Node, NodeSpec, Out

CASE_MODES = ("UPPERCASE", "lowercase", "Capitalize", "Title Case")
TRIM_MODES = ("Both", "Left", "Right")
COMPARE_MODES = ("Starts With", "Ends With", "Equal")
EXTRACT_MODES = ("First Match", "All Matches", "First Group", "All Groups")


def _text(name: str, **kw) -> In:
    return In(name, "STRING", multiline=True, **kw)


def regex_flags(case_insensitive: bool, multiline: bool, dotall: bool) -> int:
    return (re.IGNORECASE if case_insensitive else 0) | (re.MULTILINE if multiline else 0) | (re.DOTALL if dotall else 0)


def convert_case(text: str, mode: str) -> str:
    return {"UPPERCASE": str.upper, "lowercase": str.lower, "Capitalize": str.capitalize,
            "Title Case": str.title}.get(mode, str)(text)


def trim(text: str, mode: str) -> str:
    return {"Both": str.strip, "Left": str.lstrip, "Right": str.rstrip}.get(mode, str)(text)


def compare(a: str, b: str, mode: str, case_sensitive: bool) -> bool:
    if not case_sensitive:
        a, b = a.lower(), b.lower()
    if mode == "Starts With":
        return a.startswith(b)
    if mode == "Ends With":
        return a.endswith(b)
    return a == b


def regex_match(text: str, pattern: str, flags: int) -> bool:
    """Whether the pattern occurs anywhere; an invalid pattern matches nothing (as ComfyUI)."""
    try:
        return re.search(pattern, text, flags) is not None
    except re.error:
        return False


def regex_extract(text: str, pattern: str, mode: str, flags: int, group_index: int) -> str:
    """ComfyUI's RegexExtract: several results joined by newlines; no match or an invalid
    pattern gives ""."""
    try:
        if mode == "First Match":
            m = re.search(pattern, text, flags)
            return m.group(0) if m else ""
        if mode == "All Matches":
            found = re.findall(pattern, text, flags)
            return "\n".join(f[0] if isinstance(f, tuple) else f for f in found)
        if mode == "First Group":
            m = re.search(pattern, text, flags)
            return (m.group(group_index) or "") if m and len(m.groups()) >= group_index else ""
        if mode == "All Groups":
            return "\n".join(
                m.group(group_index) or "" for m in re.finditer(pattern, text, flags)
                if m.groups() and len(m.groups()) >= group_index
            )
    except re.error:
        return ""
    return ""


class StringConcatenate(Node):
    spec = NodeSpec(
        name="StringConcatenate", display_name="Concatenate", category="utils/string",
        inputs=(_text("string_a"), _text("string_b"), In("delimiter", "STRING", default="")),
        outputs=(Out("STRING"),),
    )

    def execute(self, ctx, string_a="", string_b="", delimiter=""):
        return (delimiter.join((string_a, string_b)),)


class StringSubstring(Node):
    spec = NodeSpec(
        name="StringSubstring", display_name="Substring", category="utils/string",
        description="Python slicing: characters start..end-1; negative counts from the end.",
        inputs=(_text("string"), In("start", "INT"), In("end", "INT")),
        outputs=(Out("STRING"),),
    )

    def execute(self, ctx, string="", start=0, end=0):
        return (string[int(start) : int(end)],)


class StringLength(Node):
    spec = NodeSpec(
        name="StringLength", display_name="Length", category="utils/string",
        inputs=(_text("string"),), outputs=(Out("INT", "length"),),
    )

    def execute(self, ctx, string=""):
        return (len(string),)


class CaseConverter(Node):
    spec = NodeSpec(
        name="CaseConverter", display_name="Case Converter", category="utils/string",
        inputs=(_text("string"), In("mode", "COMBO", choices=CASE_MODES)),
        outputs=(Out("STRING"),),
    )

    def execute(self, ctx, string="", mode="UPPERCASE"):
        return (convert_case(string, mode),)


class StringTrim(Node):
    spec = NodeSpec(
        name="StringTrim", display_name="Trim", category="utils/string",
        inputs=(_text("string"), In("mode", "COMBO", choices=TRIM_MODES)),
        outputs=(Out("STRING"),),
    )

    def execute(self, ctx, string="", mode="Both"):
        return (trim(string, mode),)


class StringReplace(Node):
    spec = NodeSpec(
        name="StringReplace", display_name="Replace", category="utils/string",
        inputs=(_text("string"), _text("find"), _text("replace")),
        outputs=(Out("STRING"),),
    )

    def execute(self, ctx, string="", find="", replace=""):
        return (string.replace(find, replace),)


class StringContains(Node):
    spec = NodeSpec(
        name="StringContains", display_name="Contains", category="utils/string",
        inputs=(_text("string"), _text("substring"), In("case_sensitive", "BOOLEAN", default=True)),
        outputs=(Out("BOOLEAN", "contains"),),
    )

    def execute(self, ctx, string="", substring="", case_sensitive=True):
        if not case_sensitive:
            string, substring = string.lower(), substring.lower()
        return (substring in string,)


class StringCompare(Node):
    spec = NodeSpec(
        name="StringCompare", display_name="Compare", category="utils/string",
        inputs=(_text("string_a"), _text("string_b"), In("mode", "COMBO", choices=COMPARE_MODES),
                In("case_sensitive", "BOOLEAN", default=True)),
        outputs=(Out("BOOLEAN"),),
    )

    def execute(self, ctx, string_a="", string_b="", mode="Starts With", case_sensitive=True):
        return (compare(string_a, string_b, mode, case_sensitive),)


def _flag_inputs(required: bool = True) -> tuple[In, ...]:
    return (
        In("case_insensitive", "BOOLEAN", default=True, required=required),
        In("multiline", "BOOLEAN", default=False, required=required),
        In("dotall", "BOOLEAN", default=False, required=required),
    )


class RegexMatch(Node):
    spec = NodeSpec(
        name="RegexMatch", display_name="Regex Match", category="utils/string",
        inputs=(_text("string"), _text("regex_pattern"), *_flag_inputs()),
        outputs=(Out("BOOLEAN", "matches"),),
    )

    def execute(self, ctx, string="", regex_pattern="", case_insensitive=True, multiline=False, dotall=False):
        return (regex_match(string, regex_pattern, regex_flags(case_insensitive, multiline, dotall)),)


class RegexExtract(Node):
    spec = NodeSpec(
        name="RegexExtract", display_name="Regex Extract", category="utils/string",
        inputs=(_text("string"), _text("regex_pattern"), In("mode", "COMBO", choices=EXTRACT_MODES),
                *_flag_inputs(), In("group_index", "INT", default=1, min=0, max=100)),
        outputs=(Out("STRING"),),
    )

    def execute(self, ctx, string="", regex_pattern="", mode="First Match", case_insensitive=True,
                multiline=False, dotall=False, group_index=1):
        flags = regex_flags(case_insensitive, multiline, dotall)
        return (regex_extract(string, regex_pattern, mode, flags, int(group_index)),)


class RegexReplace(Node):
    spec = NodeSpec(
        name="RegexReplace", display_name="Regex Replace", category="utils/string",
        description="Find and replace text using regex patterns.",
        inputs=(
            _text("string"), _text("regex_pattern"), _text("replace"), *_flag_inputs(required=False),
            In("count", "INT", default=0, min=0, max=100, required=False,
               tooltip="Most replacements to make; 0 replaces every match."),
        ),
        outputs=(Out("STRING"),),
    )

    def execute(self, ctx, string="", regex_pattern="", replace="", case_insensitive=True, multiline=False,
                dotall=False, count=0):
        try:
            flags = regex_flags(case_insensitive, multiline, dotall)
            return (re.sub(regex_pattern, replace, string, count=int(count), flags=flags),)
        except re.error as exc:  # ComfyUI raises too; say which input is wrong
            raise NodeInputError("regex_pattern", f"invalid regular expression or replacement: {exc}") from exc


NODES = [StringConcatenate, StringSubstring, StringLength, CaseConverter, StringTrim, StringReplace,
         StringContains, StringCompare, RegexMatch, RegexExtract, RegexReplace]
