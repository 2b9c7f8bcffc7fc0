"""Local file storage under the data directory."""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from pathlib import Path

from mp4e.settings import Settings

logger = logging.getLogger(__name__)


class Storage:
    """Layout of the data directory: `videos/<video id>/` for a source and its thumbnail,
    `exports/<video id>/` for exports, `incoming/` for uploads still being received."""

    def __init__(self, settings: Settings) -> None:
        self.root = settings.data_dir.resolve()
        self.videos_dir = self.root / "videos"
        self.exports_dir = self.root / "exports"
        self.incoming_dir = self.root / "incoming"

    def ensure_dirs(self) -> None:
        for directory in (self.videos_dir, self.exports_dir, self.incoming_dir):
            directory.mkdir(parents=True, exist_ok=True)

    def clear_incoming(self) -> None:
        """Delete uploads left half-received by a previous process."""
        for leftover in self.incoming_dir.glob("*"):
            leftover.unlink(missing_ok=True)

    def new_incoming_path(self) -> Path:
        self.incoming_dir.mkdir(parents=True, exist_ok=True)
        return self.incoming_dir / f"{uuid.uuid4().hex}.part"

    def video_dir(self, video_id: str) -> Path:
        return self.videos_dir / video_id

    def source_path(self, video_id: str, file_name: str) -> Path:
        return self.video_dir(video_id) / file_name

    def thumbnail_path(self, video_id: str) -> Path:
        return self.video_dir(video_id) / "thumbnail.jpg"

    def export_dir(self, video_id: str) -> Path:
        return self.exports_dir / video_id

    def adopt_upload(self, incoming: Path, video_id: str, file_name: str) -> Path:
        """Move a received upload into the video's directory (same filesystem: a rename)."""
        target = self.source_path(video_id, file_name)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(incoming, target)
        return target

    def delete_video_files(self, video_id: str) -> None:
        for directory in (self.video_dir(video_id), self.export_dir(video_id)):
            shutil.rmtree(directory, ignore_errors=True)
