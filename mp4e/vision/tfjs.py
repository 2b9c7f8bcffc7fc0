"""Read TensorFlow.js graph models and run them with PyTorch, without TensorFlow.

A graph model is a `model.json` file (a TensorFlow `GraphDef` under `modelTopology`, and a
`weightsManifest` that lists every constant tensor) plus one or more binary shard files that
hold those tensors back to back, in manifest order, little-endian. A manifest entry may be
quantised: `float16` entries take two bytes per value, `uint8` and `uint16` entries are affine
(`value = q * scale + min`).

`run_graph` is a small interpreter over the operations that converted detection models use
(`SUPPORTED_OPS`). It exists to check converted PyTorch modules against the original graph,
not to serve models: it runs one node at a time and keeps every intermediate tensor.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 - the name PyTorch's docs use

logger = logging.getLogger(__name__)

_PLAIN_DTYPES: dict[str, np.dtype] = {
    "float32": np.dtype("<f4"),
    "int32": np.dtype("<i4"),
    "bool": np.dtype("bool"),
}
_QUANTISED_DTYPES: dict[str, np.dtype] = {
    "float16": np.dtype("<f2"),
    "uint8": np.dtype("u1"),
    "uint16": np.dtype("<u2"),
}


class GraphModelError(ValueError):
    """Raised when a graph model file is malformed or uses something this reader lacks."""


@dataclass(frozen=True)
class GraphNode:
    """One node of the graph: its operation, its inputs as `(node, output index)` and attrs."""

    name: str
    op: str
    inputs: tuple[tuple[str, int], ...]
    attrs: Mapping[str, Any] = field(default_factory=dict)

    def attr_int(self, key: str, default: int | None = None) -> int:
        value = self.attrs.get(key)
        if value is None:
            return _require_default(self, key, default)
        return int(value["i"])

    def attr_float(self, key: str, default: float | None = None) -> float:
        value = self.attrs.get(key)
        if value is None:
            return _require_default(self, key, default)
        return float(value["f"])

    def attr_bool(self, key: str, default: bool | None = None) -> bool:
        value = self.attrs.get(key)
        if value is None:
            return _require_default(self, key, default)
        return bool(value.get("b", False))

    def attr_str(self, key: str, default: str | None = None) -> str:
        value = self.attrs.get(key)
        if value is None:
            return _require_default(self, key, default)
        return base64.b64decode(value["s"]).decode("ascii")

    def attr_ints(self, key: str, default: list[int] | None = None) -> list[int]:
        value = self.attrs.get(key)
        if value is None:
            return _require_default(self, key, default)
        return [int(item) for item in value.get("list", {}).get("i", [])]


def _require_default(node: GraphNode, key: str, default: Any) -> Any:
    if default is None:
        raise GraphModelError(f"Node {node.name!r} ({node.op}) has no attribute {key!r}.")
    return default


@dataclass
class GraphModel:
    """A parsed graph model: nodes by name, constant tensors by name, and the signature."""

    nodes: dict[str, GraphNode]
    weights: dict[str, np.ndarray]
    input_names: list[str]
    output_names: list[str]
    weight_order: list[str]
    metadata: dict[str, Any]

    def nodes_by_op(self, op: str) -> list[GraphNode]:
        return [node for node in self.nodes.values() if node.op == op]

    def consumers(self, name: str) -> list[GraphNode]:
        """Return the nodes that read any output of the node called `name`."""
        return [node for node in self.nodes.values() if any(src == name for src, _ in node.inputs)]


def load_graph_model(model_json: Path) -> GraphModel:
    """Parse a TensorFlow.js graph model and decode all of its weights.

    Raises `GraphModelError` when the file is not a graph model, a shard is missing or has a
    size that disagrees with the manifest, or a weight has an unknown dtype.
    """
    try:
        document = json.loads(model_json.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise GraphModelError(f"Cannot read graph model {model_json}: {exc}") from exc
    if document.get("format") != "graph-model" or "modelTopology" not in document:
        raise GraphModelError(f"{model_json} is not a TensorFlow.js graph model.")

    nodes = _parse_nodes(document["modelTopology"].get("node", []))
    weights, order = _read_weights(model_json.parent, document.get("weightsManifest", []))
    signature = document.get("signature", {})
    input_names = [_strip_port(name) for name in signature.get("inputs", {})]
    output_names = [_strip_port(name) for name in signature.get("outputs", {})]
    if not input_names:
        input_names = [node.name for node in nodes.values() if node.op == "Placeholder"]
    metadata = {key: document[key] for key in ("generatedBy", "convertedBy") if key in document}

    logger.debug("Loaded %s: %d nodes, %d weights", model_json, len(nodes), len(weights))
    return GraphModel(nodes, weights, input_names, output_names, order, metadata)


def _strip_port(name: str) -> str:
    return name.split(":", 1)[0]


def _parse_input(reference: str) -> tuple[str, int]:
    node, _, port = reference.partition(":")
    return node, int(port) if port else 0


def _parse_nodes(raw_nodes: list[dict[str, Any]]) -> dict[str, GraphNode]:
    nodes: dict[str, GraphNode] = {}
    for raw in raw_nodes:
        # Inputs that start with "^" are control dependencies and carry no data.
        inputs = tuple(_parse_input(ref) for ref in raw.get("input", []) if not ref.startswith("^"))
        nodes[raw["name"]] = GraphNode(raw["name"], raw["op"], inputs, raw.get("attr", {}))
    return nodes


def _read_weights(
    directory: Path, manifest: list[dict[str, Any]]
) -> tuple[dict[str, np.ndarray], list[str]]:
    weights: dict[str, np.ndarray] = {}
    order: list[str] = []
    for group in manifest:
        data = b"".join(_read_shard(directory / path) for path in group["paths"])
        offset = 0
        for entry in group["weights"]:
            array, size = _decode_weight(entry, data, offset)
            weights[entry["name"]] = array
            order.append(entry["name"])
            offset += size
        if offset != len(data):
            raise GraphModelError(
                f"Weight shards {group['paths']} hold {len(data)} bytes but the manifest "
                f"describes {offset}."
            )
    return weights, order


def _read_shard(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise GraphModelError(f"Cannot read weight shard {path}: {exc}") from exc


def _decode_weight(entry: dict[str, Any], data: bytes, offset: int) -> tuple[np.ndarray, int]:
    name, dtype_name, shape = entry["name"], entry["dtype"], entry["shape"]
    count = int(np.prod(shape, dtype=np.int64)) if shape else 1
    quantization = entry.get("quantization")
    if quantization is not None:
        stored = _QUANTISED_DTYPES.get(quantization.get("dtype"))
    else:
        stored = _PLAIN_DTYPES.get(dtype_name)
    if stored is None:
        raise GraphModelError(f"Weight {name!r} has an unsupported dtype: {entry!r}.")

    size = count * stored.itemsize
    if offset + size > len(data):
        raise GraphModelError(f"Weight {name!r} runs past the end of its shard.")
    raw = np.frombuffer(data, dtype=stored, count=count, offset=offset).reshape(shape)

    if quantization is None:
        array = raw.copy()
    elif quantization["dtype"] == "float16":
        array = raw.astype(np.float32)
    else:
        array = raw.astype(np.float32) * quantization["scale"] + quantization["min"]
    if dtype_name == "int32" and array.dtype != np.int32:
        array = np.rint(array).astype(np.int32)
    return array, size


OpFunction = Callable[[GraphNode, list[torch.Tensor]], list[torch.Tensor]]
_OPS: dict[str, OpFunction] = {}


def _op(*names: str) -> Callable[[OpFunction], OpFunction]:
    def register(function: OpFunction) -> OpFunction:
        for name in names:
            _OPS[name] = function
        return function

    return register


def run_graph(
    model: GraphModel, feeds: Mapping[str, torch.Tensor], outputs: list[str] | None = None
) -> dict[str, torch.Tensor]:
    """Evaluate the graph on `feeds` (input name to tensor) and return the requested outputs.

    Only the nodes that the outputs depend on run. Raises `GraphModelError` naming the node when
    the graph contains an operation that is not in `SUPPORTED_OPS`.
    """
    wanted = outputs or model.output_names
    values: dict[str, list[torch.Tensor]] = {}
    for name in _evaluation_order(model, [_parse_input(ref)[0] for ref in wanted]):
        node = model.nodes[name]
        if node.op == "Placeholder":
            if name not in feeds:
                raise GraphModelError(f"No value was given for the graph input {name!r}.")
            values[name] = [feeds[name]]
        elif node.op == "Const":
            values[name] = [torch.from_numpy(np.ascontiguousarray(model.weights[name]))]
        else:
            function = _OPS.get(node.op)
            if function is None:
                raise GraphModelError(f"Node {name!r} uses the unsupported operation {node.op}.")
            args = [values[src][port] for src, port in node.inputs]
            values[name] = function(node, args)

    results = {}
    for ref in wanted:
        node_name, port = _parse_input(ref)
        results[node_name if port == 0 else ref] = values[node_name][port]
    return results


def _evaluation_order(model: GraphModel, targets: list[str]) -> list[str]:
    """Return the nodes that `targets` depend on, each after all of its inputs."""
    order: list[str] = []
    state: dict[str, bool] = {}  # False while a node is on the stack, True once emitted
    stack: list[tuple[str, bool]] = [(name, False) for name in reversed(targets)]
    while stack:
        name, inputs_done = stack.pop()
        if inputs_done:
            state[name] = True
            order.append(name)
            continue
        if name in state:
            if not state[name]:
                raise GraphModelError(f"The graph has a cycle through node {name!r}.")
            continue
        if name not in model.nodes:
            raise GraphModelError(f"The graph refers to a missing node {name!r}.")
        state[name] = False
        stack.append((name, True))
        stack.extend((src, False) for src, _ in reversed(model.nodes[name].inputs))
    return order


def _as_ints(tensor: torch.Tensor) -> list[int]:
    return [int(value) for value in tensor.reshape(-1).tolist()]


@_op("Identity")
def _identity(node: GraphNode, args: list[torch.Tensor]) -> list[torch.Tensor]:
    return [args[0]]


@_op("Pad", "PadV2")
def _pad(node: GraphNode, args: list[torch.Tensor]) -> list[torch.Tensor]:
    paddings = args[1].reshape(-1, 2).tolist()
    flat: list[int] = []
    for before, after in reversed(paddings):  # F.pad lists the last dimension first
        flat.extend((int(before), int(after)))
    value = float(args[2]) if len(args) > 2 else 0.0
    return [F.pad(args[0], flat, mode="constant", value=value)]


@_op("Transpose")
def _transpose(node: GraphNode, args: list[torch.Tensor]) -> list[torch.Tensor]:
    return [args[0].permute(*_as_ints(args[1]))]


@_op("Reshape")
def _reshape(node: GraphNode, args: list[torch.Tensor]) -> list[torch.Tensor]:
    return [args[0].reshape(_as_ints(args[1]))]


@_op("Add", "AddV2")
def _add(node: GraphNode, args: list[torch.Tensor]) -> list[torch.Tensor]:
    return [args[0] + args[1]]


@_op("Sub")
def _sub(node: GraphNode, args: list[torch.Tensor]) -> list[torch.Tensor]:
    return [args[0] - args[1]]


@_op("Mul")
def _mul(node: GraphNode, args: list[torch.Tensor]) -> list[torch.Tensor]:
    return [args[0] * args[1]]


@_op("LeakyRelu")
def _leaky_relu(node: GraphNode, args: list[torch.Tensor]) -> list[torch.Tensor]:
    return [F.leaky_relu(args[0], node.attr_float("alpha", 0.2))]


@_op("Relu")
def _relu(node: GraphNode, args: list[torch.Tensor]) -> list[torch.Tensor]:
    return [F.relu(args[0])]


@_op("Sigmoid")
def _sigmoid(node: GraphNode, args: list[torch.Tensor]) -> list[torch.Tensor]:
    return [torch.sigmoid(args[0])]


@_op("ConcatV2")
def _concat(node: GraphNode, args: list[torch.Tensor]) -> list[torch.Tensor]:
    return [torch.cat(args[:-1], dim=int(args[-1]))]


@_op("SplitV")
def _split(node: GraphNode, args: list[torch.Tensor]) -> list[torch.Tensor]:
    value, sizes, axis = args[0], _as_ints(args[1]), int(args[2])
    if -1 in sizes:
        rest = value.shape[axis] - sum(size for size in sizes if size != -1)
        sizes = [rest if size == -1 else size for size in sizes]
    return list(torch.split(value, sizes, dim=axis))


@_op("SparseToDense")
def _sparse_to_dense(node: GraphNode, args: list[torch.Tensor]) -> list[torch.Tensor]:
    indices, shape, values, default = args
    dense = torch.full(_as_ints(shape), default.item(), dtype=values.dtype)
    if indices.numel():
        index = indices.reshape(indices.shape[0], -1).long()
        dense[tuple(index.T)] = values
    return [dense]


def _spatial_layout(node: GraphNode) -> str:
    layout = node.attr_str("data_format", "NHWC")
    if layout not in ("NHWC", "NCHW"):
        raise GraphModelError(f"Node {node.name!r} uses the unsupported layout {layout}.")
    return layout


def _to_nchw(tensor: torch.Tensor, layout: str) -> torch.Tensor:
    return tensor.permute(0, 3, 1, 2) if layout == "NHWC" else tensor


def _from_nchw(tensor: torch.Tensor, layout: str) -> torch.Tensor:
    return tensor.permute(0, 2, 3, 1) if layout == "NHWC" else tensor


def _image_hw(image: torch.Tensor) -> tuple[int, int]:
    return int(image.shape[2]), int(image.shape[3])


def _hw(values: list[int], layout: str) -> tuple[int, int]:
    return (values[1], values[2]) if layout == "NHWC" else (values[2], values[3])


def _same_padding(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    effective = (kernel - 1) * dilation + 1
    out = -(-size // stride)
    total = max((out - 1) * stride + effective - size, 0)
    return total // 2, total - total // 2  # TensorFlow puts the odd pixel after


def _conv_padding(
    node: GraphNode,
    image_hw: tuple[int, int],
    kernel_hw: tuple[int, int],
    strides: tuple[int, int],
    dilations: tuple[int, int],
) -> list[int]:
    """Return `F.pad` amounts (left, right, top, bottom) for the node's padding mode."""
    mode = node.attr_str("padding")
    if mode == "VALID":
        return [0, 0, 0, 0]
    if mode == "SAME":
        top, bottom = _same_padding(image_hw[0], kernel_hw[0], strides[0], dilations[0])
        left, right = _same_padding(image_hw[1], kernel_hw[1], strides[1], dilations[1])
        return [left, right, top, bottom]
    raise GraphModelError(f"Node {node.name!r} uses the unsupported padding {mode}.")


