"""Object detection on RGB frames: the `Detector` protocol and its MMDetection implementation.

`load_detector` builds any MMDetection 3.x model from a config file and a checkpoint. With
neither given it loads the NanoDet model that `scripts/fetch_models` converts into
`<models_dir>/nanodet/`.

Checkpoint trust: since torch 2.6, `torch.load` (which MMEngine calls) only unpickles tensors
and plain Python containers. Our converted checkpoint needs nothing more. Official OpenMMLab
checkpoints often keep numpy arrays and scalars in their `meta`, so loading also allows the
numpy types in `NUMPY_CHECKPOINT_GLOBALS` (array and scalar reconstruction, and dtypes). A
checkpoint that pickles any other object is rejected with `InvalidParameter`.
"""

from __future__ import annotations

import logging
import pickle
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from mp4e.errors import InvalidParameter

logger = logging.getLogger(__name__)

DEFAULT_MODEL_SUBDIR = "nanodet"
DEFAULT_CONFIG_NAME = "nanodet_g_416.py"
DEFAULT_CHECKPOINT_NAME = "nanodet_g_416.pth"


def _numpy_checkpoint_globals() -> list[Any]:
    multiarray: Any = np.core.multiarray
    dtype_classes = {
        type(np.dtype(name))
        for name in (
            "bool",
            "int8",
            "int16",
            "int32",
            "int64",
            "uint8",
            "uint16",
            "uint32",
            "uint64",
            "float16",
            "float32",
            "float64",
        )
    }
    return [multiarray._reconstruct, multiarray.scalar, np.ndarray, np.dtype, *dtype_classes]


NUMPY_CHECKPOINT_GLOBALS = _numpy_checkpoint_globals()


@dataclass(frozen=True)
class Detections:
    """Detections in one frame, as parallel arrays.

    `boxes_xyxy` is float32 `(N, 4)` in frame pixels, `scores` float32 `(N,)` in 0..1,
    `labels` int64 `(N,)` indexing `class_names`.
    """

    boxes_xyxy: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]

    def __post_init__(self) -> None:
        boxes = np.asarray(self.boxes_xyxy, dtype=np.float32).reshape(-1, 4)
        scores = np.asarray(self.scores, dtype=np.float32).reshape(-1)
        labels = np.asarray(self.labels, dtype=np.int64).reshape(-1)
        if not len(boxes) == len(scores) == len(labels):
            raise ValueError(
                f"Detections need as many scores and labels as boxes; got {len(boxes)} boxes, "
                f"{len(scores)} scores and {len(labels)} labels."
            )
        object.__setattr__(self, "boxes_xyxy", boxes)
        object.__setattr__(self, "scores", scores)
        object.__setattr__(self, "labels", labels)
        object.__setattr__(self, "class_names", tuple(self.class_names))

    @classmethod
    def empty(cls, class_names: Sequence[str]) -> Detections:
        return cls(np.zeros((0, 4)), np.zeros(0), np.zeros(0), tuple(class_names))

    def __len__(self) -> int:
        return len(self.scores)

    def select(self, mask_or_indices: np.ndarray) -> Detections:
        """Return the detections picked by a boolean mask or an index array."""
        return Detections(
            self.boxes_xyxy[mask_or_indices],
            self.scores[mask_or_indices],
            self.labels[mask_or_indices],
            self.class_names,
        )

    def label_names(self) -> list[str]:
        return [self.class_names[label] for label in self.labels]


@runtime_checkable
class Detector(Protocol):
    """Anything that finds objects in an RGB uint8 `(H, W, 3)` image.

    Implementations may also offer `detect_batch(images) -> list[Detections]`, which runs
    several images as one batch (as `MMDetDetector` does).
    """

    @property
    def class_names(self) -> tuple[str, ...]: ...

    def detect(self, image_rgb: np.ndarray) -> Detections: ...


