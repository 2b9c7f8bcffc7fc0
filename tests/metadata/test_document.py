import copy
from collections.abc import Callable
from typing import Any

import pytest

from mp4e.errors import InvalidParameter, ReadOnlyField
from mp4e.metadata.document import (
    build_box_track,
    build_surface_track,
    check_read_only,
    new_document,
    summarize_track,
    validate_document,
    validate_track,
)
from mp4e.metadata.merge import merge_patch

VIDEO_DETAILS = {"totalFrames": 300, "fps": 30, "width": 320, "height": 240, "duration": 10.0}


def box_track() -> dict[str, Any]:
    return {
        "frames": [0, 5, 10],
        "times": [0.0, 0.166667, 0.333333],
        "boxes": [0.1, 0.1, 0.3, 0.4, 0.12, 0.1, 0.32, 0.4, 0.14, 0.1, 0.34, 0.4],
        "scores": [0.9, 0.8, 0.7],
    }


def surface_track() -> dict[str, Any]:
    corners = [0.2, 0.3, 0.8, 0.3, 0.8, 0.7, 0.2, 0.7]
    return {
        "frames": [100, 101, 102],
        "times": [3.333333, 3.366667, 3.4],
        "corners": corners * 3,
        "visible": [1, 0, 1],
    }


def full_document() -> dict[str, Any]:
    doc = new_document(VIDEO_DETAILS)
    doc["objects"] = {
        "obj_001": {
            "id": "obj_001",
            "label": "person",
            "userLabel": "Host",
            "confidence": 0.8,
            "firstFrame": 0,
            "lastFrame": 10,
            "frameCount": 3,
            "customData": {"role": "host"},
            "kind": "box",
            "source": "ai",
            "track": box_track(),
        },
        "surface_001": {
            "id": "surface_001",
            "label": "surface",
            "name": "TV Screen",
            "userLabel": None,
            "firstFrame": 100,
            "lastFrame": 102,
            "frameCount": 2,
            "kind": "surface",
            "source": "surface",
            "track": surface_track(),
        },
        "manual_001": {"id": "manual_001", "label": "logo", "kind": "box", "source": "manual"},
    }
    doc["groups"] = [
        {"id": "products", "name": "Products", "objectIds": ["obj_001"], "dataSchema": {}}
    ]
    doc["layers"][0]["overlays"] = [
        {
            "id": "cta",
            "name": "Buy",
            "position": {"x": 0.9, "y": 0.1},
            "size": {"width": 0.1, "height": 0.05},
            "plugin": {"type": "core:button", "config": {"text": "Shop Now"}},
            "objectId": "obj_001",
            "visible": True,
            "start": 1.0,
            "end": 4.5,
            "zIndex": 2,
            "futureField": {"kept": [1, 2]},
        }
    ]
    doc["variables"] = [
        {"id": "score", "type": "number", "value": 0},
        {"id": "clock", "type": "timer", "value": 0},
    ]
    doc["rules"] = [
        {
            "id": "on_click",
            "trigger": {"type": "click", "overlayId": "cta"},
            "conditions": [],
            "actions": [{"type": "increment", "variableId": "score"}],
        }
    ]
    doc["scenes"] = [{"id": "intro", "name": "Intro", "start": 0, "end": 5.5}]
    doc["settings"] = {"restrictions": {"seek": False}}
    doc["playerExtension"] = {"unknown": True}
    return doc


def test_new_document_shape() -> None:
    doc = new_document(VIDEO_DETAILS)

    assert doc == {
        "schemaVersion": "2.0",
        "videoDetails": VIDEO_DETAILS,
        "objects": {},
        "groups": [],
        "layers": [{"id": "layer_main", "name": "Main", "overlays": []}],
        "variables": [],
        "rules": [],
        "scenes": [],
        "settings": {},
    }


def test_new_document_is_valid() -> None:
    validate_document(new_document(VIDEO_DETAILS))


def test_new_document_copies_video_details() -> None:
    details = dict(VIDEO_DETAILS)

    doc = new_document(details)
    details["fps"] = 1

    assert doc["videoDetails"]["fps"] == 30