@_op("Conv2D", "DepthwiseConv2dNative")
def _conv2d(node: GraphNode, args: list[torch.Tensor]) -> list[torch.Tensor]:
    layout = _spatial_layout(node)
    image, kernel = _to_nchw(args[0], layout), args[1]
    strides = _hw(node.attr_ints("strides", [1, 1, 1, 1]), layout)
    dilations = _hw(node.attr_ints("dilations", [1, 1, 1, 1]), layout)
    in_channels = image.shape[1]
    if node.op == "DepthwiseConv2dNative":
        # [H, W, C, multiplier] -> [C * multiplier, 1, H, W]
        height, width, channels, multiplier = kernel.shape
        weight = kernel.permute(2, 3, 0, 1).reshape(channels * multiplier, 1, height, width)
        groups = channels
    else:
        weight = kernel.permute(3, 2, 0, 1)  # HWIO -> OIHW
        groups = in_channels // kernel.shape[2]

    kernel_hw = (int(kernel.shape[0]), int(kernel.shape[1]))
    padding = _conv_padding(node, _image_hw(image), kernel_hw, strides, dilations)
    image = F.pad(image, padding)
    out = F.conv2d(image, weight.to(image.dtype), stride=strides, dilation=dilations, groups=groups)
    return [_from_nchw(out, layout)]


