#!/usr/bin/env python3
"""Convert a TensorFlow.js NanoDet graph model into an MMDetection checkpoint and config.

    python scripts/convert_nanodet.py path/to/nanodet.json OUTPUT_DIR

The weight shards named in the JSON's manifest must sit beside it. The converted model is
checked against the graph on a random input before anything is written. scripts/fetch_models
runs this conversion on the published weights.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_json", type=Path, help="the graph model's model.json file")
    parser.add_argument("output_dir", type=Path, help="directory for the .pth and config files")
    parser.add_argument(
        "--source", default="", help="where the weights came from, stored in the checkpoint"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="[convert_nanodet] %(message)s")

    from mp4e.vision.nanodet import convert_tfjs_checkpoint
    from mp4e.vision.tfjs import GraphModelError

    try:
        checkpoint = convert_tfjs_checkpoint(args.model_json, args.output_dir, source=args.source)
    except (GraphModelError, ValueError) as exc:
        parser.exit(1, f"convert_nanodet: {exc}\n")
    print(checkpoint)
    return 0


if __name__ == "__main__":
    sys.exit(main())
