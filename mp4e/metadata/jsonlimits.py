"""Strict parsing of JSON request bodies, and the JSON paths that errors name.

`parse_json_body` accepts only what RFC 8259 calls JSON and what the metadata store can keep.
It rejects `NaN` and `Infinity` literals, numbers that overflow a 64-bit float, unpaired UTF-16
surrogate escapes, `\\u0000` (PostgreSQL `jsonb` cannot store it) and nesting deeper than a
limit. The common case costs one C-level parse plus a few C-level scans of the raw bytes.
Only when a scan finds a suspect does a Python tokenizer walk the text to name the place.
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from mp4e.errors import InvalidParameter, PayloadTooLarge

DEFAULT_MAX_DEPTH = 32


@dataclass(frozen=True)
class ItemId:
    """Path step that selects the item of an array whose `id` is `value`."""

    value: str


PathStep = str | int | ItemId

_PLAIN_KEY = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*")
_PLAIN_ID = re.compile(r"[A-Za-z0-9_.:-]+")


def format_json_path(steps: Iterable[PathStep]) -> str:
    """Format path steps as `layers[id=main].overlays[2].position.x`.

    A key that is not identifier-like is written as `["a key"]`, an id that is not made of
    letters, digits and `_.:-` as `[id="an id"]`. The empty path (the root) formats as "".
    """
    parts: list[str] = []
    for step in steps:
        if isinstance(step, ItemId):
            text = step.value if _PLAIN_ID.fullmatch(step.value) else _quote(step.value)
            parts.append(f"[id={text}]")
        elif isinstance(step, int):
            parts.append(f"[{step}]")
        elif _PLAIN_KEY.fullmatch(step):
            parts.append(f".{step}" if parts else step)
        else:
            parts.append(f"[{_quote(step)}]")
    return "".join(parts)


def json_type_name(value: Any) -> str:
    """Return the JSON type of a parsed value: object, array, string, number, boolean or null."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def summarize_value(value: Any, *, max_chars: int = 200) -> Any:
    """Return a value fit for error details: scalars as they are, containers by type name.

    Strings longer than `max_chars` are cut and end with "...".
    """
    if isinstance(value, dict | list):
        return json_type_name(value)
    if isinstance(value, str) and len(value) > max_chars:
        return value[:max_chars] + "..."
    return value


def parse_json_body(
    raw: bytes,
    *,
    max_bytes: int,
    max_depth: int = DEFAULT_MAX_DEPTH,
    require_object: bool = False,
) -> Any:
    """Parse a request body strictly and return the value.

    A leading UTF-8 byte order mark is skipped. Depth counts nested objects and arrays, so
    `{}` has depth 1 and `{"a": []}` depth 2. With `require_object`, the top-level value must
    be a JSON object (as a PATCH body must).

    Raises:
        PayloadTooLarge: `raw` is longer than `max_bytes`; details `{limit, provided}`.
        InvalidParameter: the body is not UTF-8 or not JSON (the message names line and
            column), contains a value that cannot be stored (the `field` is its path, with
            array indexes as in `layers[0].name`), is nested deeper than `max_depth`
            (the `field` is the path of the first container too deep), or is not an object
            while `require_object` is set.

    Limitation: the limit is checked on the bytes given. The HTTP layer must stop reading a
    larger body itself, before it is all in memory.
    """
    if max_depth < 1:
        raise ValueError(f"max_depth must be at least 1, not {max_depth}")
    if len(raw) > max_bytes:
        raise PayloadTooLarge(
            f"The request body is {len(raw)} bytes, over the limit of {max_bytes} bytes.",
            details={"limit": max_bytes, "provided": len(raw)},
        )
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]

    text = _decode_utf8(raw)
    value = _load(text, max_depth)
    if _exceeds_depth(raw, max_depth) or _is_suspect(raw):
        _raise_first_fault(text, max_depth)

    if require_object and not isinstance(value, dict):
        kind = json_type_name(value)
        raise InvalidParameter(
            f"The request body must be a JSON object, not {_with_article(kind)}.",
            details={"expected": "object", "provided": kind},
        )
    return value