def test_validate_document_accepts_full_document() -> None:
    validate_document(full_document())


def test_validate_document_keeps_document_unchanged() -> None:
    doc = full_document()
    before = copy.deepcopy(doc)

    validate_document(doc)

    assert doc == before


def set_at(path: list[Any], value: Any) -> Callable[[dict], None]:
    def change(doc: dict) -> None:
        node = doc
        for step in path[:-1]:
            node = node[step]
        node[path[-1]] = value

    return change


def delete_at(path: list[Any]) -> Callable[[dict], None]:
    def change(doc: dict) -> None:
        node = doc
        for step in path[:-1]:
            node = node[step]
        del node[path[-1]]

    return change


def append_at(path: list[Any], value: Any) -> Callable[[dict], None]:
    def change(doc: dict) -> None:
        node = doc
        for step in path:
            node = node[step]
        node.append(value)

    return change


CTA = ["layers", 0, "overlays", 0]

INVALID_CASES = [
    pytest.param(
        set_at([*CTA, "position", "x"], 1.5),
        "layers[id=layer_main].overlays[id=cta].position.x",
        "at most 1",
        id="position-above-range",
    ),
    pytest.param(
        set_at([*CTA, "position", "y"], -0.1),
        "layers[id=layer_main].overlays[id=cta].position.y",
        "at least 0",
        id="position-below-range",
    ),
    pytest.param(
        set_at([*CTA, "position", "x"], "0.5"),
        "layers[id=layer_main].overlays[id=cta].position.x",
        "a number",
        id="number-as-string",
    ),
    pytest.param(
        set_at([*CTA, "visible"], 1),
        "layers[id=layer_main].overlays[id=cta].visible",
        "a boolean",
        id="visible-not-boolean",
    ),
    pytest.param(
        set_at([*CTA, "zIndex"], True),
        "layers[id=layer_main].overlays[id=cta].zIndex",
        "an integer",
        id="z-index-boolean",
    ),
    pytest.param(
        delete_at([*CTA, "plugin"]),
        "layers[id=layer_main].overlays[id=cta].plugin",
        "a value",
        id="overlay-plugin-missing",
    ),
    pytest.param(
        set_at([*CTA, "plugin", "type"], ""),
        "layers[id=layer_main].overlays[id=cta].plugin.type",
        "a non-empty string",
        id="plugin-type-empty",
    ),
    pytest.param(
        set_at([*CTA, "size"], {"width": 2, "height": 0.1}),
        "layers[id=layer_main].overlays[id=cta].size.width",
        "at most 1",
        id="size-above-range",
    ),
    pytest.param(
        set_at([*CTA, "end"], 0.5),
        "layers[id=layer_main].overlays[id=cta].end",
        "at least start (1)",
        id="overlay-end-before-start",
    ),
    pytest.param(
        set_at([*CTA, "id"], ""),
        "layers[id=layer_main].overlays[0].id",
        "a non-empty string",
        id="overlay-id-empty",
    ),
    pytest.param(
        append_at(["layers"], {"id": "layer_main", "name": "Twin", "overlays": []}),
        "layers[1].id",
        "a unique id",
        id="duplicate-layer-id",
    ),
    pytest.param(
        append_at([*CTA[:-1]], {**full_document()["layers"][0]["overlays"][0]}),
        "layers[id=layer_main].overlays[1].id",
        "a unique id",
        id="duplicate-overlay-id",
    ),
    pytest.param(
        append_at(["variables"], {"id": "score", "type": "string", "value": "x"}),
        "variables[2].id",
        "a unique id",
        id="duplicate-variable-id",
    ),
    pytest.param(
        append_at(["scenes"], {"id": "intro", "name": "Again", "start": 0, "end": 1}),
        "scenes[1].id",
        "a unique id",
        id="duplicate-scene-id",
    ),
    pytest.param(
        set_at(["layers"], None),
        "layers",
        "an array",
        id="layers-null",
    ),
    pytest.param(
        delete_at(["settings"]),
        "settings",
        "a value",
        id="settings-missing",
    ),
    pytest.param(
        set_at(["schemaVersion"], "1.0"),
        "schemaVersion",
        '"2.0"',
        id="schema-version-wrong",
    ),
    pytest.param(
        set_at(["videoDetails", "fps"], 0),
        "videoDetails.fps",
        "greater than 0",
        id="fps-zero",
    ),
    pytest.param(
        set_at(["objects", "obj_001", "kind"], "blob"),
        "objects.obj_001.kind",
        '"box" or "surface"',
        id="object-kind-unknown",
    ),
    pytest.param(
        set_at(["objects", "obj_001", "kind"], "surface"),
        "objects.obj_001.kind",
        '"box" for source "ai"',
        id="ai-object-not-box",
    ),
    pytest.param(
        set_at(["objects", "obj_001", "confidence"], 1.2),
        "objects.obj_001.confidence",
        "at most 1",
        id="confidence-above-range",
    ),
    pytest.param(
        set_at(["objects", "obj_001", "customData"], [1]),
        "objects.obj_001.customData",
        "an object",
        id="custom-data-not-record",
    ),
    pytest.param(
        set_at(["objects", "obj_001", "id"], "obj_999"),
        "objects.obj_001.id",
        'the object\'s key "obj_001"',
        id="object-id-not-key",
    ),
    pytest.param(
        set_at(["objects", "obj_001", "firstFrame"], 11),
        "objects.obj_001.lastFrame",
        "at least firstFrame (11)",
        id="first-frame-after-last",
    ),
    pytest.param(
        set_at(["objects", "obj_001", "track", "scores", 1], 2.0),
        "objects.obj_001.track.scores[1]",
        "a number from 0 to 1",
        id="track-checked-in-document",
    ),
    pytest.param(
        set_at(["variables", 0, "value"], "ten"),
        "variables[id=score].value",
        "a number",
        id="number-variable-value",
    ),
    pytest.param(
        set_at(["variables", 1, "value"], -1),
        "variables[id=clock].value",
        "a number of seconds, at least 0",
        id="timer-variable-negative",
    ),
    pytest.param(
        set_at(["variables", 0, "type"], "color"),
        "variables[id=score].type",
        '"number", "string", "boolean", "timer", "list" or "object"',
        id="variable-type-unknown",
    ),
    pytest.param(
        set_at(["rules", 0, "trigger"], "click"),
        "rules[id=on_click].trigger",
        "an object",
        id="rule-trigger-not-record",
    ),
    pytest.param(
        set_at(["scenes", 0, "end"], -1),
        "scenes[id=intro].end",
        "at least 0",
        id="scene-end-negative",
    ),
    pytest.param(
        set_at(["scenes", 0, "start"], 6),
        "scenes[id=intro].end",
        "at least start (6)",
        id="scene-start-after-end",
    ),
    pytest.param(
        set_at(["groups", 0, "objectIds"], ["obj_001", 2]),
        "groups[id=products].objectIds[1]",
        "a string",
        id="group-object-id-not-string",
    ),
]