class MMDetDetector:
    """A `Detector` over an MMDetection model with `cfg` and `dataset_meta["classes"]` set.

    Limitation: on CPU, PyTorch's intra-op threads busy-wait, so a forward pass can get much
    slower than on one thread when other processes keep the cores busy. NanoDet on a 768x576
    frame, 2 cores, load average 6.5: 0.84 s with 2 threads, 0.075 s with 1 thread. Choose
    `torch.set_num_threads` for the deployment.
    """

    def __init__(self, model: Any) -> None:
        from mmcv.transforms import Compose

        self.model = model
        self._class_names = tuple(str(name) for name in model.dataset_meta["classes"])
        # Annotations do not exist at inference time, and images come as arrays, not files.
        steps = [
            step
            for step in get_pipeline_steps(model.cfg)
            if "Annotations" not in str(step.get("type"))
        ]
        steps[0] = {"type": "mmdet.LoadImageFromNDArray"}
        self._pipeline = Compose(steps)

    @property
    def class_names(self) -> tuple[str, ...]:
        return self._class_names

    def detect(self, image_rgb: np.ndarray) -> Detections:
        return self.detect_batch([image_rgb])[0]

    def detect_batch(self, images: Sequence[np.ndarray]) -> list[Detections]:
        """Run the model on RGB uint8 images as one batch; boxes are in each image's pixels."""
        import torch

        inputs, samples = [], []
        for image in images:
            _check_image(image)
            # MMDetection pipelines expect BGR, the channel order of cv2.imread.
            packed = self._pipeline({"img": np.ascontiguousarray(image[..., ::-1]), "img_id": 0})
            inputs.append(packed["inputs"])
            samples.append(packed["data_samples"])

        with torch.no_grad():
            results = self.model.test_step({"inputs": inputs, "data_samples": samples})
        return [self._to_detections(result.pred_instances) for result in results]

    def _to_detections(self, instances: Any) -> Detections:
        return Detections(
            instances.bboxes.detach().cpu().numpy(),
            instances.scores.detach().cpu().numpy(),
            instances.labels.detach().cpu().numpy(),
            self._class_names,
        )


def _check_image(image: np.ndarray) -> None:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise InvalidParameter(
            f"A frame must be an RGB uint8 array of shape (H, W, 3); got {image.dtype} "
            f"{image.shape}."
        )


def default_model_paths(models_dir: Path) -> tuple[Path, Path]:
    """Return the config and checkpoint paths of the converted NanoDet under `models_dir`."""
    directory = models_dir / DEFAULT_MODEL_SUBDIR
    return directory / DEFAULT_CONFIG_NAME, directory / DEFAULT_CHECKPOINT_NAME


def load_detector(
    config: Path | None, checkpoint: Path | None, device: str, models_dir: Path
) -> MMDetDetector:
    """Load an MMDetection detector, by default the converted NanoDet under `models_dir`.

    Pass both `config` and `checkpoint` to use another model: a detector config, or a
    multi-object tracking config (such as MMDetection's ByteTrack configs) whose
    `model.detector` is then used alone. Raises `InvalidParameter` (with the path) when only
    one of them is given, a file is missing, or the config cannot be parsed. It is also raised
    when the checkpoint is unreadable, does not fit the model, names no classes, or contains
    objects other than tensors, plain Python values and numpy data.
    """
    if (config is None) != (checkpoint is None):
        raise InvalidParameter(
            "Give both a detector config and a checkpoint, or neither for the default model.",
            field="detector_config" if config is None else "detector_checkpoint",
        )
    if config is None or checkpoint is None:
        config, checkpoint = default_model_paths(models_dir)
        hint = "Run scripts/fetch_models to download and convert the default NanoDet model."
    else:
        hint = "Check MP4E_DETECTOR_CONFIG and MP4E_DETECTOR_CHECKPOINT."
    for path, field in ((config, "detector_config"), (checkpoint, "detector_checkpoint")):
        if not path.is_file():
            raise InvalidParameter(
                f"The detector file {path} does not exist. {hint}",
                field=field,
                details={"path": str(path)},
            )

    model = _build_model(_read_config(config))
    _load_weights(model, checkpoint)
    model.to(device).eval()
    logger.info("Loaded detector %s with checkpoint %s on %s", config, checkpoint, device)
    return MMDetDetector(model)


def _read_config(path: Path) -> Any:
    """Parse an MMDetection config and reduce a tracking config to its detector."""
    from mmengine.config import Config

    try:
        config = Config.fromfile(str(path))
    except Exception as exc:  # mmengine raises many exception types for a bad config file
        raise InvalidParameter(
            f"The detector config {path} cannot be loaded: {exc}",
            field="detector_config",
            details={"path": str(path)},
        ) from exc
    model = config.get("model")
    if not model:
        raise InvalidParameter(
            f"The detector config {path} defines no model.",
            field="detector_config",
            details={"path": str(path)},
        )
    if "detector" in model:
        _use_tracking_detector(config)
    return config


