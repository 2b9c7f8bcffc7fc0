"""Tests of CLIP crop labelling with a tiny random CLIP model saved to disk."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mp4e.errors import InvalidParameter
from mp4e.vision.clip import ClipLabeler
from mp4e.vision.detection import Detections
from mp4e.vision.pipeline import plan_labels, track_objects

# Importing MMDetection runs code that torch 2.13 and mmcv 2.1 flag as deprecated.
pytestmark = [
    pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:`torch.jit.interface` is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings(
        "ignore:``MultiScaleDeformableAttention`` has been moved:ImportWarning"
    ),
]

LABELS = ["product", "person", "dog"]
CLASS_NAMES = ("person", "bottle")


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Save a tiny random CLIP model with a byte-level tokenizer and a 32x32 image processor.

    The vocabulary is the 256 byte symbols, each also with the end-of-word mark, and no BPE
    merges, so every word is tokenised letter by letter.
    """
    import torch
    from tokenizers import pre_tokenizers
    from transformers import (
        CLIPConfig,
        CLIPImageProcessor,
        CLIPModel,
        CLIPProcessor,
        CLIPTokenizer,
    )

    symbols = sorted(pre_tokenizers.ByteLevel.alphabet())
    tokens = [
        *symbols,
        *(symbol + "</w>" for symbol in symbols),
        "<|startoftext|>",
        "<|endoftext|>",
    ]
    vocab = {token: index for index, token in enumerate(tokens)}
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[])
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
    )
    layers = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2}
    config = CLIPConfig(
        text_config={
            **layers,
            "num_attention_heads": 4,
            "vocab_size": len(vocab),
            "max_position_embeddings": 77,
            "bos_token_id": vocab["<|startoftext|>"],
            "eos_token_id": vocab["<|endoftext|>"],
            "pad_token_id": vocab["<|endoftext|>"],
        },
        vision_config={**layers, "num_attention_heads": 4, "image_size": 32, "patch_size": 8},
        projection_dim=16,
    )
    torch.manual_seed(0)
    directory = tmp_path_factory.mktemp("clip")
    CLIPModel(config).save_pretrained(directory)
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(directory)
    return directory


def crops() -> list[np.ndarray]:
    rng = np.random.default_rng(3)
    sizes = [(40, 20), (5, 9), (100, 100), (1, 1)]
    return [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for height, width in sizes]


def test_clip_labeler_returns_given_labels(clip_dir: Path) -> None:
    labeler = ClipLabeler.from_path(clip_dir)

    results = labeler.label_crops(crops(), LABELS)

    assert len(results) == 4
    assert all(label in LABELS for label, _ in results)
    assert all(0 < score <= 1 for _, score in results)


def test_clip_labeler_probabilities_sum_to_one(clip_dir: Path) -> None:
    labeler = ClipLabeler.from_path(clip_dir)

    probabilities = labeler.label_probabilities(crops(), LABELS)

    assert probabilities.shape == (4, 3)
    assert np.isfinite(probabilities).all()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


def test_clip_labeler_is_deterministic(clip_dir: Path) -> None:
    first = ClipLabeler.from_path(clip_dir).label_crops(crops(), LABELS)

    second = ClipLabeler.from_path(clip_dir).label_crops(crops(), LABELS)

    assert [label for label, _ in first] == [label for label, _ in second]
    np.testing.assert_allclose([s for _, s in first], [s for _, s in second], rtol=1e-6)


def test_clip_labeler_returns_nothing_for_no_crops(clip_dir: Path) -> None:
    labeler = ClipLabeler.from_path(clip_dir)

    assert labeler.label_crops([], LABELS) == []


def test_clip_labeler_rejects_empty_labels(clip_dir: Path) -> None:
    labeler = ClipLabeler.from_path(clip_dir)

    with pytest.raises(ValueError, match="candidate label"):
        labeler.label_crops(crops(), [])


def test_clip_labeler_from_path_rejects_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(InvalidParameter) as caught:
        ClipLabeler.from_path(tmp_path / "absent")

    assert caught.value.field == "clip_checkpoint"
    assert "absent" in caught.value.message


def test_clip_labeler_from_path_rejects_directory_without_model(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "clip"}))

    with pytest.raises(InvalidParameter) as caught:
        ClipLabeler.from_path(tmp_path)

    assert caught.value.field == "clip_checkpoint"


class StillDetector:
    """Finds the same person and bottle in every frame."""

    class_names = CLASS_NAMES

    def detect(self, image_rgb: np.ndarray) -> Detections:
        boxes = [[20, 30, 60, 110], [150, 60, 180, 120]]
        return Detections(np.array(boxes, dtype=np.float32), [0.9, 0.8], [0, 1], CLASS_NAMES)


class Frame:
    def __init__(self, index: int) -> None:
        self.index = index
        self.time_s = index / 10
        self.image = np.random.default_rng(index).integers(0, 256, (160, 240, 3), dtype=np.uint8)


def test_track_objects_labels_tracks_with_clip(clip_dir: Path) -> None:
    labeler = ClipLabeler.from_path(clip_dir)
    frames = [Frame(index) for index in range(6)]

    tracks = track_objects(frames, StillDetector(), labels=["person", "product"], clip=labeler)

    person = [track for track in tracks if track.label == "person"]
    others = [track for track in tracks if track.label != "person"]
    assert len(person) == 1
    assert person[0].boxes_norm[0].tolist() == pytest.approx(
        [20 / 240, 30 / 160, 60 / 240, 110 / 160]
    )
    assert all(track.label == "product" for track in others)
    assert len(others) <= 1


@pytest.mark.parametrize(
    ("labels", "direct", "clip_labels"),
    [
        pytest.param(None, {"person": None, "bottle": None}, (), id="no-labels"),
        pytest.param(["person"], {"person": "person"}, (), id="detector-class"),
        pytest.param(["pedestrian"], {"person": "pedestrian"}, (), id="alias"),
        pytest.param(["product"], {"person": None, "bottle": None}, ("product",), id="clip-only"),
        pytest.param(
            ["person", "logo"], {"person": "person", "bottle": None}, ("logo",), id="mixed"
        ),
    ],
)
def test_plan_labels_routes_labels(
    labels: list[str] | None, direct: dict[str, str | None], clip_labels: tuple[str, ...]
) -> None:
    plan = plan_labels(labels, CLASS_NAMES, clip_available=True)

    planned = {
        CLASS_NAMES[index]: plan.group_label[group] for index, group in plan.group_of_class.items()
    }
    assert planned == direct
    assert plan.clip_labels == clip_labels


def test_plan_labels_rejects_blank_label() -> None:
    with pytest.raises(InvalidParameter) as caught:
        plan_labels(["  "], CLASS_NAMES, clip_available=True)

    assert caught.value.field == "labels"