@pytest.mark.parametrize(("change", "field", "expected"), INVALID_CASES)
def test_validate_document_names_path(change: Callable, field: str, expected: str) -> None:
    doc = full_document()
    change(doc)

    with pytest.raises(InvalidParameter) as caught:
        validate_document(doc)

    assert caught.value.field == field
    assert caught.value.details["expected"] == expected
    assert caught.value.message.startswith(field)


def test_validate_document_reports_provided_value() -> None:
    doc = full_document()
    doc["layers"][0]["overlays"][0]["position"]["x"] = 1.5

    with pytest.raises(InvalidParameter) as caught:
        validate_document(doc)

    assert caught.value.details["provided"] == 1.5


def test_validate_document_rejects_non_object() -> None:
    with pytest.raises(InvalidParameter) as caught:
        validate_document([])  # type: ignore[arg-type]

    assert caught.value.field is None


def test_validate_document_skips_shared_track() -> None:
    previous = full_document()
    # Break the track in place, so only a fresh check could notice.
    previous["objects"]["obj_001"]["track"]["scores"][0] = 5.0

    doc = merge_patch(previous, {"objects": {"obj_001": {"userLabel": "Anchor"}}})

    validate_document(doc, previous=previous)


def test_validate_document_checks_changed_track() -> None:
    previous = full_document()
    doc = copy.deepcopy(previous)
    doc["objects"]["obj_001"]["track"]["scores"][0] = 5.0

    with pytest.raises(InvalidParameter) as caught:
        validate_document(doc, previous=previous)

    assert caught.value.field == "objects.obj_001.track.scores[0]"


