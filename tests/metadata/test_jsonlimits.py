import json
from typing import Any

import pytest

from mp4e.errors import InvalidParameter, PayloadTooLarge
from mp4e.metadata.jsonlimits import ItemId, format_json_path, parse_json_body

MAX_BYTES = 1_000_000


def parse(raw: bytes, **options: Any) -> Any:
    return parse_json_body(raw, max_bytes=MAX_BYTES, **options)


def nested_arrays(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def test_parse_json_body_returns_value() -> None:
    raw = b'{"layers": [{"id": "layer_main", "name": "M\xc3\xa4in", "n": -1.5e-3}]}'

    assert parse(raw) == {"layers": [{"id": "layer_main", "name": "Mäin", "n": -0.0015}]}


def test_parse_json_body_rejects_oversized_body() -> None:
    raw = b'{"a": "' + b"x" * 100 + b'"}'

    with pytest.raises(PayloadTooLarge) as caught:
        parse_json_body(raw, max_bytes=50)

    assert caught.value.details == {"limit": 50, "provided": len(raw)}


def test_parse_json_body_accepts_body_at_limit() -> None:
    raw = b'{"a": "' + b"x" * 100 + b'"}'

    assert parse_json_body(raw, max_bytes=len(raw)) == {"a": "x" * 100}


NON_FINITE_CASES = [
    pytest.param(b'{"a": [1, NaN]}', "a[1]", "NaN", id="nan-in-array"),
    pytest.param(b'{"a": {"b": Infinity}}', "a.b", "Infinity", id="infinity"),
    pytest.param(
        b'{"layers": [{"overlays": [{}, {"position": {"x": -Infinity}}]}]}',
        "layers[0].overlays[1].position.x",
        "-Infinity",
        id="negative-infinity-deep",
    ),
    pytest.param(b'{"a": 1e400}', "a", "1e400", id="float-overflow"),
    pytest.param(b'{"a": -2.5E+308}', "a", "-2.5E+308", id="negative-float-overflow"),
    pytest.param(b"NaN", None, "NaN", id="nan-at-top-level"),
    pytest.param(
        b'{"odd key": [0, 1' + b"0" * 400 + b".5]}",
        '["odd key"][1]',
        "the number",
        id="float-overflow-by-digits",
    ),
    pytest.param(
        b'{"a": 1' + b"0" * 300 + b"e99}",
        "a",
        "the number",
        id="float-overflow-by-digits-and-exponent",
    ),
]


@pytest.mark.parametrize(("raw", "field", "fragment"), NON_FINITE_CASES)
def test_parse_json_body_rejects_non_finite(raw: bytes, field: str | None, fragment: str) -> None:
    with pytest.raises(InvalidParameter) as caught:
        parse(raw)

    assert caught.value.field == field
    assert fragment in caught.value.message


def test_parse_json_body_non_finite_position() -> None:
    raw = b'{\n  "a": 1,\n  "b": NaN\n}'

    with pytest.raises(InvalidParameter) as caught:
        parse(raw)

    assert caught.value.details == {"line": 3, "column": 8}


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b'{"a": "NaN Infinity 1e999"}', id="words-in-string"),
        pytest.param(b'{"a": 1e-400}', id="underflow-to-zero"),
        pytest.param(b'{"a": 1.7e308}', id="largest-finite"),
        pytest.param(b'{"a": 1' + b"0" * 400 + b"}", id="long-integer"),
    ],
)
def test_parse_json_body_accepts_finite_lookalikes(raw: bytes) -> None:
    assert parse(raw) == json.loads(raw)


def test_parse_json_body_rejects_integer_over_digit_limit() -> None:
    with pytest.raises(InvalidParameter) as caught:
        parse(b"[" + b"9" * 5000 + b"]")

    assert "digits" in caught.value.message


def test_parse_json_body_accepts_depth_at_limit() -> None:
    assert parse(nested_arrays(5), max_depth=5) == [[[[[]]]]]


DEPTH_CASES = [
    pytest.param(nested_arrays(6), 5, "[0][0][0][0][0]", id="one-level-too-deep"),
    pytest.param(
        b'{"a": {"b": [1, {"c": {}}]}}',
        3,
        "a.b[1]",
        id="object-path",
    ),
    pytest.param(nested_arrays(33), 32, "[0]" * 32, id="default-limit"),
    pytest.param(nested_arrays(100_000), 4, "[0][0][0][0]", id="deeper-than-parser-recursion"),
    pytest.param(
        b'{"s": "]]]]]]", "t": [[[[{}]]]]}',
        4,
        "t[0][0][0]",
        id="brackets-in-strings-ignored",
    ),
    pytest.param(
        b'{"s": "\\"]]]]", "t": [[[[{}]]]]}',
        4,
        "t[0][0][0]",
        id="escaped-quote-before-brackets",
    ),
]