def _quote(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def _with_article(kind: str) -> str:
    return f"an {kind}" if kind[0] in "aeiou" else f"a {kind}"


def _decode_utf8(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidParameter(
            f"The request body is not valid UTF-8: invalid byte at offset {exc.start}.",
            details={"position": exc.start},
        ) from None


class _NonFiniteLiteralError(Exception):
    """Raised inside the parser when it meets NaN, Infinity or -Infinity."""


def _reject_constant(name: str) -> Any:
    raise _NonFiniteLiteralError(name)


def _load(text: str, max_depth: int) -> Any:
    if not text.strip():
        raise InvalidParameter("The request body is empty. Send a JSON document.")
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise InvalidParameter(
            f"The request body is not valid JSON: {exc.msg} at line {exc.lineno}, "
            f"column {exc.colno}.",
            details={"line": exc.lineno, "column": exc.colno, "position": exc.pos},
        ) from None
    except (_NonFiniteLiteralError, RecursionError):
        # Both stop the parser partway, so the tokenizer meets the fault in valid text.
        _raise_first_fault(text, max_depth)
        raise InvalidParameter(
            "The request body is nested too deeply to parse.", details={"limit": max_depth}
        ) from None
    except ValueError as exc:
        if "integer string conversion" not in str(exc):
            raise
        limit = sys.get_int_max_str_digits()
        raise InvalidParameter(
            f"The request body contains an integer with more than {limit} digits.",
            details={"limit": limit},
        ) from None


# A JSON string, used to drop strings when some contain escaped quotes.
_STRING_BYTES = re.compile(rb'"[^"\\]*+(?:\\.[^"\\]*+)*+"', re.DOTALL)

# An escape the store cannot keep: a surrogate not part of a pair, or \u0000.
_SUSPECT_ESCAPE = re.compile(
    rb"\\u(?:[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F])"
    rb"|(?<!\\u[dD][89abAB][0-9a-fA-F]{2}\\u)[dD][c-fC-F][0-9a-fA-F]{2}"
    rb"|0000)"
)

# Numbers are scanned with every digit read as "0", "E" as "e" and "+" dropped. A float that
# overflows to infinity (above about 1.8e308) has a 3-digit exponent, or at least 210 digits
# before an exponent of at most 99.
_NUMBER_SHAPES = bytes.maketrans(b"123456789E", b"000000000e")
_LARGE_EXPONENT = b"0e000"
_LONG_DIGIT_RUN = b"0" * 210


def _is_suspect(raw: bytes) -> bool:
    """Tell whether the body may contain a value the parser let through but the store rejects.

    A match inside a string or after an escaped backslash is harmless and only costs one
    tokenizer pass over the body.
    """
    if b"\\u" in raw and _SUSPECT_ESCAPE.search(raw):
        return True
    shapes = raw.translate(_NUMBER_SHAPES, b"+")
    return _LARGE_EXPONENT in shapes or _LONG_DIGIT_RUN in shapes


def _exceeds_depth(raw: bytes, max_depth: int) -> bool:
    """Tell whether valid JSON nests deeper than `max_depth`, scanning in C and numpy."""
    if raw.count(b"[") + raw.count(b"{") <= max_depth:
        return False
    if b'\\"' in raw:
        # An escaped quote would break the quote parity used below.
        raw = _STRING_BYTES.sub(b"", raw)

    codes = np.frombuffer(raw, dtype=np.uint8)
    quotes = np.flatnonzero(codes == ord('"'))
    openers = (codes == ord("[")) | (codes == ord("{"))
    closers = (codes == ord("]")) | (codes == ord("}"))
    brackets = np.flatnonzero(openers | closers)
    # A bracket after an odd number of quotes is inside a string.
    brackets = brackets[np.searchsorted(quotes, brackets) % 2 == 0]
    steps = np.where(openers[brackets], 1, -1)
    return int(np.cumsum(steps).max(initial=0)) > max_depth


_TOKEN = re.compile(
    r"[ \t\n\r]*(?:"
    r'(?P<string>"[^"\\]*(?:\\.[^"\\]*)*")'
    r"|(?P<punct>[][{}:,])"
    r'|(?P<atom>[^][ \t\n\r{}:,"]+))',
    re.DOTALL,
)


class _Frame:
    """Open container seen by the tokenizer, with the key or index of its current value."""

    __slots__ = ("expecting_key", "is_object", "step")

    def __init__(self, is_object: bool) -> None:
        self.is_object = is_object
        self.step: str | int = 0
        self.expecting_key = is_object

    def next_value(self) -> None:
        if self.is_object:
            self.expecting_key = True
        else:
            self.step = int(self.step) + 1


@dataclass(frozen=True)
class _Fault:
    """Value the store cannot keep: a noun phrase, and an optional sentence of advice."""

    problem: str
    advice: str = ""


def _raise_first_fault(text: str, max_depth: int) -> None:
    """Walk the tokens of `text` and raise InvalidParameter for the first fault in it.

    Returns only when no fault is found, which happens for a suspect pattern that turned out
    to be harmless, e.g. a large exponent inside a string.
    """
    stack: list[_Frame] = []
    position = 0
    while (match := _TOKEN.match(text, position)) is not None:
        position = match.end()
        kind = match.lastgroup or ""
        start = match.start(kind)
        lexeme = match.group(kind)
        top = stack[-1] if stack else None

        if lexeme in ("[", "{"):
            if len(stack) >= max_depth:
                fault = _Fault(f"objects and arrays nested deeper than {max_depth} levels")
                _raise_fault(text, start, stack, fault, limit=max_depth)
            stack.append(_Frame(is_object=lexeme == "{"))
        elif lexeme in ("]", "}"):
            stack.pop()
        elif lexeme == "," and top is not None:
            top.next_value()
        elif kind == "string" and top is not None and top.expecting_key:
            key = json.loads(lexeme)
            top.step = key
            top.expecting_key = False
            if key_fault := _string_fault(key, "an object key"):
                _raise_fault(text, start, stack[:-1], key_fault)
        elif kind == "string":
            if value_fault := _string_fault(json.loads(lexeme), "a string"):
                _raise_fault(text, start, stack, value_fault)
        elif kind == "atom" and (atom_fault := _atom_fault(lexeme)):
            _raise_fault(text, start, stack, atom_fault)


def _string_fault(value: str, subject: str) -> _Fault | None:
    if "\x00" in value:
        return _Fault(f"{subject} with \\u0000", "The metadata store cannot keep that character.")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return _Fault(f"{subject} with an unpaired UTF-16 surrogate escape")
    return None


def _atom_fault(lexeme: str) -> _Fault | None:
    if lexeme in ("NaN", "Infinity", "-Infinity"):
        return _Fault(lexeme, "JSON has no NaN or Infinity, so send null or a finite number.")
    is_float = lexeme[0] in "-0123456789" and any(c in lexeme for c in ".eE")
    if is_float and math.isinf(float(lexeme)):
        return _Fault(f"the number {lexeme[:40]}", "It overflows a 64-bit float.")
    return None


def _raise_fault(
    text: str, position: int, stack: list[_Frame], fault: _Fault, *, limit: int | None = None
) -> None:
    line = text.count("\n", 0, position) + 1
    column = position - text.rfind("\n", 0, position)
    path = format_json_path(frame.step for frame in stack)
    where = f"at {path}" if path else "at the top level"
    message = f"The request body contains {fault.problem} {where} (line {line}, column {column})."
    details: dict[str, Any] = {"line": line, "column": column}
    if limit is not None:
        details["limit"] = limit
    raise InvalidParameter(
        f"{message} {fault.advice}".rstrip(), field=path or None, details=details
    )
