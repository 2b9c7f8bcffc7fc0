"""Tests of the TensorFlow.js reader, the NanoDet modules and converter, and detector loading."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812 - the name PyTorch's docs use

from mp4e.errors import InvalidParameter
from mp4e.vision import tfjs
from mp4e.vision.detection import Detections, load_detector

# Importing MMDetection runs code that torch 2.13 and mmcv 2.1 flag as deprecated.
pytestmark = [
    pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:`torch.jit.interface` is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings(
        "ignore:``MultiScaleDeformableAttention`` has been moved:ImportWarning"
    ),
]

REPO = Path(__file__).resolve().parents[2]
DATA_DIR = Path(os.environ.get("MP4E_DATA_DIR", REPO / "var"))
CACHE_DIR = Path(os.environ.get("MP4E_CACHE_DIR", Path.home() / ".cache" / "mp4e"))
MODELS_DIR = DATA_DIR / "models"
GRAPH_JSON = CACHE_DIR / "nanodet-tfjs-3.0.4" / "nanodet.json"
CHECKPOINT = MODELS_DIR / "nanodet" / "nanodet_g_416.pth"
VTEST = DATA_DIR / "samples" / "vtest.avi"

requires_graph = pytest.mark.skipif(
    not GRAPH_JSON.is_file(), reason=f"{GRAPH_JSON} is missing; run scripts/fetch_models"
)
requires_checkpoint = pytest.mark.skipif(
    not CHECKPOINT.is_file(), reason=f"{CHECKPOINT} is missing; run scripts/fetch_models"
)


# --- a small graph model written by hand -------------------------------------------------


def _const(name: str, dtype: str = "DT_FLOAT") -> dict:
    return {"name": name, "op": "Const", "attr": {"dtype": {"type": dtype}}}


def _node(name: str, op: str, inputs: list[str], **attrs: dict) -> dict:
    return {"name": name, "op": op, "input": inputs, "attr": attrs}


def _b64(text: str) -> dict:
    import base64

    return {"s": base64.b64encode(text.encode()).decode()}


def write_small_graph(directory: Path, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Write a graph model using every op NanoDet needs; return its float weights.

    input (1, 3, 8, 8) NCHW -> pad -> NHWC -> conv 3x3 stride 2 + bias -> LeakyRelu
    -> max pool 3x3 stride 2 with -inf padding, and, in parallel, a bilinear resize of the
    activation to 8x8 -> concat on channels -> sigmoid -> split 2/2 -> reshape -> transpose.
    """
    kernel = rng.normal(size=(3, 3, 3, 4)).astype(np.float32)
    bias = rng.normal(size=4).astype(np.float32)
    entries = [
        ("pad", np.array([[0, 0], [0, 0], [1, 1], [1, 1]], np.int32), None),
        ("perm_nhwc", np.array([0, 2, 3, 1], np.int32), None),
        ("kernel", kernel, "float16"),
        ("bias", bias, "uint8"),
        ("pool_pad", np.array([[0, 0], [1, 1], [1, 1], [0, 0]], np.int32), None),
        ("minus_inf", np.array(-np.inf, np.float32), "float16"),
        ("size", np.array([8, 8], np.int32), None),
        ("axis", np.array(3, np.int32), None),
        ("splits", np.array([2, -1], np.int32), None),
        ("shape", np.array([1, -1, 2], np.int32), None),
        ("perm_last", np.array([0, 2, 1], np.int32), None),
    ]
    manifest, blobs, decoded = [], [], {}
    for name, array, quantisation in entries:
        entry: dict = {
            "name": name,
            "shape": list(array.shape),
            "dtype": "int32" if array.dtype == np.int32 else "float32",
        }
        if quantisation == "float16":
            stored = array.astype("<f2")
            entry["quantization"] = {"dtype": "float16", "original_dtype": "float32"}
            decoded[name] = stored.astype(np.float32)
        elif quantisation == "uint8":
            low, scale = float(array.min()), float(np.ptp(array)) / 255
            stored = np.round((array - low) / scale).astype(np.uint8)
            entry["quantization"] = {"dtype": "uint8", "scale": scale, "min": low}
            decoded[name] = stored.astype(np.float32) * scale + low
        else:
            stored = array.astype("<i4" if array.dtype == np.int32 else "<f4")
        manifest.append(entry)
        blobs.append(stored.tobytes())
    (directory / "weights.bin").write_bytes(b"".join(blobs))

    nodes = [
        {"name": "input", "op": "Placeholder", "attr": {"dtype": {"type": "DT_FLOAT"}}},
        *(_const(name) for name, _, _ in entries),
        _node("padded", "Pad", ["input", "pad"]),
        _node("nhwc", "Transpose", ["padded", "perm_nhwc"]),
        _node(
            "conv",
            "Conv2D",
            ["nhwc", "kernel"],
            strides={"list": {"i": ["1", "2", "2", "1"]}},
            padding=_b64("VALID"),
            data_format=_b64("NHWC"),
        ),
        _node("biased", "AddV2", ["conv", "bias"]),
        _node("act", "LeakyRelu", ["biased"], alpha={"f": 0.1}),
        _node("pool_in", "PadV2", ["act", "pool_pad", "minus_inf"]),
        _node(
            "pool",
            "MaxPool",
            ["pool_in"],
            ksize={"list": {"i": ["1", "3", "3", "1"]}},
            strides={"list": {"i": ["1", "2", "2", "1"]}},
            padding=_b64("VALID"),
        ),
        _node(
            "resized",
            "ResizeBilinear",
            ["act", "size"],
            half_pixel_centers={"b": True},
            align_corners={"b": False},
        ),
        _node("joined", "ConcatV2", ["resized", "resized", "axis"]),
        _node("squashed", "Sigmoid", ["joined"]),
        _node("parts", "SplitV", ["squashed", "splits", "axis"]),
        _node("flat", "Reshape", ["parts:1", "shape"]),
        _node("out_rest", "Transpose", ["flat", "perm_last"]),
        _node("out_pool", "Identity", ["pool"]),
    ]
    document = {
        "format": "graph-model",
        "modelTopology": {"node": nodes},
        "weightsManifest": [{"paths": ["weights.bin"], "weights": manifest}],
        "signature": {
            "inputs": {"input:0": {"name": "input:0"}},
            "outputs": {"out_pool:0": {"name": "out_pool:0"}, "out_rest:0": {}},
        },
    }
    (directory / "model.json").write_text(json.dumps(document))
    return {"kernel": decoded["kernel"], "bias": decoded["bias"]}


