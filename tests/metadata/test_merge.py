import copy
from typing import Any

import pytest

from mp4e.errors import InvalidParameter
from mp4e.metadata.merge import (
    changed_top_level_keys,
    describe_change,
    json_equal,
    merge_patch,
)


def overlay(overlay_id: str, **fields: Any) -> dict[str, Any]:
    return {"id": overlay_id, "name": overlay_id, **fields}


MERGE_CASES = [
    pytest.param(
        {"a": 1, "tags": {"x": 1, "y": 2}, "l": [1, None, 3]},
        {"tags": {"x": None}, "l": [None, 4]},
        {"a": 1, "tags": {"y": 2}, "l": [None, 4]},
        id="acceptance-example",
    ),
    pytest.param(
        {"a": 1, "b": {"c": 1, "d": 2}},
        {"b": {"c": 3}},
        {"a": 1, "b": {"c": 3, "d": 2}},
        id="record-merged-recursively-absent-keys-kept",
    ),
    pytest.param({"a": 1}, {"b": 2}, {"a": 1, "b": 2}, id="record-new-key-added"),
    pytest.param({"a": 1, "b": 2}, {"b": None}, {"a": 1}, id="null-deletes-key"),
    pytest.param({"a": 1}, {"zz": None}, {"a": 1}, id="null-for-absent-key-ignored"),
    pytest.param(
        {"settings": {"restrictions": {"seek": False}, "theme": "dark"}},
        {"settings": {"restrictions": None}},
        {"settings": {"theme": "dark"}},
        id="null-deletes-nested-record",
    ),
    pytest.param(
        {},
        {"settings": {"a": None, "b": {"c": None, "d": 1}}},
        {"settings": {"b": {"d": 1}}},
        id="nulls-dropped-from-new-record",
    ),
    pytest.param({"a": 1}, {"a": "one"}, {"a": "one"}, id="primitive-replaced"),
    pytest.param({"a": True}, {"a": 0}, {"a": 0}, id="primitive-type-change-replaced"),
    pytest.param(
        {"a": 1},
        {"a": {"b": 1, "c": None}},
        {"a": {"b": 1}},
        id="record-replaces-primitive-without-nulls",
    ),
    pytest.param({"a": {"b": 1}}, {"a": 2}, {"a": 2}, id="primitive-replaces-record"),
    pytest.param({"a": {"b": 1}}, {"a": [1]}, {"a": [1]}, id="array-replaces-record"),
    pytest.param({"a": [1]}, {"a": {"b": 1}}, {"a": {"b": 1}}, id="record-replaces-array"),
    pytest.param(
        {"tags": ["a", "b", "c"]}, {"tags": ["d"]}, {"tags": ["d"]}, id="array-without-ids-replaced"
    ),
    pytest.param(
        {"l": [1, 2]},
        {"l": [None, {"a": None}]},
        {"l": [None, {"a": None}]},
        id="nulls-inside-array-without-ids-kept",
    ),
    pytest.param(
        {"variables": [{"id": "a", "value": 1}, {"id": "b", "value": 2}]},
        {"variables": []},
        {"variables": []},
        id="empty-array-clears-id-array",
    ),
    pytest.param(
        {"variables": [{"id": "a", "value": 1}, {"id": "b", "value": 2}]},
        {"variables": [{"id": "a", "value": 5}, {"value": 6}]},
        {"variables": [{"id": "a", "value": 5}, {"value": 6}]},
        id="patch-item-without-id-replaces-whole",
    ),
    pytest.param(
        {"variables": [{"id": "a", "value": 1}]},
        {"variables": [{"id": "", "value": 5}]},
        {"variables": [{"id": "", "value": 5}]},
        id="empty-string-id-replaces-whole",
    ),
    pytest.param(
        {"data": [{"id": 1, "v": "x"}]},
        {"data": [{"id": 1, "w": "y"}]},
        {"data": [{"id": 1, "w": "y"}]},
        id="numeric-ids-replace-whole",
    ),
    pytest.param(
        {"variables": [{"name": "no id"}]},
        {"variables": [{"id": "a", "value": 1}]},
        {"variables": [{"id": "a", "value": 1}]},
        id="current-items-without-ids-replaced",
    ),
    pytest.param(
        {"variables": [{"id": "v", "type": "number", "value": 1, "meta": {"a": 1, "b": 2}}]},
        {"variables": [{"id": "v", "value": 2, "meta": {"a": None}}]},
        {"variables": [{"id": "v", "type": "number", "value": 2, "meta": {"b": 2}}]},
        id="known-id-deep-merged",
    ),
    pytest.param(
        {"variables": [{"id": "a"}, {"id": "b"}, {"id": "c"}]},
        {"variables": [{"id": "b", "value": 2}]},
        {"variables": [{"id": "a"}, {"id": "b", "value": 2}, {"id": "c"}]},
        id="unmentioned-items-keep-their-place",
    ),
    pytest.param(
        {"variables": [{"id": "a"}, {"id": "b"}]},
        {"variables": [{"id": "z"}, {"id": "a", "value": 1}, {"id": "m"}, {"id": "c"}]},
        {
            "variables": [
                {"id": "a", "value": 1},
                {"id": "b"},
                {"id": "z"},
                {"id": "m"},
                {"id": "c"},
            ]
        },
        id="new-ids-appended-in-patch-order",
    ),
    pytest.param(
        {"variables": [{"id": "a", "value": 1, "old": True}]},
        {"variables": [{"id": "a", "$patch": "delete"}, {"id": "a", "value": 2}]},
        {"variables": [{"id": "a", "value": 2}]},
        id="delete-then-add-replaces-item",
    ),
    pytest.param(
        {},
        {"variables": [{"id": "v", "value": 1, "note": None}]},
        {"variables": [{"id": "v", "value": 1}]},
        id="id-array-merged-into-absent-key",
    ),
    pytest.param(
        {"variables": [{"id": "a"}, {"id": "b"}, {"id": "c"}]},
        {"variables": [{"id": "b", "$patch": "delete"}]},
        {"variables": [{"id": "a"}, {"id": "c"}]},
        id="delete-in-variables",
    ),
    pytest.param(
        {"variables": [{"id": "a"}]},
        {"variables": [{"id": "gone", "$patch": "delete"}]},
        {"variables": [{"id": "a"}]},
        id="delete-of-unknown-id-ignored",
    ),
    pytest.param(
        {"variables": [{"id": "a"}]},
        {"variables": [{"id": "a", "$patch": "delete", "value": 3}]},
        {"variables": []},
        id="delete-ignores-other-fields",
    ),
    pytest.param(
        {"layers": [{"id": "layer_main", "overlays": []}, {"id": "layer_top", "overlays": []}]},
        {"layers": [{"id": "layer_main", "$patch": "delete"}]},
        {"layers": [{"id": "layer_top", "overlays": []}]},
        id="delete-in-layers",
    ),
    pytest.param(
        {"layers": [{"id": "main", "overlays": [overlay("a"), overlay("b"), overlay("c")]}]},
        {"layers": [{"id": "main", "overlays": [{"id": "b", "$patch": "delete"}]}]},
        {"layers": [{"id": "main", "overlays": [overlay("a"), overlay("c")]}]},
        id="delete-in-overlays",
    ),
    pytest.param(
        {
            "layers": [
                {
                    "id": "layer_main",
                    "name": "Main",
                    "overlays": [overlay("a", position={"x": 0.1, "y": 0.1}), overlay("b")],
                },
                {"id": "layer_top", "name": "Top", "overlays": [overlay("t")]},
            ]
        },
        {
            "layers": [
                {
                    "id": "layer_main",
                    "name": "Main layer",
                    "overlays": [
                        {"id": "a", "position": {"x": 0.5}},
                        {
                            "id": "overlay_new",
                            "name": "New CTA Button",
                            "position": {"x": 0.9, "y": 0.1},
                            "plugin": {"type": "core:button", "config": {"text": "Shop Now"}},
                        },
                    ],
                }
            ]
        },
        {
            "layers": [
                {
                    "id": "layer_main",
                    "name": "Main layer",
                    "overlays": [
                        overlay("a", position={"x": 0.5, "y": 0.1}),
                        overlay("b"),
                        {
                            "id": "overlay_new",
                            "name": "New CTA Button",
                            "position": {"x": 0.9, "y": 0.1},
                            "plugin": {"type": "core:button", "config": {"text": "Shop Now"}},
                        },
                    ],
                },
                {"id": "layer_top", "name": "Top", "overlays": [overlay("t")]},
            ]
        },
        id="layers-and-their-overlays-merged-by-id",
    ),
    pytest.param(
        {"layers": [{"id": "layer_main", "overlays": [overlay("a")]}]},
        {
            "layers": [
                {
                    "id": "layer_new",
                    "name": "New",
                    "overlays": [{"id": "x", "$patch": "delete"}, overlay("n1"), overlay("n2")],
                }
            ]
        },
        {
            "layers": [
                {"id": "layer_main", "overlays": [overlay("a")]},
                {"id": "layer_new", "name": "New", "overlays": [overlay("n1"), overlay("n2")]},
            ]
        },
        id="new-layer-with-patch-directives-in-overlays",
    ),
    pytest.param(
        {"layers": [{"id": "main", "overlays": [overlay("a"), overlay("b")]}]},
        {"layers": [{"id": "main", "overlays": []}]},
        {"layers": [{"id": "main", "overlays": []}]},
        id="empty-overlays-clears-layer",
    ),
    pytest.param(
        {"objects": {"obj_1": {"id": "obj_1", "userLabel": None}, "obj_2": {"id": "obj_2"}}},
        {"objects": {"obj_1": {"userLabel": "Host"}, "obj_2": None}},
        {"objects": {"obj_1": {"id": "obj_1", "userLabel": "Host"}}},
        id="objects-record-merged-by-key",
    ),
]