@pytest.mark.parametrize(("raw", "max_depth", "field"), DEPTH_CASES)
def test_parse_json_body_rejects_deep_nesting(raw: bytes, max_depth: int, field: str) -> None:
    with pytest.raises(InvalidParameter) as caught:
        parse(raw, max_depth=max_depth)

    assert caught.value.field == field
    assert caught.value.details["limit"] == max_depth


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b'{"s": "[[[[[[[[[[", "t": []}', id="openers-in-string"),
        pytest.param(b'{"s": "\\"[[[[[[[[[[\\\\", "t": []}', id="openers-after-escapes"),
    ],
)
def test_parse_json_body_ignores_brackets_in_strings(raw: bytes) -> None:
    assert parse(raw, max_depth=2) == json.loads(raw)


INVALID_JSON_CASES = [
    pytest.param(b'{"a": 1,}', 1, 9, id="trailing-comma"),
    pytest.param(b'{\n  "a": [1, 2\n}', 3, 1, id="unclosed-array"),
    pytest.param(b"{'a': 1}", 1, 2, id="single-quotes"),
    pytest.param(b'{"a": 1} x', 1, 10, id="trailing-data"),
]


@pytest.mark.parametrize(("raw", "line", "column"), INVALID_JSON_CASES)
def test_parse_json_body_names_line_and_column(raw: bytes, line: int, column: int) -> None:
    with pytest.raises(InvalidParameter) as caught:
        parse(raw)

    assert caught.value.details["line"] == line
    assert caught.value.details["column"] == column
    assert f"line {line}, column {column}" in caught.value.message


@pytest.mark.parametrize("raw", [b"", b"  \n "], ids=["empty", "whitespace"])
def test_parse_json_body_rejects_empty_body(raw: bytes) -> None:
    with pytest.raises(InvalidParameter, match="empty"):
        parse(raw)


def test_parse_json_body_rejects_invalid_utf8() -> None:
    with pytest.raises(InvalidParameter) as caught:
        parse(b'{"a": "\xff"}')

    assert caught.value.details == {"position": 7}


def test_parse_json_body_skips_byte_order_mark() -> None:
    assert parse(b'\xef\xbb\xbf{"a": 1}') == {"a": 1}


STRING_FAULT_CASES = [
    pytest.param(b'{"a": "x\\ud800"}', "a", "surrogate", id="lone-high-surrogate"),
    pytest.param(b'{"a": ["\\udc00y"]}', "a[0]", "surrogate", id="lone-low-surrogate"),
    pytest.param(b'{"a": "\\u0000"}', "a", "\\u0000", id="nul-value"),
    pytest.param(b'{"b": {"k\\u0000": 1}}', "b", "object key", id="nul-key"),
]


@pytest.mark.parametrize(("raw", "field", "fragment"), STRING_FAULT_CASES)
def test_parse_json_body_rejects_unstorable_strings(raw: bytes, field: str, fragment: str) -> None:
    with pytest.raises(InvalidParameter) as caught:
        parse(raw)

    assert caught.value.field == field
    assert fragment in caught.value.message


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b'{"a": "\\ud83d\\ude00"}', id="surrogate-pair"),
        pytest.param(b'{"a": "\\\\ud800 \\\\u0000"}', id="escaped-backslashes"),
    ],
)
def test_parse_json_body_accepts_storable_escapes(raw: bytes) -> None:
    assert parse(raw) == json.loads(raw)


def test_parse_json_body_require_object_rejects_array() -> None:
    with pytest.raises(InvalidParameter) as caught:
        parse(b"[1, 2]", require_object=True)

    assert caught.value.details == {"expected": "object", "provided": "array"}


def test_parse_json_body_require_object_accepts_object() -> None:
    assert parse(b'{"a": []}', require_object=True) == {"a": []}


def test_parse_json_body_accepts_array_by_default() -> None:
    assert parse(b"[1, 2]") == [1, 2]


def test_parse_json_body_rejects_depth_below_one() -> None:
    with pytest.raises(ValueError, match="max_depth"):
        parse(b"{}", max_depth=0)


def test_parse_json_body_large_track_body() -> None:
    frames = list(range(0, 60_000, 2))
    track = {"frames": frames, "boxes": [0.12345, 0.5, 0.75, 0.99999] * len(frames)}
    body = {"objects": {f"obj_{i}": {"track": track} for i in range(4)}, "note": '[[\\"{{'}
    raw = json.dumps(body).encode()

    assert parse_json_body(raw, max_bytes=len(raw)) == body


PATH_CASES = [
    pytest.param([], "", id="root"),
    pytest.param(["layers", 0, "name"], "layers[0].name", id="index"),
    pytest.param(
        ["layers", ItemId("layer_main"), "overlays", ItemId("cta"), "position", "x"],
        "layers[id=layer_main].overlays[id=cta].position.x",
        id="ids",
    ),
    pytest.param(["objects", "obj 1", "$patch"], 'objects["obj 1"].$patch', id="odd-key"),
    pytest.param(["layers", ItemId("a b]"), "name"], 'layers[id="a b]"].name', id="odd-id"),
    pytest.param([3, "x"], "[3].x", id="leading-index"),
]


@pytest.mark.parametrize(("steps", "expected"), PATH_CASES)
def test_format_json_path_cases(steps: list, expected: str) -> None:
    assert format_json_path(steps) == expected