@_op("MaxPool")
def _max_pool(node: GraphNode, args: list[torch.Tensor]) -> list[torch.Tensor]:
    layout = _spatial_layout(node)
    image = _to_nchw(args[0], layout)
    kernel = _hw(node.attr_ints("ksize"), layout)
    strides = _hw(node.attr_ints("strides"), layout)
    padding = _conv_padding(node, _image_hw(image), kernel, strides, (1, 1))
    image = F.pad(image, padding, value=float("-inf"))
    return [_from_nchw(F.max_pool2d(image, kernel, strides), layout)]


@_op("ResizeBilinear")
def _resize_bilinear(node: GraphNode, args: list[torch.Tensor]) -> list[torch.Tensor]:
    align_corners = node.attr_bool("align_corners", False)
    if not align_corners and not node.attr_bool("half_pixel_centers", False):
        # Legacy TensorFlow sampling (no half-pixel offset) has no PyTorch equivalent.
        raise GraphModelError(f"Node {node.name!r} uses legacy bilinear sampling.")
    image = args[0].permute(0, 3, 1, 2)  # ResizeBilinear is always NHWC
    size = _as_ints(args[1])
    resized = F.interpolate(image, size=size, mode="bilinear", align_corners=align_corners)
    return [resized.permute(0, 2, 3, 1)]


SUPPORTED_OPS = frozenset({"Placeholder", "Const", *_OPS})