@pytest.mark.parametrize(("current", "patch", "expected"), MERGE_CASES)
def test_merge_patch_rows(current: dict, patch: dict, expected: dict) -> None:
    result = merge_patch(current, patch)

    assert result == expected
    assert json_equal(result, expected)


@pytest.mark.parametrize(("current", "patch", "expected"), MERGE_CASES)
def test_merge_patch_leaves_inputs_unchanged(current: dict, patch: dict, expected: dict) -> None:
    current_before = copy.deepcopy(current)
    patch_before = copy.deepcopy(patch)

    merge_patch(current, patch)

    assert current == current_before
    assert patch == patch_before


def test_merge_patch_copies_patch_values() -> None:
    current = {"layers": [{"id": "main", "overlays": []}]}
    patch = {"layers": [{"id": "main", "overlays": [overlay("a", tags=["x"])]}], "list": [{"k": 1}]}

    result = merge_patch(current, patch)
    result["layers"][0]["overlays"][0]["tags"].append("y")
    result["list"][0]["k"] = 2

    assert patch["layers"][0]["overlays"][0]["tags"] == ["x"]
    assert patch["list"][0]["k"] == 1


def test_merge_patch_copies_changed_records() -> None:
    current = {"objects": {"o": {"id": "o", "customData": {"a": 1}}}}

    result = merge_patch(current, {"objects": {"o": {"customData": {"b": 2}}}})
    result["objects"]["o"]["customData"]["c"] = 3

    assert current["objects"]["o"]["customData"] == {"a": 1}
    assert result["objects"] is not current["objects"]


