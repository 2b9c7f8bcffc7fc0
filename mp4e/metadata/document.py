"""The metadata document (schema 2.0): its shape, its validation and its read-only parts.

Documents are plain parsed JSON, and the pydantic models below only check them. Validation
never rewrites a document, so unknown keys and the values a client sent are kept as they were.

Error paths name array items by id where the item has a unique string id, and by index
otherwise: `layers[id=layer_main].overlays[id=cta].position.x`, `scenes[2].id`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Final, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import ErrorDetails

from mp4e.errors import InvalidParameter, ReadOnlyField
from mp4e.metadata.jsonlimits import (
    ItemId,
    PathStep,
    format_json_path,
    json_type_name,
    summarize_value,
)
from mp4e.metadata.merge import MISSING, json_equal, merge_patch

SCHEMA_VERSION: Final = "2.0"
MAIN_LAYER_ID: Final = "layer_main"

VARIABLE_TYPES: Final = ("number", "string", "boolean", "timer", "list", "object")

# Object fields that come from processing or from the track, for every source.
TRACK_DERIVED_FIELDS: Final = ("track", "firstFrame", "lastFrame", "frameCount", "confidence")
# Object fields no patch may change. `label` is writable for manual objects only.
READ_ONLY_OBJECT_FIELDS: Final = ("id", "kind", "source", "label", *TRACK_DERIVED_FIELDS)

NonEmptyStr = Annotated[str, Field(min_length=1)]
Normalised = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]
Seconds = Annotated[float, Field(ge=0.0, allow_inf_nan=False)]
FrameIndex = Annotated[int, Field(ge=0)]


class _Record(BaseModel):
    """Checked JSON object: known fields typed without coercion, unknown fields allowed."""

    model_config = ConfigDict(extra="allow", strict=True)


class Position(_Record):
    x: Normalised
    y: Normalised


class Size(_Record):
    width: Normalised
    height: Normalised


class Plugin(_Record):
    type: NonEmptyStr
    config: dict[str, Any] = Field(default_factory=dict)


class Overlay(_Record):
    id: NonEmptyStr
    name: str
    position: Position
    size: Size | None = None
    plugin: Plugin
    object_id: NonEmptyStr | None = Field(default=None, alias="objectId")
    visible: bool | None = None
    start: Seconds | None = None
    end: Seconds | None = None
    z_index: int | None = Field(default=None, alias="zIndex")


class Layer(_Record):
    id: NonEmptyStr
    name: str
    overlays: list[Overlay] = Field(default_factory=list)


class Variable(_Record):
    id: NonEmptyStr
    type: Literal["number", "string", "boolean", "timer", "list", "object"]
    value: Any


class Rule(_Record):
    id: NonEmptyStr
    trigger: dict[str, Any]
    conditions: list[dict[str, Any]] = Field(default_factory=list)
    actions: list[dict[str, Any]] = Field(default_factory=list)


class Scene(_Record):
    id: NonEmptyStr
    name: str
    start: Seconds
    end: Seconds


class Group(_Record):
    id: NonEmptyStr
    name: str
    object_ids: list[NonEmptyStr] = Field(default_factory=list, alias="objectIds")
    data_schema: dict[str, Any] = Field(default_factory=dict, alias="dataSchema")


class TrackedObject(_Record):
    id: NonEmptyStr
    label: str | None = None
    user_label: str | None = Field(default=None, alias="userLabel")
    name: str | None = None
    confidence: Normalised | None = None
    first_frame: FrameIndex | None = Field(default=None, alias="firstFrame")
    last_frame: FrameIndex | None = Field(default=None, alias="lastFrame")
    frame_count: FrameIndex | None = Field(default=None, alias="frameCount")
    custom_data: dict[str, Any] = Field(default_factory=dict, alias="customData")
    kind: Literal["box", "surface"]
    source: Literal["ai", "surface", "manual"]
    track: dict[str, Any] | None = None


class VideoDetails(_Record):
    total_frames: FrameIndex = Field(alias="totalFrames")
    fps: Annotated[float, Field(gt=0.0, allow_inf_nan=False)]
    width: Annotated[int, Field(gt=0)]
    height: Annotated[int, Field(gt=0)]
    duration: Seconds


class Document(_Record):
    schema_version: Literal["2.0"] = Field(alias="schemaVersion")
    video_details: VideoDetails = Field(alias="videoDetails")
    objects: dict[str, TrackedObject]
    groups: list[Group]
    layers: list[Layer]
    variables: list[Variable]
    rules: list[Rule]
    scenes: list[Scene]
    settings: dict[str, Any]


def new_document(video_details: dict[str, Any]) -> dict[str, Any]:
    """Return the version-1 document of a video: no objects and one empty layer, "Main"."""
    return {
        "schemaVersion": SCHEMA_VERSION,
        "videoDetails": dict(video_details),
        "objects": {},
        "groups": [],
        "layers": [{"id": MAIN_LAYER_ID, "name": "Main", "overlays": []}],
        "variables": [],
        "rules": [],
        "scenes": [],
        "settings": {},
    }


def validate_document(doc: dict[str, Any], *, previous: dict[str, Any] | None = None) -> None:
    """Raise InvalidParameter unless `doc` is a valid schema 2.0 document.

    The checks cover the types and ranges of known fields and the uniqueness of ids within
    each array. Each object's key must equal its `id`, ai objects must be boxes and surface
    objects surfaces, and tracks must be well formed. No `start` may be after its `end`, and
    each variable's value must suit its type. The error's `field` is the path of the first
    fault, and `details` contains `expected` and `provided`.

    `previous` is an already valid document that `doc` was merged from. Tracks that `doc`
    shares with it by identity, as `merge_patch` leaves them, are not checked again.

    Limitation: references are not checked. An overlay's `objectId` or a group's `objectIds`
    may name an object that does not exist, e.g. after the object was deleted.
    """
    if not isinstance(doc, dict):
        raise _invalid([], "an object", doc)
    try:
        Document.model_validate(doc)
    except ValidationError as exc:
        raise _invalid_from_pydantic(doc, exc.errors()[0]) from None

    _check_unique_ids(doc)
    _check_objects(doc["objects"], _tracks_by_id(previous))
    _check_time_ranges(doc)
    _check_variable_values(doc["variables"])


def check_read_only(current: dict[str, Any], patch: dict[str, Any]) -> None:
    """Raise ReadOnlyField when `patch` would change a part of `current` clients cannot change.

    Read-only: `schemaVersion`, everything in `videoDetails`, and in each object the fields
    in READ_ONLY_OBJECT_FIELDS (`label` stays writable for objects with source "manual").
    A patch may repeat a read-only value unchanged, so a client can send back a document it
    has read. A patch may delete whole objects, and may add objects with source "manual"
    that carry no track-derived fields. Other faults, such as wrong types, are left to
    `validate_document` on the merged result.
    """
    if not isinstance(patch, dict):
        return
    if "schemaVersion" in patch:
        _check_unchanged(current, patch, "schemaVersion", "The server sets the schema version.")
    if "videoDetails" in patch:
        _check_unchanged(current, patch, "videoDetails", "It is measured from the video file.")

    objects_patch = patch.get("objects")
    if not isinstance(objects_patch, dict):
        return
    current_objects = current.get("objects")
    if not isinstance(current_objects, dict):
        current_objects = {}
    for object_id, object_patch in objects_patch.items():
        if object_patch is None:
            continue
        if object_id in current_objects:
            _check_object_update(current_objects[object_id], object_id, object_patch)
        else:
            _check_object_creation(object_id, object_patch)


def _check_unchanged(current: dict[str, Any], patch: dict[str, Any], key: str, reason: str) -> None:
    old = current.get(key, MISSING)
    new = merge_patch({key: old} if old is not MISSING else {}, {key: patch[key]}).get(key, MISSING)
    if not json_equal(old, new):
        _raise_read_only([key], old, new, reason)


_READ_ONLY_REASONS: Final = {
    "id": "An object's id, kind and source are fixed when it is created.",
    "kind": "An object's id, kind and source are fixed when it is created.",
    "source": "An object's id, kind and source are fixed when it is created.",
    "label": "The detector sets the label, so set userLabel instead.",
    **{field: "Tracking produces it." for field in TRACK_DERIVED_FIELDS},
}


def _check_object_update(current_object: Any, object_id: str, object_patch: Any) -> None:
    if not isinstance(current_object, dict) or not isinstance(object_patch, dict):
        return
    merged = merge_patch(
        {"objects": {object_id: current_object}}, {"objects": {object_id: object_patch}}
    )
    new_object = merged["objects"][object_id]
    for field in READ_ONLY_OBJECT_FIELDS:
        if field == "label" and current_object.get("source") == "manual":
            continue
        old = current_object.get(field, MISSING)
        new = new_object.get(field, MISSING)
        if not json_equal(old, new):
            _raise_read_only(["objects", object_id, field], old, new, _READ_ONLY_REASONS[field])


def _check_object_creation(object_id: str, object_patch: Any) -> None:
    if not isinstance(object_patch, dict):
        return
    source = object_patch.get("source", MISSING)
    if source != "manual":
        field = format_json_path(["objects", object_id, "source"])
        raise ReadOnlyField(
            f'{field} must be "manual" for an object added by a patch, not '
            f"{_describe_json(source)}. Processing creates ai objects and the surface "
            "endpoint creates surface objects.",
            field=field,
            details={"expected": "manual", "provided": _summarize(source)},
        )
    for field_name in TRACK_DERIVED_FIELDS:
        if object_patch.get(field_name) is not None:
            reason = "A patch cannot give an object a track or values derived from one."
            _raise_read_only(
                ["objects", object_id, field_name], MISSING, object_patch[field_name], reason
            )


def _raise_read_only(path: list[PathStep], old: Any, new: Any, reason: str) -> None:
    steps, old, new = _first_difference(old, new, path)
    field = format_json_path(steps)
    raise ReadOnlyField(
        f"{field} is read-only and cannot be changed. {reason}",
        field=field,
        details={"expected": _summarize(old), "provided": _summarize(new)},
    )


def _first_difference(old: Any, new: Any, path: list[PathStep]) -> tuple[list[PathStep], Any, Any]:
    """Descend into two records to the first key whose values differ."""
    if not (isinstance(old, dict) and isinstance(new, dict)):
        return path, old, new
    for key in [*new, *(key for key in old if key not in new)]:
        old_value = old.get(key, MISSING)
        new_value = new.get(key, MISSING)
        if not json_equal(old_value, new_value):
            return _first_difference(old_value, new_value, [*path, key])
    return path, old, new


def _summarize(value: Any) -> Any:
    """Return a value for error details, with an absent value as null."""
    return None if value is MISSING else summarize_value(value)


def _describe_json(value: Any) -> str:
    if value is MISSING:
        return "missing"
    if isinstance(value, dict | list):
        return f"an {json_type_name(value)}"
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 80 else text[:77] + "..."


def _invalid(path: list[PathStep], expected: str, provided: Any) -> InvalidParameter:
    return _invalid_field(format_json_path(path), expected, provided)


def _invalid_field(field: str, expected: str, provided: Any) -> InvalidParameter:
    subject = field or "The document"
    return InvalidParameter(
        f"{subject} must be {expected}, not {_describe_json(provided)}.",
        field=field or None,
        details={"expected": expected, "provided": _summarize(provided)},
    )


_EXPECTED_BY_ERROR_TYPE: Final = {
    "string_type": "a string",
    "string_too_short": "a non-empty string",
    "int_type": "an integer",
    "float_type": "a number",
    "finite_number": "a finite number",
    "bool_type": "a boolean",
    "dict_type": "an object",
    "model_type": "an object",
    "model_attributes_type": "an object",
    "list_type": "an array",
}
_BOUNDS: Final = {
    "greater_than_equal": ("ge", "at least"),
    "greater_than": ("gt", "greater than"),
    "less_than_equal": ("le", "at most"),
    "less_than": ("lt", "less than"),
}


def _invalid_from_pydantic(doc: dict[str, Any], error: ErrorDetails) -> InvalidParameter:
    path = _path_for_location(doc, error["loc"])
    if error["type"] == "missing":
        field = format_json_path(path)
        return InvalidParameter(
            f"{field} is required.", field=field, details={"expected": "a value"}
        )

    context = error.get("ctx") or {}
    error_type = error["type"]
    if error_type in _BOUNDS:
        name, words = _BOUNDS[error_type]
        expected = f"{words} {context[name]:g}"
    elif error_type == "literal_error":
        expected = str(context["expected"]).replace("'", '"')
    else:
        expected = _EXPECTED_BY_ERROR_TYPE.get(error_type, error["msg"])
    return _invalid(path, expected, error["input"])


def _path_for_location(doc: Any, location: tuple[int | str, ...]) -> list[PathStep]:
    """Turn a pydantic error location into path steps, naming array items by id."""
    path: list[PathStep] = []
    node = doc
    for step in location:
        if isinstance(step, int) and isinstance(node, list) and 0 <= step < len(node):
            path.append(_item_step(node, step))
            node = node[step]
        elif isinstance(node, dict):
            path.append(step)
            node = node.get(step)
        else:
            path.append(step)
            node = None
    return path


def _item_step(items: list[Any], index: int) -> PathStep:
    item = items[index]
    item_id = item.get("id") if isinstance(item, dict) else None
    if not isinstance(item_id, str) or not item_id:
        return index
    same_id = sum(1 for other in items if isinstance(other, dict) and other.get("id") == item_id)
    return ItemId(item_id) if same_id == 1 else index


def _check_unique_ids(doc: dict[str, Any]) -> None:
    for key in ("groups", "layers", "variables", "rules", "scenes"):
        _check_unique_item_ids(doc[key], [key])
    for layer in doc["layers"]:
        overlays_path: list[PathStep] = ["layers", ItemId(layer["id"]), "overlays"]
        _check_unique_item_ids(layer.get("overlays", []), overlays_path)


def _check_unique_item_ids(items: list[dict[str, Any]], path: list[PathStep]) -> None:
    first_index: dict[str, int] = {}
    for index, item in enumerate(items):
        item_id = item["id"]
        if item_id in first_index:
            field = format_json_path([*path, index, "id"])
            earlier = format_json_path([*path, first_index[item_id]])
            raise InvalidParameter(
                f"{field} repeats the id {_describe_json(item_id)} of {earlier}. Ids must be "
                "unique within an array.",
                field=field,
                details={"expected": "a unique id", "provided": item_id},
            )
        first_index[item_id] = index


_SOURCE_KINDS: Final = {"ai": "box", "surface": "surface"}


def _tracks_by_id(doc: dict[str, Any] | None) -> dict[str, tuple[Any, Any]]:
    """Map each object id of a valid document to its track and kind."""
    objects = doc.get("objects") if isinstance(doc, dict) else None
    if not isinstance(objects, dict):
        return {}
    return {
        key: (obj.get("track"), obj.get("kind"))
        for key, obj in objects.items()
        if isinstance(obj, dict)
    }


def _check_objects(
    objects: dict[str, dict[str, Any]], checked_tracks: dict[str, tuple[Any, Any]]
) -> None:
    for key, obj in objects.items():
        if obj["id"] != key:
            raise _invalid(
                ["objects", key, "id"], f"the object's key {_describe_json(key)}", obj["id"]
            )
        required_kind = _SOURCE_KINDS.get(obj["source"])
        if required_kind is not None and obj["kind"] != required_kind:
            expected = f'"{required_kind}" for source "{obj["source"]}"'
            raise _invalid(["objects", key, "kind"], expected, obj["kind"])
        first, last = obj.get("firstFrame"), obj.get("lastFrame")
        if first is not None and last is not None and first > last:
            raise _invalid(["objects", key, "lastFrame"], f"at least firstFrame ({first})", last)
        track = obj.get("track")
        checked_track, checked_kind = checked_tracks.get(key, (None, None))
        if track is not None and (track is not checked_track or obj["kind"] != checked_kind):
            validate_track(track, obj["kind"], path=format_json_path(["objects", key, "track"]))


def _check_time_ranges(doc: dict[str, Any]) -> None:
    for scene in doc["scenes"]:
        _check_start_before_end(scene, ["scenes", ItemId(scene["id"])])
    for layer in doc["layers"]:
        for overlay in layer.get("overlays", []):
            path: list[PathStep] = [
                "layers",
                ItemId(layer["id"]),
                "overlays",
                ItemId(overlay["id"]),
            ]
            _check_start_before_end(overlay, path)


def _check_start_before_end(item: dict[str, Any], path: list[PathStep]) -> None:
    start, end = item.get("start"), item.get("end")
    if start is not None and end is not None and start > end:
        raise _invalid([*path, "end"], f"at least start ({start:g})", end)


def _check_variable_values(variables: list[dict[str, Any]]) -> None:
    for variable in variables:
        value = variable["value"]
        expected = _VARIABLE_VALUE_KINDS[variable["type"]]
        if not expected[1](value):
            raise _invalid(["variables", ItemId(variable["id"]), "value"], expected[0], value)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


_VARIABLE_VALUE_KINDS: Final = {
    "number": ("a number", _is_number),
    "string": ("a string", lambda value: isinstance(value, str)),
    "boolean": ("a boolean", lambda value: isinstance(value, bool)),
    "timer": ("a number of seconds, at least 0", lambda value: _is_number(value) and value >= 0),
    "list": ("an array", lambda value: isinstance(value, list)),
    "object": ("an object", lambda value: isinstance(value, dict)),
}


@dataclass(frozen=True)
class _TrackArray:
    """One parallel array of a track: `per_frame` values for each entry of `frames`."""

    key: str
    per_frame: int
    required: bool
    integer: bool
    low: float
    high: float


_FRAMES: Final = _TrackArray("frames", 1, required=True, integer=True, low=0, high=math.inf)
_TIMES: Final = _TrackArray("times", 1, required=True, integer=False, low=0, high=math.inf)
# Corners may lie up to one frame size outside the frame, because a tracked surface can be
# partly off screen. Boxes are clipped to the frame.
CORNER_MIN: Final = -1.0
CORNER_MAX: Final = 2.0
_TRACK_LAYOUTS: Final = {
    "box": (
        _FRAMES,
        _TIMES,
        _TrackArray("boxes", 4, required=True, integer=False, low=0, high=1),
        _TrackArray("scores", 1, required=False, integer=False, low=0, high=1),
    ),
    "surface": (
        _FRAMES,
        _TIMES,
        _TrackArray("corners", 8, required=True, integer=False, low=CORNER_MIN, high=CORNER_MAX),
        _TrackArray("visible", 1, required=True, integer=True, low=0, high=1),
    ),
}
_INTEGER_TYPES: Final = frozenset({int})
_NUMBER_TYPES: Final = frozenset({int, float})


def validate_track(track: Any, kind: str, *, path: str = "track") -> None:
    """Raise InvalidParameter unless `track` is a well-formed track for objects of `kind`.

    Box tracks contain `frames`, `times`, `boxes` and optionally `scores`. Surface tracks
    contain `frames`, `times`, `corners` and `visible`. The arrays are parallel, frames strictly
    increase, times never decrease, and every value is finite and in range. `path` prefixes
    the `field` of the error, e.g. "objects.obj_001.track". Unknown keys are allowed.

    Raises:
        ValueError: `kind` is neither "box" nor "surface".
    """
    if kind not in _TRACK_LAYOUTS:
        raise ValueError(f"kind must be 'box' or 'surface', not {kind!r}")
    if not isinstance(track, dict):
        raise _invalid_field(path, "an object", track)

    arrays: dict[str, np.ndarray] = {}
    for spec in _TRACK_LAYOUTS[kind]:
        field = f"{path}.{spec.key}"
        values = track.get(spec.key)
        if values is None:
            if spec.required:
                raise InvalidParameter(
                    f"{field} is required.", field=field, details={"expected": "an array"}
                )
            continue
        arrays[spec.key] = _load_track_array(values, spec, field)
        frame_count = len(arrays["frames"])
        if len(values) != frame_count * spec.per_frame:
            expected = frame_count * spec.per_frame
            raise InvalidParameter(
                f"{field} has {len(values)} values, but {frame_count} frames need {expected} "
                f"({spec.per_frame} per frame).",
                field=field,
                details={"expected": expected, "provided": len(values)},
            )

    _check_track_order(arrays, path)


def _load_track_array(values: Any, spec: _TrackArray, field: str) -> np.ndarray:
    if not isinstance(values, list):
        raise _invalid_field(field, "an array", values)
    allowed = _INTEGER_TYPES if spec.integer else _NUMBER_TYPES
    if not set(map(type, values)) <= allowed:
        index = next(i for i, value in enumerate(values) if type(value) not in allowed)
        raise _invalid_field(f"{field}[{index}]", _range_words(spec), values[index])

    try:
        array = np.array(values, dtype=np.int64 if spec.integer else np.float64)
    except OverflowError:
        raise _invalid_field(
            field, f"an array of {_range_words(spec)}", "an out-of-range number"
        ) from None
    out_of_range = ~np.isfinite(array) | (array < spec.low) | (array > spec.high)
    if out_of_range.any():
        index = int(np.argmax(out_of_range))
        raise _invalid_field(f"{field}[{index}]", _range_words(spec), values[index])
    return array


def _range_words(spec: _TrackArray) -> str:
    kind = "an integer" if spec.integer else "a number"
    if spec.high == math.inf:
        return f"{kind} of at least {spec.low:g}"
    return f"{kind} from {spec.low:g} to {spec.high:g}"


def _check_track_order(arrays: dict[str, np.ndarray], path: str) -> None:
    frames = arrays["frames"]
    not_increasing = np.flatnonzero(np.diff(frames) <= 0)
    if not_increasing.size:
        index = int(not_increasing[0]) + 1
        expected = f"greater than the previous frame, {frames[index - 1]}"
        raise _invalid_field(f"{path}.frames[{index}]", expected, int(frames[index]))

    times = arrays["times"]
    decreasing = np.flatnonzero(np.diff(times) < 0)
    if decreasing.size:
        index = int(decreasing[0]) + 1
        expected = f"at least the previous time, {times[index - 1]:g}"
        raise _invalid_field(f"{path}.times[{index}]", expected, float(times[index]))

    if "boxes" in arrays:
        boxes = arrays["boxes"].reshape(-1, 4)
        inverted = np.flatnonzero((boxes[:, 0] > boxes[:, 2]) | (boxes[:, 1] > boxes[:, 3]))
        if inverted.size:
            index = int(inverted[0])
            field = f"{path}.boxes[{4 * index}]"
            raise InvalidParameter(
                f"{field} starts box {index}, whose corners are swapped. Boxes are "
                "[x1, y1, x2, y2] with x1 <= x2 and y1 <= y2.",
                field=field,
                details={"expected": "x1 <= x2 and y1 <= y2", "provided": boxes[index].tolist()},
            )


def summarize_track(track: dict[str, Any], kind: str) -> dict[str, Any]:
    """Compute an object's summary fields from a valid track.

    Returns `firstFrame`, `lastFrame` and `frameCount` over the frames present (box tracks)
    or the frames where the surface is visible (surface tracks), with null first and last
    frames when there are none. Box tracks with scores also get `confidence`, the mean
    score rounded to 4 decimals.
    """
    frames = np.asarray(track["frames"], dtype=np.int64)
    if kind == "surface":
        frames = frames[np.asarray(track["visible"], dtype=np.int64) == 1]

    summary: dict[str, Any] = {
        "firstFrame": int(frames[0]) if frames.size else None,
        "lastFrame": int(frames[-1]) if frames.size else None,
        "frameCount": int(frames.size),
    }
    scores = track.get("scores")
    if kind == "box" and scores:
        summary["confidence"] = round(float(np.mean(scores)), 4)
    return summary


def build_box_track(
    frames: Sequence[int] | np.ndarray,
    times_s: Sequence[float] | np.ndarray,
    boxes_xyxy: Sequence[Sequence[float]] | np.ndarray,
    scores: Sequence[float] | np.ndarray | None = None,
) -> dict[str, Any]:
    """Pack per-frame boxes into a compact box track.

    `boxes_xyxy` has one normalised [x1, y1, x2, y2] per frame; boxes are clipped to the
    frame. Times are rounded to 6 decimals (microseconds), boxes to 5, scores to 4.

    Raises:
        InvalidParameter: the packed track is not valid, e.g. frames out of order.
    """
    boxes = np.clip(np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4), 0.0, 1.0)
    track: dict[str, Any] = {
        "frames": np.asarray(frames, dtype=np.int64).reshape(-1).tolist(),
        "times": _rounded(times_s, 6),
        "boxes": _rounded(boxes, 5),
    }
    if scores is not None:
        track["scores"] = _rounded(scores, 4)
    validate_track(track, "box")
    return track


def build_surface_track(
    frames: Sequence[int] | np.ndarray,
    times_s: Sequence[float] | np.ndarray,
    corners: Sequence[Sequence[Any]] | np.ndarray,
    visible: Sequence[bool | int] | np.ndarray,
) -> dict[str, Any]:
    """Pack per-frame surface corners into a compact surface track.

    `corners` has four normalised (x, y) corners per frame, as an (N, 4, 2) or (N, 8)
    array. Corners are clipped to CORNER_MIN..CORNER_MAX and rounded to 5 decimals, times
    to 6 decimals.

    Raises:
        InvalidParameter: the packed track is not valid, e.g. frames out of order.
    """
    corners_array = np.asarray(corners, dtype=np.float64).reshape(-1, 8)
    track: dict[str, Any] = {
        "frames": np.asarray(frames, dtype=np.int64).reshape(-1).tolist(),
        "times": _rounded(times_s, 6),
        "corners": _rounded(np.clip(corners_array, CORNER_MIN, CORNER_MAX), 5),
        "visible": np.asarray(visible, dtype=bool).reshape(-1).astype(np.int64).tolist(),
    }
    validate_track(track, "surface")
    return track


def _rounded(values: Any, decimals: int) -> list[float]:
    # Adding 0.0 turns -0.0 into 0.0, so the JSON never shows "-0.0".
    rounded = np.round(np.asarray(values, dtype=np.float64).reshape(-1), decimals) + 0.0
    return rounded.tolist()
