"""Merging of partial metadata documents, and descriptions of what a change did.

A patch is merged as JSON Merge Patch (RFC 7396) with one extension taken from Kubernetes
strategic merge patch: arrays whose items all carry a string `id` are merged item by item, and
an item `{"id": "x", "$patch": "delete"}` removes item `x`. Documents are plain parsed JSON
(dict, list, str, int, float, bool, None) and are treated as immutable. `merge_patch` returns
a new document that shares unchanged sub-objects with the current one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from mp4e.errors import InvalidParameter
from mp4e.metadata.jsonlimits import (
    ItemId,
    PathStep,
    format_json_path,
    json_type_name,
    summarize_value,
)

PATCH_DIRECTIVE: Final = "$patch"
DELETE: Final = "delete"


class _Missing:
    """Marker for a key that is absent, distinct from a JSON null."""

    def __repr__(self) -> str:
        return "<missing>"


MISSING: Final = _Missing()


def merge_patch(current: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """Merge `patch` into `current` and return the new document.

    Records merge key by key and a null value deletes its key. An array merges by id when
    the patch array is non-empty, every patch item is a record with a non-empty string `id`,
    and every current item is too. Then a known id is deep-merged in place, an unknown id is
    appended in patch order, `{"id": ..., "$patch": "delete"}` removes an item (and is
    ignored for an unknown id), and items the patch does not name keep their place. Patch
    items apply in order, so an id may appear twice, e.g. deleted and then added afresh at
    the end. Any other array, including `[]`, replaces the current value whole, nulls in it
    included.

    Neither input is changed. The result shares every sub-object the patch did not touch
    with `current`, and copies every value taken from `patch`.

    Raises:
        InvalidParameter: the patch is not an object, a `$patch` value is not "delete", or
            `$patch` appears anywhere except in an item of an array merged by id. The
            `field` is the path of the directive in the patch.
    """
    if not isinstance(patch, dict):
        raise InvalidParameter(
            "A metadata patch must be a JSON object.",
            details={"expected": "object", "provided": json_type_name(patch)},
        )
    return _merge_record(current if isinstance(current, dict) else {}, patch, [])


def _merge_value(current: Any, patch: Any, path: list[PathStep]) -> Any:
    if isinstance(patch, dict):
        return _merge_record(current if isinstance(current, dict) else {}, patch, path)
    if isinstance(patch, list):
        current_items = current if isinstance(current, list) else []
        if _carries_ids(patch) and (not current_items or _carries_ids(current_items)):
            return _merge_by_id(current_items, patch, path)
        return _copy_verbatim(patch, path)
    return patch


def _merge_record(current: dict[str, Any], patch: dict[str, Any], path: list[PathStep]) -> dict:
    if PATCH_DIRECTIVE in patch:
        _raise_misplaced_directive([*path, PATCH_DIRECTIVE])

    merged = dict(current)
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = _merge_value(current.get(key, MISSING), value, [*path, key])
    return merged


def _carries_ids(items: Sequence[Any]) -> bool:
    return bool(items) and all(
        isinstance(item, dict) and isinstance(item.get("id"), str) and item["id"] for item in items
    )


_DELETED: Final = object()


def _merge_by_id(
    current_items: list[dict[str, Any]], patch_items: list[dict[str, Any]], path: list[PathStep]
) -> list[Any]:
    merged: list[Any] = list(current_items)
    positions: dict[str, int] = {}
    for position, item in enumerate(merged):
        positions.setdefault(item["id"], position)

    for patch_item in patch_items:
        item_id = patch_item["id"]
        item_path = [*path, ItemId(item_id)]
        index = positions.get(item_id)

        if PATCH_DIRECTIVE in patch_item:
            _check_delete_directive(patch_item[PATCH_DIRECTIVE], item_path)
            if index is not None:
                merged[index] = _DELETED
                del positions[item_id]
            continue

        if index is None:
            positions[item_id] = len(merged)
            merged.append(_merge_record({}, patch_item, item_path))
        else:
            merged[index] = _merge_record(merged[index], patch_item, item_path)

    return [item for item in merged if item is not _DELETED]


def _check_delete_directive(directive: Any, item_path: list[PathStep]) -> None:
    if directive == DELETE:
        return
    field = format_json_path([*item_path, PATCH_DIRECTIVE])
    raise InvalidParameter(
        f'{field} must be "delete", the only supported patch directive.',
        field=field,
        details={"expected": DELETE, "provided": summarize_value(directive)},
    )


def _copy_verbatim(value: Any, path: list[PathStep]) -> Any:
    """Deep-copy a replacing value, rejecting `$patch` keys, which only id-arrays accept."""
    if isinstance(value, dict):
        if PATCH_DIRECTIVE in value:
            _raise_misplaced_directive([*path, PATCH_DIRECTIVE])
        return {key: _copy_verbatim(item, [*path, key]) for key, item in value.items()}
    if isinstance(value, list):
        return [_copy_verbatim(item, [*path, index]) for index, item in enumerate(value)]
    return value


def _raise_misplaced_directive(path: list[PathStep]) -> None:
    field = format_json_path(path)
    raise InvalidParameter(
        f"{field} is not allowed here. A $patch directive may only appear in an item of an "
        "array merged by id, which is one whose current and patch items all carry a string id.",
        field=field,
    )


def json_equal(left: Any, right: Any) -> bool:
    """Compare two parsed JSON values as JSON, where `true` differs from `1`.

    Python's `==` treats `True == 1` and `1 == 1.0` as equal. Here a boolean never equals a
    number, and an integer equals a float only when Python's types match as well, so a type
    change counts as a change. Object key order does not matter.
    """
    if left is right:
        return True
    if type(left) is not type(right):
        return False
    if isinstance(left, dict):
        return left.keys() == right.keys() and all(json_equal(v, right[k]) for k, v in left.items())
    if isinstance(left, list):
        return _lists_equal(left, right)
    return bool(left == right)


def _lists_equal(left: list[Any], right: list[Any]) -> bool:
    # Compare in C first, so long tracks of numbers never reach the Python loop below.
    if len(left) != len(right) or left != right:
        return False
    left_types = list(map(type, left))
    if left_types != list(map(type, right)):
        return False
    if dict not in left_types and list not in left_types:
        return True
    return all(json_equal(a, b) for a, b in zip(left, right, strict=True))


def changed_top_level_keys(before: dict[str, Any], after: dict[str, Any]) -> set[str]:
    """Return the top-level keys whose values differ, including added and removed keys."""
    return {
        key
        for key in before.keys() | after.keys()
        if not json_equal(before.get(key, MISSING), after.get(key, MISSING))
    }


# Top-level keys in the order descriptions mention them. Other keys follow, sorted.
_KEY_ORDER: Final = (
    "schemaVersion",
    "videoDetails",
    "objects",
    "groups",
    "layers",
    "variables",
    "rules",
    "scenes",
    "settings",
)
_ITEM_NOUNS: Final = {
    "objects": "object",
    "groups": "group",
    "layers": "layer",
    "variables": "variable",
    "rules": "rule",
    "scenes": "scene",
    "overlays": "overlay",
}
_MAX_PARTS: Final = 3
_MAX_FIELDS: Final = 3


def describe_change(before: dict[str, Any], after: dict[str, Any]) -> str:
    """Describe in one sentence what changed between two documents.

    Example: "Added overlay overlay_new to layer layer_main, updated object obj_002
    (userLabel, customData) and removed variable score". At most three changes are named.
    The rest are counted, as in "... and 2 more changes". Equal documents give "No changes".
    The result depends only on the two documents.
    """
    extra_keys = sorted((before.keys() | after.keys()) - set(_KEY_ORDER))
    parts: list[str] = []
    for key in (*_KEY_ORDER, *extra_keys):
        old = before.get(key, MISSING)
        new = after.get(key, MISSING)
        if not json_equal(old, new):
            parts.extend(_describe_key(key, old, new))
    return _join_parts(parts)


def _describe_key(key: str, old: Any, new: Any) -> list[str]:
    if old is MISSING:
        return [f"Added {key}"]
    if new is MISSING:
        return [f"Removed {key}"]
    if key == "objects" and isinstance(old, dict) and isinstance(new, dict):
        return _describe_records("object", old, new)
    if key in _ITEM_NOUNS and _is_id_list(old) and _is_id_list(new):
        return _describe_items(key, old, new, "")
    if isinstance(old, dict) and isinstance(new, dict):
        return [f"Updated {key} {_field_list(old, new)}"]
    return [f"Updated {key}"]


def _describe_records(noun: str, old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    parts = []
    for key, value in new.items():
        previous = old.get(key, MISSING)
        if previous is MISSING:
            parts.append(f"Added {noun} {key}")
        elif not json_equal(previous, value):
            parts.append(_describe_update(noun, key, previous, value, ""))
    parts.extend(f"Removed {noun} {key}" for key in old if key not in new)
    return parts


def _describe_items(plural: str, old: list[dict], new: list[dict], layer_id: str) -> list[str]:
    """Describe an id-array change. `layer_id` is set when the items are a layer's overlays."""
    noun = _ITEM_NOUNS[plural]
    to_layer = f" to layer {layer_id}" if layer_id else ""
    from_layer = f" from layer {layer_id}" if layer_id else ""
    old_by_id = {item["id"]: item for item in old}
    new_ids = {item["id"] for item in new}

    parts = []
    for item in new:
        previous = old_by_id.get(item["id"])
        if previous is None:
            parts.append(f"Added {noun} {item['id']}{to_layer}")
        elif not json_equal(previous, item):
            parts.extend(_describe_item_update(noun, previous, item, layer_id))
    parts.extend(
        f"Removed {noun} {item['id']}{from_layer}" for item in old if item["id"] not in new_ids
    )

    kept_old_order = [item["id"] for item in old if item["id"] in new_ids]
    kept_new_order = [item["id"] for item in new if item["id"] in old_by_id]
    if kept_old_order != kept_new_order:
        parts.append(f"Reordered {plural}" + (f" in layer {layer_id}" if layer_id else ""))
    return parts