def test_merge_patch_shares_untouched_track() -> None:
    track = {"frames": [0, 1], "times": [0.0, 0.04], "boxes": [0.1, 0.1, 0.2, 0.2] * 2}
    current = {"objects": {"o": {"id": "o", "userLabel": None, "track": track}}, "layers": []}

    result = merge_patch(current, {"objects": {"o": {"userLabel": "Host"}}})

    assert result["objects"]["o"]["track"] is track
    assert result["layers"] is current["layers"]


PATCH_ERROR_CASES = [
    pytest.param(
        {"variables": [{"id": "v"}]},
        {"variables": [{"id": "v", "$patch": "replace"}]},
        "variables[id=v].$patch",
        id="directive-other-than-delete",
    ),
    pytest.param(
        {"layers": [{"id": "main", "overlays": [overlay("a")]}]},
        {"layers": [{"id": "main", "overlays": [{"id": "a", "$patch": None}]}]},
        "layers[id=main].overlays[id=a].$patch",
        id="null-directive-in-overlays",
    ),
    pytest.param(
        {"settings": {}},
        {"settings": {"$patch": "delete"}},
        "settings.$patch",
        id="directive-in-record",
    ),
    pytest.param({}, {"$patch": "delete"}, "$patch", id="directive-at-top-level"),
    pytest.param(
        {"tags": ["a"]},
        {"tags": ["b", {"$patch": "delete"}]},
        "tags[1].$patch",
        id="directive-in-array-without-ids",
    ),
    pytest.param(
        {"variables": [{"name": "no id"}]},
        {"variables": [{"id": "a", "$patch": "delete"}]},
        "variables[0].$patch",
        id="directive-where-current-items-lack-ids",
    ),
    pytest.param(
        {},
        {"settings": {"list": [[{"deep": {"$patch": "delete"}}]]}},
        "settings.list[0][0].deep.$patch",
        id="directive-deep-in-replaced-array",
    ),
]


@pytest.mark.parametrize(("current", "patch", "field"), PATCH_ERROR_CASES)
def test_merge_patch_rejects_misused_directive(current: dict, patch: dict, field: str) -> None:
    with pytest.raises(InvalidParameter) as caught:
        merge_patch(current, patch)

    assert caught.value.field == field
    assert "$patch" in caught.value.message


