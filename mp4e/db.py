"""Database engine and sessions for SQLite (embedded default) and PostgreSQL."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Session
from sqlalchemy.pool import Pool

from mp4e.settings import Settings


class Database:
    """One async engine and its session factory, plus the write lock SQLite needs.

    SQLite allows one writer at a time. Every write goes through `serialized()`, which takes
    `write_lock` and opens the transaction with BEGIN IMMEDIATE, so concurrent requests in this
    process queue instead of failing with "database is locked".
    """

    def __init__(self, url: str, *, poolclass: type[Pool] | None = None) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        engine_kwargs: dict[str, Any] = {}
        if self.is_sqlite:
            engine_kwargs["connect_args"] = {"timeout": 30}
        if poolclass is not None:
            engine_kwargs["poolclass"] = poolclass
        elif not self.is_sqlite:
            engine_kwargs.update(pool_size=10, max_overflow=20, pool_pre_ping=True)
        self.engine: AsyncEngine = create_async_engine(url, **engine_kwargs)
        if self.is_sqlite:
            event.listen(self.engine.sync_engine, "connect", _configure_sqlite)
            event.listen(self.engine.sync_engine, "begin", _begin)
        self.change_listeners: list[Callable[[set[str]], None]] = []
        tracking_session = type("TrackingSession", (Session,), {})
        event.listen(tracking_session, "before_flush", _collect_changes)
        event.listen(tracking_session, "after_commit", self._publish_changes)
        event.listen(tracking_session, "after_rollback", _forget_changes)
        self.sessions = async_sessionmaker(
            self.engine, expire_on_commit=False, sync_session_class=tracking_session
        )
        self.write_lock = asyncio.Lock()

    def _publish_changes(self, session: Session) -> None:
        changed: set[str] = session.info.pop(CHANGED_KEYS, set())
        if changed:
            for listener in self.change_listeners:
                listener(changed)

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """Yield a session; the caller commits. Rolls back on error."""
        async with self.sessions() as session:
            try:
                yield session
            except BaseException:
                await session.rollback()
                raise

    @asynccontextmanager
    async def serialized(self) -> AsyncIterator[AsyncSession]:
        """Yield a session for a read-modify-write transaction, committed on success.

        On SQLite the process-wide write lock serialises these transactions; on PostgreSQL the
        caller locks the rows it changes with SELECT ... FOR UPDATE.
        """
        if self.is_sqlite:
            async with self.write_lock, self.session() as session:
                token = _immediate.set(True)
                try:
                    yield session
                    await session.commit()
                finally:
                    _immediate.reset(token)
        else:
            async with self.session() as session:
                yield session
                await session.commit()

    async def dispose(self) -> None:
        await self.engine.dispose()


def _configure_sqlite(dbapi_connection: Any, _record: Any) -> None:
    # The driver's own transaction handling is turned off so that "begin" below controls it.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


_immediate: contextvars.ContextVar[bool] = contextvars.ContextVar("sqlite_immediate", default=False)


def _begin(connection: Any) -> None:
    # Writers take the write lock up front so that a read-then-write transaction never fails
    # when upgrading its lock; readers use a deferred transaction and see a WAL snapshot.
    connection.exec_driver_sql("BEGIN IMMEDIATE" if _immediate.get() else "BEGIN")


CHANGED_KEYS = "mp4e_changed_keys"


def mark_changed(session: Any, key: str) -> None:
    """Record that `key` (a video id) changed in this transaction, for bulk statements the
    flush tracking cannot see. Listeners hear of it after the commit."""
    sync_session = getattr(session, "sync_session", session)
    sync_session.info.setdefault(CHANGED_KEYS, set()).add(key)


def _collect_changes(session: Session, _context: Any, _instances: Any) -> None:
    # Every row that belongs to a video carries `video_id`; the video row itself is a `Video`.
    changed: set[str] = session.info.setdefault(CHANGED_KEYS, set())
    for instance in (*session.new, *session.dirty, *session.deleted):
        if getattr(instance, "__tablename__", None) == "videos":
            changed.add(instance.id)
        elif getattr(instance, "__tablename__", None) in ("metadata_versions", "export_files"):
            changed.add(instance.video_id)


def _forget_changes(session: Session) -> None:
    session.info.pop(CHANGED_KEYS, None)


_databases: dict[str, Database] = {}


def get_database(settings: Settings) -> Database:
    """Return the process-wide database for the configured URL, creating it on first use."""
    url = settings.resolved_database_url
    database = _databases.get(url)
    if database is None:
        if url.startswith("sqlite"):
            settings.data_dir.mkdir(parents=True, exist_ok=True)
        database = Database(url)
        _databases[url] = database
    return database


async def close_databases() -> None:
    """Dispose every engine this process opened (at shutdown and between tests)."""
    for database in list(_databases.values()):
        await database.dispose()
    _databases.clear()