def _describe_item_update(noun: str, old: dict, new: dict, layer_id: str) -> list[str]:
    if noun != "layer":
        return [_describe_update(noun, new["id"], old, new, layer_id)]

    # A layer's overlays are described one by one, and its other fields as a layer update.
    old_overlays = old.get("overlays", [])
    new_overlays = new.get("overlays", [])
    other_old = {key: value for key, value in old.items() if key != "overlays"}
    other_new = {key: value for key, value in new.items() if key != "overlays"}
    parts = []
    if not json_equal(other_old, other_new):
        parts.append(_describe_update(noun, new["id"], other_old, other_new, ""))
    if json_equal(old_overlays, new_overlays):
        return parts
    if _is_id_list(old_overlays) and _is_id_list(new_overlays):
        parts.extend(_describe_items("overlays", old_overlays, new_overlays, new["id"]))
    else:
        parts.append(f"Updated overlays in layer {new['id']}")
    return parts


def _describe_update(noun: str, item_id: str, old: Any, new: Any, layer_id: str) -> str:
    in_layer = f" in layer {layer_id}" if layer_id else ""
    if isinstance(old, dict) and isinstance(new, dict):
        return f"Updated {noun} {item_id}{in_layer} {_field_list(old, new)}"
    return f"Updated {noun} {item_id}{in_layer}"