def test_merge_patch_directive_error_details() -> None:
    with pytest.raises(InvalidParameter) as caught:
        merge_patch({}, {"variables": [{"id": "v", "$patch": "merge"}]})

    assert caught.value.details == {"expected": "delete", "provided": "merge"}


def test_merge_patch_rejects_non_object_patch() -> None:
    with pytest.raises(InvalidParameter) as caught:
        merge_patch({"a": 1}, [1, 2])  # type: ignore[arg-type]

    assert caught.value.details == {"expected": "object", "provided": "array"}


def main_layer(*overlays: dict[str, Any], name: str = "Main") -> dict[str, Any]:
    return {"id": "layer_main", "name": name, "overlays": list(overlays)}


BASE_DOCUMENT: dict[str, Any] = {
    "schemaVersion": "2.0",
    "videoDetails": {"fps": 30},
    "objects": {
        "obj_001": {"id": "obj_001", "label": "person", "userLabel": "Host", "customData": {}},
        "obj_002": {"id": "obj_002", "label": "laptop", "userLabel": None, "customData": {}},
    },
    "layers": [main_layer(overlay("cta", position={"x": 0.1, "y": 0.1}))],
    "variables": [{"id": "score", "type": "number", "value": 0}],
    "scenes": [],
    "settings": {},
}

DESCRIBE_CASES = [
    pytest.param({}, "No changes", id="no-changes"),
    pytest.param(
        {"layers": [{"id": "layer_main", "overlays": [overlay("overlay_new")]}]},
        "Added overlay overlay_new to layer layer_main",
        id="added-overlay",
    ),
    pytest.param(
        {"layers": [{"id": "layer_main", "overlays": [{"id": "cta", "$patch": "delete"}]}]},
        "Removed overlay cta from layer layer_main",
        id="removed-overlay",
    ),
    pytest.param(
        {"layers": [{"id": "layer_main", "overlays": [{"id": "cta", "position": {"x": 0.5}}]}]},
        "Updated overlay cta in layer layer_main (position)",
        id="updated-overlay",
    ),
    pytest.param(
        {"objects": {"obj_002": {"userLabel": "MacBook Pro M3", "customData": {"price": 1999}}}},
        "Updated object obj_002 (userLabel, customData)",
        id="updated-object",
    ),
    pytest.param(
        {"objects": {"obj_001": None}},
        "Removed object obj_001",
        id="removed-object",
    ),
    pytest.param(
        {"objects": {"obj_003": {"id": "obj_003", "source": "manual"}}},
        "Added object obj_003",
        id="added-object",
    ),
    pytest.param(
        {"variables": [{"id": "score", "value": 10}]},
        "Updated variable score (value)",
        id="updated-variable",
    ),
    pytest.param(
        {"variables": [{"id": "lives", "type": "number", "value": 3}]},
        "Added variable lives",
        id="added-variable",
    ),
    pytest.param(
        {"layers": [{"id": "layer_main", "name": "Base"}]},
        "Updated layer layer_main (name)",
        id="updated-layer-name",
    ),
    pytest.param(
        {"layers": [{"id": "layer_top", "name": "Top", "overlays": []}]},
        "Added layer layer_top",
        id="added-layer",
    ),
    pytest.param(
        {"scenes": [{"id": "intro", "name": "Intro", "start": 0, "end": 5}]},
        "Added scene intro",
        id="added-scene",
    ),
    pytest.param(
        {"settings": {"restrictions": {"seek": False}}},
        "Updated settings (restrictions)",
        id="updated-settings",
    ),
    pytest.param({"theme": {"color": "red"}}, "Added theme", id="added-unknown-key"),
    pytest.param({"scenes": None}, "Removed scenes", id="removed-top-level-key"),
    pytest.param(
        {"variables": [{"id": "score", "value": 1}, {"id": "lives", "type": "number", "value": 3}]},
        "Updated variable score (value) and added variable lives",
        id="two-parts",
    ),
    pytest.param(
        {
            "objects": {"obj_002": {"userLabel": "Mac"}},
            "layers": [{"id": "layer_main", "overlays": [overlay("overlay_new")]}],
            "variables": [{"id": "score", "$patch": "delete"}],
        },
        "Updated object obj_002 (userLabel), added overlay overlay_new to layer layer_main "
        "and removed variable score",
        id="three-parts",
    ),
    pytest.param(
        {
            "objects": {"obj_001": {"userLabel": "A"}, "obj_002": {"userLabel": "B"}},
            "layers": [{"id": "layer_main", "overlays": [overlay("n1")]}],
            "variables": [{"id": "score", "value": 5}],
        },
        "Updated object obj_001 (userLabel), updated object obj_002 (userLabel), added overlay "
        "n1 to layer layer_main and 1 more change",
        id="one-more-change",
    ),
    pytest.param(
        {
            "objects": {"obj_001": {"userLabel": "A"}, "obj_002": {"userLabel": "B"}},
            "layers": [{"id": "layer_main", "overlays": [overlay("n1"), overlay("n2")]}],
            "variables": [{"id": "score", "value": 5}],
        },
        "Updated object obj_001 (userLabel), updated object obj_002 (userLabel), added overlay "
        "n1 to layer layer_main and 2 more changes",
        id="two-more-changes",
    ),
    pytest.param(
        {"objects": {"obj_002": {"a": 1, "b": 2, "c": 3, "userLabel": "X"}}},
        "Updated object obj_002 (userLabel, a, b and 1 more)",
        id="field-list-shortened",
    ),
]


