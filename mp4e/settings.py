"""Server configuration, read once from `MP4E_*` environment variables."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PLACEHOLDER_SECRET = "change-me"  # noqa: S105 - the value the server refuses outside development


class Settings(BaseSettings):
    """Every tunable of the server. Field names map to `MP4E_<NAME>` variables."""

    model_config = SettingsConfigDict(env_prefix="MP4E_", env_file=None, extra="ignore")

    mode: Literal["development", "production"] = "development"
    data_dir: Path = Path("./var")
    database_url: str | None = None
    redis_url: str | None = None
    redis_namespace: str = Field(default="mp4e", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    public_url: str = "http://127.0.0.1:8000"
    secret_key: str = PLACEHOLDER_SECRET

    max_upload_bytes: int = Field(default=8 * 1024**3, gt=0)
    max_body_bytes: int = Field(default=8 * 1024**2, gt=0)
    rate_limit_requests: int = Field(default=100, gt=0)
    rate_limit_window_s: int = Field(default=60, gt=0)

    device: Literal["cpu", "cuda"] = "cpu"
    detector_config: Path | None = None
    detector_checkpoint: Path | None = None
    tracker: Literal["bytetrack", "ocsort"] = "bytetrack"
    clip_checkpoint: Path | None = None

    job_lease_s: int = Field(default=30, gt=0)
    export_url_ttl_s: int = Field(default=24 * 3600, gt=0)
    surface_wait_s: float = Field(default=20.0, ge=0)
    worker_threads: int = Field(default=2, gt=0)
    torch_threads: int | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _reject_placeholder_secret(self) -> Settings:
        if self.mode != "development" and self.secret_key == PLACEHOLDER_SECRET:
            raise ValueError(
                "MP4E_SECRET_KEY is the placeholder; set a random secret before running "
                "with MP4E_MODE=production"
            )
        return self

    @property
    def resolved_database_url(self) -> str:
        """The SQLAlchemy async URL: the configured one, or SQLite under the data dir."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'mp4e.db').resolve()}"

    @property
    def videos_dir(self) -> Path:
        return self.data_dir / "videos"

    @property
    def exports_dir(self) -> Path:
        return self.data_dir / "exports"

    @property
    def uploads_dir(self) -> Path:
        """Directory for uploads still being received; cleared of leftovers at start."""
        return self.data_dir / "incoming"

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Return the process-wide settings, read from the environment on first use."""
    return Settings()