def _field_list(old: dict[str, Any], new: dict[str, Any]) -> str:
    """Name the changed keys in the new record's order, then the removed ones, as "(a, b)"."""
    changed = [key for key, value in new.items() if not json_equal(old.get(key, MISSING), value)]
    changed.extend(key for key in old if key not in new)
    if len(changed) > _MAX_FIELDS:
        hidden = len(changed) - _MAX_FIELDS
        return f"({', '.join(changed[:_MAX_FIELDS])} and {hidden} more)"
    return f"({', '.join(changed)})"


def _is_id_list(value: Any) -> bool:
    if not isinstance(value, list):
        return False
    ids = [item.get("id") if isinstance(item, dict) else None for item in value]
    return all(isinstance(item_id, str) for item_id in ids) and len(set(ids)) == len(ids)


def _join_parts(parts: list[str]) -> str:
    if not parts:
        return "No changes"

    named_parts = [parts[0]] + [part[0].lower() + part[1:] for part in parts[1:_MAX_PARTS]]
    hidden = len(parts) - len(named_parts)
    if hidden:
        noun = "change" if hidden == 1 else "changes"
        return f"{', '.join(named_parts)} and {hidden} more {noun}"
    if len(named_parts) == 1:
        return named_parts[0]
    return f"{', '.join(named_parts[:-1])} and {named_parts[-1]}"
