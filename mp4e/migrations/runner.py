"""Apply Alembic migrations from code (used by `mp4e db upgrade` and `mp4e serve`)."""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config

from mp4e.settings import Settings

logger = logging.getLogger(__name__)


def alembic_config(settings: Settings) -> Config:
    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent))
    config.set_main_option("sqlalchemy.url", settings.resolved_database_url.replace("%", "%%"))
    return config


def upgrade_database(settings: Settings) -> None:
    """Bring the database schema to the newest revision."""
    if settings.resolved_database_url.startswith("sqlite"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    command.upgrade(alembic_config(settings), "head")
    logger.info("Database schema is up to date")
