"""SQLModel tables. Importing this package registers every table in `SQLModel.metadata`."""

from mp4e.models.account import Account, ApiKey
from mp4e.models.job import Job
from mp4e.models.metadata import Blob, ExportFile, MetadataVersion
from mp4e.models.video import Video

__all__ = ["Account", "ApiKey", "Blob", "ExportFile", "Job", "MetadataVersion", "Video"]