def _use_tracking_detector(config: Any) -> None:
    """Turn a tracking config (e.g. ByteTrack) into a config of its detector alone.

    The detector gets a `DetDataPreprocessor` with the tracker's normalisation and padding,
    and the per-video test pipeline becomes a per-image one.
    """
    tracking = config.model
    preprocessor = {"type": "DetDataPreprocessor"}
    for key in ("mean", "std", "bgr_to_rgb", "rgb_to_bgr", "pad_size_divisor", "pad_value"):
        if key in tracking.get("data_preprocessor", {}):
            preprocessor[key] = tracking.data_preprocessor[key]
    detector = tracking.detector
    detector.setdefault("data_preprocessor", preprocessor)
    config.model = detector

    steps = []
    for step in get_pipeline_steps(config):
        if step.get("type") == "TransformBroadcaster":
            steps.extend(step.transforms)
        elif step.get("type") == "PackTrackInputs":
            steps.append({"type": "PackDetInputs", "meta_keys": _PACKED_META_KEYS})
        else:
            steps.append(step)
    config.test_dataloader = {"dataset": {"pipeline": steps}}


_PACKED_META_KEYS = ("img_id", "img_path", "ori_shape", "img_shape", "scale_factor")


def get_pipeline_steps(config: Any) -> list[Any]:
    """Return a copy of the config's test pipeline (`test_dataloader.dataset.pipeline`)."""
    from mmdet.utils import get_test_pipeline_cfg

    return list(get_test_pipeline_cfg(config.copy()))


def _build_model(config: Any) -> Any:
    from mmdet.registry import MODELS
    from mmengine.registry import init_default_scope

    init_default_scope(config.get("default_scope", "mmdet"))
    config.model.pop("train_cfg", None)
    model = MODELS.build(config.model)
    model.cfg = config
    return model


def _load_weights(model: Any, checkpoint: Path) -> None:
    """Load a checkpoint into `model` with `torch.load(weights_only=True)` and check its keys.

    The prefixes `module.` (distributed training) and `detector.` (tracking models) are
    removed from the keys. Keys that the model lacks are ignored with a warning, and
    parameters that the checkpoint lacks raise `InvalidParameter`.
    """
    import torch

    details = {"path": str(checkpoint)}
    try:
        with torch.serialization.safe_globals(NUMPY_CHECKPOINT_GLOBALS):
            loaded = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise InvalidParameter(
            f"The detector checkpoint {checkpoint} contains objects that are not tensors, "
            "plain Python values or numpy data, so it is not loaded. Re-save its state_dict "
            "and meta with plain types.",
            field="detector_checkpoint",
            details={**details, "reason": str(exc)},
        ) from exc
    except (OSError, RuntimeError, EOFError) as exc:
        raise InvalidParameter(
            f"The detector checkpoint {checkpoint} cannot be read: {exc}",
            field="detector_checkpoint",
            details=details,
        ) from exc

    state = loaded.get("state_dict", loaded) if isinstance(loaded, dict) else None
    if not isinstance(state, dict):
        raise InvalidParameter(
            f"The detector checkpoint {checkpoint} contains no state_dict.",
            field="detector_checkpoint",
            details=details,
        )
    state = {re.sub(r"^(module\.|detector\.)", "", key): value for key, value in state.items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing:
        raise InvalidParameter(
            f"The detector checkpoint {checkpoint} does not fit the config: it lacks "
            f"{len(missing)} parameters, e.g. {', '.join(missing[:3])}.",
            field="detector_checkpoint",
            details={**details, "missing_keys": missing[:20]},
        )
    if unexpected:
        logger.warning(
            "Ignored %d checkpoint keys that the model lacks, e.g. %s",
            len(unexpected),
            ", ".join(unexpected[:3]),
        )

    meta = loaded.get("meta") or {}
    classes = (meta.get("dataset_meta") or {}).get("classes") or meta.get("CLASSES")
    if not classes:
        raise InvalidParameter(
            f"The detector checkpoint {checkpoint} names no classes (meta.dataset_meta.classes).",
            field="detector_checkpoint",
            details=details,
        )
    model.dataset_meta = {"classes": tuple(classes)}