def test_load_graph_model_decodes_quantised_weights(tmp_path: Path) -> None:
    expected = write_small_graph(tmp_path, np.random.default_rng(1))

    graph = tfjs.load_graph_model(tmp_path / "model.json")

    assert graph.input_names == ["input"]
    assert graph.output_names == ["out_pool", "out_rest"]
    np.testing.assert_array_equal(graph.weights["kernel"], expected["kernel"])
    np.testing.assert_allclose(graph.weights["bias"], expected["bias"], rtol=1e-6)
    assert graph.weights["minus_inf"] == -np.inf
    assert graph.weights["splits"].tolist() == [2, -1]


def test_run_graph_matches_torch_reference(tmp_path: Path) -> None:
    weights = write_small_graph(tmp_path, np.random.default_rng(2))
    graph = tfjs.load_graph_model(tmp_path / "model.json")
    image = torch.rand(1, 3, 8, 8)

    outputs = tfjs.run_graph(graph, {"input": image})

    kernel = torch.from_numpy(weights["kernel"]).permute(3, 2, 0, 1)
    act = F.leaky_relu(
        F.conv2d(image, kernel, torch.from_numpy(weights["bias"]), stride=2, padding=1), 0.1
    )
    pooled = F.max_pool2d(act, 3, 2, padding=1)
    resized = F.interpolate(act, size=(8, 8), mode="bilinear", align_corners=False)
    joined = torch.sigmoid(torch.cat([resized, resized], dim=1))
    rest = joined[:, 2:].permute(0, 2, 3, 1).reshape(1, -1, 2).transpose(1, 2)
    torch.testing.assert_close(outputs["out_pool"], pooled.permute(0, 2, 3, 1))
    torch.testing.assert_close(outputs["out_rest"], rest)


