"""Zero-shot labelling of image crops with a CLIP model from `transformers`.

CLIP scores how well each text prompt describes an image. Tracking uses it for requested
labels that the detector has no class for (e.g. "product"): crops of tracked objects are
compared with one prompt per candidate label. The weights and tokenizer come from a local
directory in the Hugging Face layout (`config.json`, the weights, the processor config and
tokenizer files), for example one written by `save_pretrained`. Nothing is downloaded.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mp4e.errors import InvalidParameter

logger = logging.getLogger(__name__)

DEFAULT_PROMPT = "a photo of a {}"


class ClipLabeler:
    """Choose, for each image crop, the best-matching label among candidate labels."""

    def __init__(
        self, model: Any, processor: Any, *, device: str = "cpu", prompt: str = DEFAULT_PROMPT
    ) -> None:
        self.model = model.to(device).eval()
        self.processor = processor
        self.device = device
        self.prompt = prompt

    @classmethod
    def from_path(
        cls, path: Path, *, device: str = "cpu", prompt: str = DEFAULT_PROMPT
    ) -> ClipLabeler:
        """Load a `CLIPModel` and its processor from a local directory.

        Raises `InvalidParameter` (field `clip_checkpoint`) when the directory is missing or
        does not contain a loadable CLIP model and processor.
        """
        from transformers import CLIPModel, CLIPProcessor

        if not path.is_dir():
            raise InvalidParameter(
                f"The CLIP checkpoint directory {path} does not exist. Set MP4E_CLIP_CHECKPOINT "
                "to a directory saved with transformers' save_pretrained.",
                field="clip_checkpoint",
                details={"path": str(path)},
            )
        try:
            model = CLIPModel.from_pretrained(path, local_files_only=True)
            processor = CLIPProcessor.from_pretrained(path, local_files_only=True)
        except (OSError, ValueError, KeyError) as exc:
            raise InvalidParameter(
                f"The CLIP checkpoint {path} cannot be loaded: {exc}",
                field="clip_checkpoint",
                details={"path": str(path)},
            ) from exc
        logger.info("Loaded CLIP model from %s on %s", path, device)
        return cls(model, processor, device=device, prompt=prompt)

    def label_probabilities(
        self, images: Sequence[np.ndarray], labels: Sequence[str]
    ) -> np.ndarray:
        """Return float32 `(len(images), len(labels))` probabilities; each row sums to 1.

        `images` are RGB uint8 `(H, W, 3)` arrays of any size of at least 1x1 pixel.
        """
        import torch

        if not labels:
            raise ValueError("CLIP labelling needs at least one candidate label.")
        if not images:
            return np.zeros((0, len(labels)), dtype=np.float32)
        for image in images:
            if image.ndim != 3 or image.shape[2] != 3 or min(image.shape[:2]) < 1:
                raise ValueError(f"A crop must be an RGB (H, W, 3) array; got {image.shape}.")

        prompts = [self.prompt.format(label) for label in labels]
        inputs = self.processor(
            text=prompts, images=list(images), return_tensors="pt", padding=True
        )
        inputs = {name: tensor.to(self.device) for name, tensor in inputs.items()}
        with torch.no_grad():
            logits = self.model(**inputs).logits_per_image
        return logits.softmax(dim=-1).float().cpu().numpy()

    def label_crops(
        self, images: Sequence[np.ndarray], labels: Sequence[str]
    ) -> list[tuple[str, float]]:
        """Return for each crop the most probable label and its probability."""
        probabilities = self.label_probabilities(images, labels)
        best = probabilities.argmax(axis=1)
        return [
            (labels[index], float(row[index]))
            for index, row in zip(best, probabilities, strict=True)
        ]