READ_ONLY_CASES = [
    pytest.param({"schemaVersion": "2.1"}, "schemaVersion", id="schema-version-changed"),
    pytest.param({"schemaVersion": None}, "schemaVersion", id="schema-version-deleted"),
    pytest.param({"videoDetails": {"fps": 25}}, "videoDetails.fps", id="video-fps-changed"),
    pytest.param({"videoDetails": {"codec": "h264"}}, "videoDetails.codec", id="video-key-added"),
    pytest.param({"videoDetails": None}, "videoDetails", id="video-details-deleted"),
    pytest.param(
        {"objects": {"obj_001": {"track": {"frames": [0, 5, 11]}}}},
        "objects.obj_001.track.frames",
        id="track-frames-changed",
    ),
    pytest.param(
        {"objects": {"obj_001": {"track": None}}},
        "objects.obj_001.track",
        id="track-deleted",
    ),
    pytest.param(
        {"objects": {"obj_001": {"firstFrame": 1}}},
        "objects.obj_001.firstFrame",
        id="first-frame-changed",
    ),
    pytest.param(
        {"objects": {"obj_001": {"lastFrame": 9}}},
        "objects.obj_001.lastFrame",
        id="last-frame-changed",
    ),
    pytest.param(
        {"objects": {"obj_001": {"frameCount": 1}}},
        "objects.obj_001.frameCount",
        id="frame-count-changed",
    ),
    pytest.param(
        {"objects": {"obj_001": {"confidence": 0.99}}},
        "objects.obj_001.confidence",
        id="confidence-changed",
    ),
    pytest.param(
        {"objects": {"obj_001": {"label": "cat"}}},
        "objects.obj_001.label",
        id="ai-label-changed",
    ),
    pytest.param(
        {"objects": {"surface_001": {"label": "screen"}}},
        "objects.surface_001.label",
        id="surface-label-changed",
    ),
    pytest.param(
        {"objects": {"obj_001": {"kind": "surface"}}},
        "objects.obj_001.kind",
        id="kind-changed",
    ),
    pytest.param(
        {"objects": {"obj_001": {"source": "manual"}}},
        "objects.obj_001.source",
        id="source-changed",
    ),
    pytest.param(
        {"objects": {"obj_001": {"id": "obj_777"}}},
        "objects.obj_001.id",
        id="id-changed",
    ),
    pytest.param(
        {"objects": {"manual_001": {"track": box_track()}}},
        "objects.manual_001.track",
        id="manual-object-given-track",
    ),
    pytest.param(
        {"objects": {"obj_new": {"id": "obj_new", "kind": "box", "source": "ai"}}},
        "objects.obj_new.source",
        id="ai-object-created",
    ),
    pytest.param(
        {"objects": {"obj_new": {"id": "obj_new", "kind": "box"}}},
        "objects.obj_new.source",
        id="object-created-without-source",
    ),
    pytest.param(
        {
            "objects": {
                "obj_new": {"id": "obj_new", "kind": "box", "source": "manual", "frameCount": 3}
            }
        },
        "objects.obj_new.frameCount",
        id="manual-object-created-with-summary",
    ),
]


@pytest.mark.parametrize(("patch", "field"), READ_ONLY_CASES)
def test_check_read_only_rejects(patch: dict, field: str) -> None:
    with pytest.raises(ReadOnlyField) as caught:
        check_read_only(full_document(), patch)

    assert caught.value.field == field
    assert caught.value.code == "READ_ONLY_FIELD"


def test_check_read_only_details() -> None:
    with pytest.raises(ReadOnlyField) as caught:
        check_read_only(full_document(), {"videoDetails": {"fps": 25}})

    assert caught.value.details == {"expected": 30, "provided": 25}