def test_load_graph_model_rejects_short_shard(tmp_path: Path) -> None:
    write_small_graph(tmp_path, np.random.default_rng(3))
    shard = tmp_path / "weights.bin"
    shard.write_bytes(shard.read_bytes()[:-10])

    with pytest.raises(tfjs.GraphModelError, match="end of its shard"):
        tfjs.load_graph_model(tmp_path / "model.json")


def test_load_graph_model_rejects_other_json(tmp_path: Path) -> None:
    path = tmp_path / "model.json"
    path.write_text(json.dumps({"format": "layers-model"}))

    with pytest.raises(tfjs.GraphModelError, match=r"not a TensorFlow\.js graph model"):
        tfjs.load_graph_model(path)


def test_run_graph_rejects_unsupported_op(tmp_path: Path) -> None:
    write_small_graph(tmp_path, np.random.default_rng(4))
    document = json.loads((tmp_path / "model.json").read_text())
    for node in document["modelTopology"]["node"]:
        if node["name"] == "squashed":
            node["op"] = "Softplus"
    (tmp_path / "model.json").write_text(json.dumps(document))
    graph = tfjs.load_graph_model(tmp_path / "model.json")

    with pytest.raises(tfjs.GraphModelError, match="unsupported operation Softplus"):
        tfjs.run_graph(graph, {"input": torch.rand(1, 3, 8, 8)})


# --- NanoDet modules ---------------------------------------------------------------------


def test_decode_level_measures_from_cell_centres() -> None:
    from mp4e.vision.nanodet import decode_level

    stride, reg_max = 8, 10
    class_logits = torch.full((2, 2, 3), -20.0)
    class_logits[1, 1, 2] = 20.0  # class 1 at row 1, col 2
    box_logits = torch.full((4 * (reg_max + 1), 2, 3), -50.0)
    for side, distance_bins in enumerate((1, 2, 3, 4)):
        box_logits[side * (reg_max + 1) + distance_bins] = 50.0

    boxes, scores = decode_level(class_logits, box_logits, stride, reg_max)

    cell = 1 * 3 + 2  # row-major
    centre_x, centre_y = (2 + 0.5) * stride, (1 + 0.5) * stride
    expected = [centre_x - 8, centre_y - 16, centre_x + 24, centre_y + 32]
    torch.testing.assert_close(boxes[cell], torch.tensor(expected))
    assert scores.shape == (6, 2)
    assert scores.argmax().item() == cell * 2 + 1


def build_nanodet():
    from mmdet.registry import MODELS
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    from mp4e.vision.nanodet import CONFIG_PATH

    init_default_scope("mmdet")
    return MODELS.build(Config.fromfile(str(CONFIG_PATH)).model).eval()


def test_nanodet_output_sizes_follow_strides() -> None:
    from mp4e.vision.nanodet import flat_outputs

    model = build_nanodet()

    with torch.no_grad():
        levels = flat_outputs(model, torch.zeros(1, 3, 416, 416))

    assert [scores.shape for scores, _ in levels] == [(1, 2704, 80), (1, 676, 80), (1, 169, 80)]
    assert [boxes.shape for _, boxes in levels] == [(1, 2704, 44), (1, 676, 44), (1, 169, 44)]


@requires_graph
def test_state_dict_from_graph_maps_every_weight() -> None:
    from mp4e.vision.nanodet import state_dict_from_graph

    graph = tfjs.load_graph_model(GRAPH_JSON)
    model = build_nanodet()

    state = state_dict_from_graph(graph, model)

    assert set(state) == set(model.state_dict())
    assert sum(tensor.numel() for tensor in state.values()) == 3_786_068