@pytest.mark.parametrize(("patch", "expected"), DESCRIBE_CASES)
def test_describe_change_sentence(patch: dict, expected: str) -> None:
    after = merge_patch(BASE_DOCUMENT, patch)

    assert describe_change(BASE_DOCUMENT, after) == expected


def test_describe_change_reordered_items() -> None:
    before = {"variables": [{"id": "a"}, {"id": "b"}]}
    after = {"variables": [{"id": "b"}, {"id": "a"}]}

    assert describe_change(before, after) == "Reordered variables"


def test_describe_change_reordered_overlays() -> None:
    before = {"layers": [main_layer(overlay("a"), overlay("b"))]}
    after = {"layers": [main_layer(overlay("b"), overlay("a"))]}

    assert describe_change(before, after) == "Reordered overlays in layer layer_main"


def test_describe_change_array_without_ids() -> None:
    before = {"variables": [{"id": "a"}], "groups": []}
    after = {"variables": [{"name": "no id"}], "groups": []}

    assert describe_change(before, after) == "Updated variables"


def test_describe_change_is_deterministic() -> None:
    patch = {
        "objects": {"obj_001": {"userLabel": "A", "customData": {"x": 1}}},
        "layers": [{"id": "layer_main", "name": "N", "overlays": [overlay("z"), overlay("y")]}],
    }
    after = merge_patch(BASE_DOCUMENT, patch)

    first = describe_change(BASE_DOCUMENT, after)
    second = describe_change(copy.deepcopy(BASE_DOCUMENT), copy.deepcopy(after))

    assert first == second


def test_changed_top_level_keys_names_changes() -> None:
    after = merge_patch(
        BASE_DOCUMENT,
        {"objects": {"obj_001": {"userLabel": "A"}}, "scenes": None, "theme": "dark"},
    )

    assert changed_top_level_keys(BASE_DOCUMENT, after) == {"objects", "scenes", "theme"}


def test_changed_top_level_keys_ignores_equal_copies() -> None:
    after = copy.deepcopy(BASE_DOCUMENT)

    assert changed_top_level_keys(BASE_DOCUMENT, after) == set()


def test_changed_top_level_keys_sees_type_change() -> None:
    before = {"settings": {"loop": 1}, "variables": [{"id": "v", "value": 0}]}
    after = {"settings": {"loop": True}, "variables": [{"id": "v", "value": False}]}

    assert changed_top_level_keys(before, after) == {"settings", "variables"}


JSON_EQUAL_CASES = [
    pytest.param(1, 1, True, id="equal-integers"),
    pytest.param(True, 1, False, id="boolean-is-not-number"),
    pytest.param(0, False, False, id="zero-is-not-false"),
    pytest.param(1, 1.0, False, id="integer-is-not-float"),
    pytest.param({"a": 1, "b": 2}, {"b": 2, "a": 1}, True, id="key-order-ignored"),
    pytest.param([1, 2], [2, 1], False, id="array-order-matters"),
    pytest.param([{"a": [1, True]}], [{"a": [1, 1]}], False, id="nested-boolean-in-array"),
    pytest.param([0.5] * 1000, [0.5] * 1000, True, id="long-number-arrays"),
    pytest.param(None, None, True, id="nulls"),
    pytest.param({"a": None}, {}, False, id="null-is-not-absent"),
]


@pytest.mark.parametrize(("left", "right", "expected"), JSON_EQUAL_CASES)
def test_json_equal_cases(left: Any, right: Any, expected: bool) -> None:
    assert json_equal(left, right) is expected