ALLOWED_CASES = [
    pytest.param({"schemaVersion": "2.0"}, id="schema-version-repeated"),
    pytest.param({"videoDetails": {"fps": 30, "width": 320}}, id="video-details-repeated"),
    pytest.param(
        {"objects": {"obj_001": {"userLabel": "Anchor", "customData": {"sku": "A1"}}}},
        id="user-label-and-custom-data",
    ),
    pytest.param({"objects": {"obj_001": {"userLabel": None}}}, id="user-label-cleared"),
    pytest.param({"objects": {"surface_001": {"name": "Billboard"}}}, id="surface-name"),
    pytest.param({"objects": {"obj_001": {"color": "red"}}}, id="unknown-object-field"),
    pytest.param({"objects": {"manual_001": {"label": "brand"}}}, id="manual-label"),
    pytest.param({"objects": {"obj_001": {"track": box_track()}}}, id="track-repeated"),
    pytest.param({"objects": {"obj_001": None}}, id="object-deleted"),
    pytest.param(
        {"objects": {"m2": {"id": "m2", "label": "logo", "kind": "box", "source": "manual"}}},
        id="manual-object-created",
    ),
    pytest.param({"layers": [{"id": "layer_main", "name": "Base"}]}, id="layers-untouched"),
]


@pytest.mark.parametrize("patch", ALLOWED_CASES)
def test_check_read_only_allows(patch: dict) -> None:
    check_read_only(full_document(), patch)


def test_check_read_only_allows_document_sent_back() -> None:
    doc = full_document()

    check_read_only(doc, copy.deepcopy(doc))


TRACK_ERROR_CASES = [
    pytest.param("box", {"frames": [0]}, "track.times", id="times-missing"),
    pytest.param("box", {**box_track(), "frames": [0, 5]}, "track.times", id="times-too-long"),
    pytest.param("box", {**box_track(), "boxes": [0.1] * 8}, "track.boxes", id="boxes-short"),
    pytest.param("box", {**box_track(), "scores": [0.9]}, "track.scores", id="scores-short"),
    pytest.param(
        "box", {**box_track(), "frames": [0, 5, 5]}, "track.frames[2]", id="frames-repeat"
    ),
    pytest.param(
        "box", {**box_track(), "frames": [0, 5, 3]}, "track.frames[2]", id="frames-decrease"
    ),
    pytest.param(
        "box", {**box_track(), "frames": [-1, 5, 6]}, "track.frames[0]", id="frame-negative"
    ),
    pytest.param(
        "box", {**box_track(), "frames": [0, 5.0, 6]}, "track.frames[1]", id="frame-float"
    ),
    pytest.param(
        "box", {**box_track(), "frames": [0, True, 6]}, "track.frames[1]", id="frame-boolean"
    ),
    pytest.param(
        "box", {**box_track(), "times": [0.0, 0.2, 0.1]}, "track.times[2]", id="times-decrease"
    ),
    pytest.param(
        "box",
        {**box_track(), "times": [0.0, float("nan"), 0.3]},
        "track.times[1]",
        id="time-nan",
    ),
    pytest.param(
        "box",
        {**box_track(), "boxes": [0.1, 0.1, 0.3, 1.5] + [0.1, 0.1, 0.2, 0.2] * 2},
        "track.boxes[3]",
        id="box-out-of-frame",
    ),
    pytest.param(
        "box",
        {**box_track(), "boxes": [0.1, 0.1, 0.2, 0.2, 0.5, 0.1, 0.2, 0.2, 0.1, 0.1, 0.2, 0.2]},
        "track.boxes[4]",
        id="box-corners-swapped",
    ),
    pytest.param(
        "box",
        {**box_track(), "boxes": [0.1, 0.1, 0.2, "0.2"] + [0.1, 0.1, 0.2, 0.2] * 2},
        "track.boxes[3]",
        id="box-value-string",
    ),
    pytest.param("box", {**box_track(), "scores": "high"}, "track.scores", id="scores-not-array"),
    pytest.param("box", [1, 2], "track", id="track-not-record"),
    pytest.param(
        "surface", {**surface_track(), "visible": [1, 2, 0]}, "track.visible[1]", id="visible-2"
    ),
    pytest.param(
        "surface",
        {**surface_track(), "corners": [0.5] * 23},
        "track.corners",
        id="corners-short",
    ),
    pytest.param(
        "surface",
        {**surface_track(), "corners": [2.5] + [0.5] * 23},
        "track.corners[0]",
        id="corner-far-outside",
    ),
    pytest.param(
        "surface",
        {key: value for key, value in surface_track().items() if key != "visible"},
        "track.visible",
        id="visible-missing",
    ),
]