@requires_graph
def test_state_dict_from_graph_rejects_shape_mismatch() -> None:
    from mp4e.vision.nanodet import state_dict_from_graph

    graph = tfjs.load_graph_model(GRAPH_JSON)
    name = next(node.inputs[1][0] for node in graph.nodes_by_op("Conv2D"))
    graph.weights[name] = graph.weights[name][:, :, :, :-1]

    with pytest.raises(ValueError, match="has shape"):
        state_dict_from_graph(graph, build_nanodet())


@requires_graph
def test_state_dict_from_graph_rejects_unmapped_weight() -> None:
    from mp4e.vision.nanodet import state_dict_from_graph

    graph = tfjs.load_graph_model(GRAPH_JSON)
    graph.weights["extra/kernel"] = np.zeros((3, 3), dtype=np.float32)

    with pytest.raises(ValueError, match="extra/kernel"):
        state_dict_from_graph(graph, build_nanodet())


@requires_graph
@requires_checkpoint
def test_converted_checkpoint_matches_tfjs_graph() -> None:
    from mp4e.vision.nanodet import max_output_difference

    graph = tfjs.load_graph_model(GRAPH_JSON)
    detector = load_detector(None, None, "cpu", MODELS_DIR)
    # NanoDet's normalisation maps 0..255 pixels to about -2..2.
    batch = torch.rand(1, 3, 416, 416, generator=torch.Generator().manual_seed(5)) * 4 - 2

    difference = max_output_difference(graph, detector.model, batch)

    assert difference < 1e-4


@requires_checkpoint
def test_converted_checkpoint_loads_with_weights_only() -> None:
    checkpoint = torch.load(CHECKPOINT, weights_only=True)

    assert len(checkpoint["meta"]["dataset_meta"]["classes"]) == 80
    assert checkpoint["meta"]["dataset_meta"]["classes"][0] == "person"


@requires_checkpoint
@pytest.mark.skipif(not VTEST.is_file(), reason=f"{VTEST} is missing; run scripts/fetch_samples")
def test_nanodet_detector_finds_people_in_vtest() -> None:
    import av

    with av.open(str(VTEST)) as container:
        image = next(
            frame.to_ndarray(format="rgb24")
            for index, frame in enumerate(container.decode(video=0))
            if index == 50
        )
    detector = load_detector(None, None, "cpu", MODELS_DIR)

    found = detector.detect(image)

    people = found.select((found.labels == 0) & (found.scores > 0.6))
    assert len(people) >= 4
    assert (people.boxes_xyxy[:, [0, 2]] <= 768).all()
    assert (people.boxes_xyxy[:, [1, 3]] <= 576).all()
    assert (people.boxes_xyxy[:, 3] - people.boxes_xyxy[:, 1] > 40).all()


# --- load_detector -----------------------------------------------------------------------


def test_load_detector_reports_missing_default_model(tmp_path: Path) -> None:
    with pytest.raises(InvalidParameter) as caught:
        load_detector(None, None, "cpu", tmp_path)

    assert caught.value.field == "detector_config"
    assert str(tmp_path) in caught.value.message
    assert "fetch_models" in caught.value.message


def test_load_detector_rejects_config_without_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(InvalidParameter) as caught:
        load_detector(tmp_path / "model.py", None, "cpu", tmp_path)

    assert caught.value.field == "detector_checkpoint"


def test_load_detector_reports_missing_checkpoint(tmp_path: Path) -> None:
    from mp4e.vision.nanodet import CONFIG_PATH

    with pytest.raises(InvalidParameter) as caught:
        load_detector(CONFIG_PATH, tmp_path / "missing.pth", "cpu", tmp_path)

    assert caught.value.field == "detector_checkpoint"
    assert "missing.pth" in caught.value.message


def _save_random_checkpoint(path: Path, meta: dict) -> None:
    torch.save({"meta": meta, "state_dict": build_nanodet().state_dict()}, path)


def test_load_detector_accepts_numpy_in_meta(tmp_path: Path) -> None:
    from mp4e.vision.nanodet import CONFIG_PATH

    checkpoint = tmp_path / "official-style.pth"
    meta = {
        "dataset_meta": {"classes": ("a", "b", *(f"c{i}" for i in range(78)))},
        "best_score": np.float64(0.5),
        "hook_msgs": {"last_ckpt": np.array([1, 2, 3], dtype=np.int64)},
    }
    _save_random_checkpoint(checkpoint, meta)

    detector = load_detector(CONFIG_PATH, checkpoint, "cpu", tmp_path)
    found = detector.detect(np.zeros((120, 160, 3), dtype=np.uint8))

    assert detector.class_names[:2] == ("a", "b")
    assert isinstance(found, Detections)


def test_load_detector_rejects_pickled_objects(tmp_path: Path) -> None:
    from mp4e.vision.nanodet import CONFIG_PATH

    checkpoint = tmp_path / "pickled.pth"
    _save_random_checkpoint(checkpoint, {"args": argparse.Namespace(lr=0.1)})

    with pytest.raises(InvalidParameter) as caught:
        load_detector(CONFIG_PATH, checkpoint, "cpu", tmp_path)

    assert caught.value.field == "detector_checkpoint"
    assert "pickled.pth" in caught.value.message


def test_load_detector_reports_broken_config(tmp_path: Path) -> None:
    config = tmp_path / "broken.py"
    config.write_text("model = dict(\n")
    checkpoint = tmp_path / "model.pth"
    checkpoint.write_bytes(b"")

    with pytest.raises(InvalidParameter) as caught:
        load_detector(config, checkpoint, "cpu", tmp_path)

    assert caught.value.field == "detector_config"


def test_detector_rejects_grey_image(tmp_path: Path) -> None:
    from mp4e.vision.nanodet import CONFIG_PATH

    checkpoint = tmp_path / "random.pth"
    _save_random_checkpoint(checkpoint, {"dataset_meta": {"classes": ["x"] * 80}})
    detector = load_detector(CONFIG_PATH, checkpoint, "cpu", tmp_path)

    with pytest.raises(InvalidParameter, match="RGB uint8"):
        detector.detect(np.zeros((120, 160), dtype=np.uint8))


def test_load_detector_rejects_checkpoint_of_other_model(tmp_path: Path) -> None:
    from mp4e.vision.nanodet import CONFIG_PATH

    checkpoint = tmp_path / "other.pth"
    torch.save(
        {"meta": {"dataset_meta": {"classes": ["x"]}}, "state_dict": {"w": torch.ones(1)}},
        checkpoint,
    )

    with pytest.raises(InvalidParameter) as caught:
        load_detector(CONFIG_PATH, checkpoint, "cpu", tmp_path)

    assert caught.value.field == "detector_checkpoint"
    assert "does not fit" in caught.value.message


def test_load_detector_rejects_checkpoint_without_classes(tmp_path: Path) -> None:
    from mp4e.vision.nanodet import CONFIG_PATH

    checkpoint = tmp_path / "nameless.pth"
    _save_random_checkpoint(checkpoint, {})

    with pytest.raises(InvalidParameter) as caught:
        load_detector(CONFIG_PATH, checkpoint, "cpu", tmp_path)

    assert "names no classes" in caught.value.message