@pytest.mark.parametrize(("kind", "track", "field"), TRACK_ERROR_CASES)
def test_validate_track_names_path(kind: str, track: Any, field: str) -> None:
    with pytest.raises(InvalidParameter) as caught:
        validate_track(track, kind)

    assert caught.value.field == field


def test_validate_track_accepts_box_without_scores() -> None:
    track = box_track()
    del track["scores"]

    validate_track(track, "box")


def test_validate_track_accepts_corners_partly_off_screen() -> None:
    track = surface_track()
    track["corners"][0] = -0.4

    validate_track(track, "surface")


def test_validate_track_accepts_empty_track() -> None:
    validate_track({"frames": [], "times": [], "boxes": []}, "box")


def test_validate_track_length_details() -> None:
    with pytest.raises(InvalidParameter) as caught:
        validate_track({**box_track(), "boxes": [0.1] * 8}, "box")

    assert caught.value.details == {"expected": 12, "provided": 8}


def test_validate_track_rejects_unknown_kind() -> None:
    with pytest.raises(ValueError, match="kind"):
        validate_track(box_track(), "polygon")


def test_summarize_track_box() -> None:
    summary = summarize_track(box_track(), "box")

    assert summary == {"firstFrame": 0, "lastFrame": 10, "frameCount": 3, "confidence": 0.8}


def test_summarize_track_surface_counts_visible_frames() -> None:
    track = surface_track()
    track["visible"] = [0, 1, 1]

    summary = summarize_track(track, "surface")

    assert summary == {"firstFrame": 101, "lastFrame": 102, "frameCount": 2}


def test_summarize_track_empty() -> None:
    summary = summarize_track({"frames": [], "times": [], "boxes": []}, "box")

    assert summary == {"firstFrame": None, "lastFrame": None, "frameCount": 0}


def test_build_box_track_rounds_and_clips() -> None:
    track = build_box_track(
        [3, 4],
        [0.1000004, 0.1333333333],
        [[-0.01, 0.123456789, 0.5, 1.2], [0, 0, 1, 1]],
        [0.91234, 1.0],
    )

    assert track == {
        "frames": [3, 4],
        "times": [0.1, 0.133333],
        "boxes": [0.0, 0.12346, 0.5, 1.0, 0.0, 0.0, 1.0, 1.0],
        "scores": [0.9123, 1.0],
    }


def test_build_box_track_never_writes_negative_zero() -> None:
    track = build_box_track([0], [0.0], [[-0.0000001, 0.1, 0.2, 0.2]])

    assert str(track["boxes"][0]) == "0.0"


def test_build_box_track_rejects_unordered_frames() -> None:
    with pytest.raises(InvalidParameter) as caught:
        build_box_track([2, 1], [0.0, 0.1], [[0.1, 0.1, 0.2, 0.2]] * 2)

    assert caught.value.field == "track.frames[1]"


def test_build_surface_track_flattens_corners() -> None:
    corners = [[(0.2, 0.3), (0.8, 0.3), (0.8, 0.7), (0.2, 0.7)]] * 2

    track = build_surface_track([7, 8], [0.25, 0.29], corners, [True, False])

    assert track == {
        "frames": [7, 8],
        "times": [0.25, 0.29],
        "corners": [0.2, 0.3, 0.8, 0.3, 0.8, 0.7, 0.2, 0.7] * 2,
        "visible": [1, 0],
    }