# mmdet 3.3's YOLOX code calls torch.cuda.amp.autocast (deprecated in torch) in its backbone
# and torch.meshgrid without `indexing` in its prior generator.
@pytest.mark.filterwarnings("ignore:`torch.cuda.amp.autocast:FutureWarning")
@pytest.mark.filterwarnings("ignore:torch.meshgrid:UserWarning")
def test_load_detector_loads_official_yolox_config(tmp_path: Path) -> None:
    import mmdet
    from mmdet.registry import MODELS
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    config = (
        Path(mmdet.__file__).parent / ".mim" / "configs" / "yolox" / "yolox_tiny_8xb8-300e_coco.py"
    )
    init_default_scope("mmdet")
    model = MODELS.build(Config.fromfile(str(config)).model)
    checkpoint = tmp_path / "yolox_tiny_random.pth"
    classes = [f"class {index}" for index in range(80)]
    torch.save(
        {"meta": {"dataset_meta": {"classes": classes}}, "state_dict": model.state_dict()},
        checkpoint,
    )

    detector = load_detector(config, checkpoint, "cpu", tmp_path)
    found = detector.detect(np.zeros((240, 320, 3), dtype=np.uint8))

    assert detector.class_names == tuple(classes)
    assert found.boxes_xyxy.shape[1] == 4


def test_load_detector_uses_detector_of_tracking_config(tmp_path: Path) -> None:
    from mp4e.vision.nanodet import CONFIG_PATH

    tracking_config = tmp_path / "bytetrack_nanodet.py"
    tracking_config.write_text(
        f"""
_base_ = [{str(CONFIG_PATH)!r}]
detector = _base_.model
detector.pop("data_preprocessor")
del _base_.model
model = dict(
    type="ByteTrack",
    data_preprocessor=dict(
        type="TrackDataPreprocessor",
        mean=[103.53, 116.28, 123.675],
        std=[57.375, 57.12, 58.395],
        pad_size_divisor=32,
        use_det_processor=True,
    ),
    detector=detector,
    tracker=dict(type="ByteTracker", motion=dict(type="KalmanFilter")),
)
test_dataloader = dict(
    dataset=dict(
        pipeline=[
            dict(
                type="TransformBroadcaster",
                transforms=[
                    dict(type="LoadImageFromFile"),
                    dict(type="Resize", scale=(416, 416), keep_ratio=False),
                    dict(type="LoadTrackAnnotations"),
                ],
            ),
            dict(type="PackTrackInputs"),
        ]
    )
)
"""
    )
    state = build_nanodet().state_dict()
    meta = {"dataset_meta": {"classes": [f"c{index}" for index in range(80)]}}
    plain = tmp_path / "plain.pth"
    torch.save({"meta": meta, "state_dict": state}, plain)
    prefixed = tmp_path / "tracking.pth"
    tracking_state = {f"detector.{key}": value for key, value in state.items()}
    torch.save({"meta": meta, "state_dict": tracking_state}, prefixed)
    image = np.random.default_rng(0).integers(0, 256, (240, 320, 3), dtype=np.uint8)

    from_tracking = load_detector(tracking_config, prefixed, "cpu", tmp_path).detect(image)
    from_plain = load_detector(CONFIG_PATH, plain, "cpu", tmp_path).detect(image)

    np.testing.assert_allclose(from_tracking.boxes_xyxy, from_plain.boxes_xyxy, atol=1e-4)
    np.testing.assert_allclose(from_tracking.scores, from_plain.scores, atol=1e-5)


def test_detector_batch_matches_single_images(tmp_path: Path) -> None:
    from mp4e.vision.nanodet import CONFIG_PATH

    checkpoint = tmp_path / "random.pth"
    _save_random_checkpoint(checkpoint, {"dataset_meta": {"classes": ["x"] * 80}})
    detector = load_detector(CONFIG_PATH, checkpoint, "cpu", tmp_path)
    rng = np.random.default_rng(9)
    images = [rng.integers(0, 256, (180, 240, 3), dtype=np.uint8) for _ in range(2)]

    batch = detector.detect_batch(images)

    for image, found in zip(images, batch, strict=True):
        single = detector.detect(image)
        np.testing.assert_allclose(found.boxes_xyxy, single.boxes_xyxy, atol=1e-3)
        np.testing.assert_allclose(found.scores, single.scores, atol=1e-5)


def test_coco_classes_match_mmdetection() -> None:
    from mmdet.datasets import CocoDataset

    from mp4e.vision.coco import COCO_CLASSES

    assert tuple(CocoDataset.METAINFO["classes"]) == COCO_CLASSES
