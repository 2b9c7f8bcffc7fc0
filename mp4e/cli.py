"""The `mp4e` command: serve, worker, keys, db, inspect."""

from __future__ import annotations

import argparse
import asyncio
import logging
import multiprocessing
import signal
import sys
from collections.abc import Sequence

from mp4e.errors import MP4EError
from mp4e.logs import configure_logging
from mp4e.settings import Settings, get_settings

logger = logging.getLogger(__name__)


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from mp4e.app import create_app
    from mp4e.migrations.runner import upgrade_database

    settings = get_settings()
    upgrade_database(settings)
    uvicorn.run(
        create_app(settings),
        host=args.host,
        port=args.port,
        log_config=None,
        proxy_headers=args.proxy_headers,
        access_log=args.access_log,
        timeout_graceful_shutdown=10,
    )
    return 0


def _worker_process(threads: int) -> None:
    configure_logging()
    from mp4e.workers.service import run_worker

    asyncio.run(run_worker(get_settings(), threads))


def _worker(args: argparse.Namespace) -> int:
    settings = get_settings()
    if not settings.redis_url:
        print(
            "mp4e worker needs MP4E_REDIS_URL; without Redis, `mp4e serve` runs the workers "
            "in-process.",
            file=sys.stderr,
        )
        return 2
    if args.processes == 1:
        _worker_process(args.threads)
        return 0
    context = multiprocessing.get_context("spawn")
    children = [
        context.Process(target=_worker_process, args=(args.threads,), name=f"mp4e-worker-{i}")
        for i in range(args.processes)
    ]
    for child in children:
        child.start()

    def terminate_children(*_: object) -> None:
        for child in children:
            child.terminate()

    signal.signal(signal.SIGTERM, terminate_children)
    for child in children:
        child.join()
    return max((child.exitcode or 0) for child in children)


def _keys(args: argparse.Namespace) -> int:
    from mp4e.auth import create_key, list_keys, revoke_key
    from mp4e.db import close_databases, get_database
    from mp4e.migrations.runner import upgrade_database

    settings = get_settings()
    upgrade_database(settings)

    async def run() -> int:
        database = get_database(settings)
        try:
            if args.keys_command == "create":
                created = await create_key(
                    database, name=args.name, account_name=args.account, scopes=args.scope or ["*"]
                )
                print(
                    f"Created key {created.key.id} for account {created.account.name} "
                    f"with scopes {' '.join(created.key.scopes)}."
                )
                print("Store the secret now; it is not shown again:")
                print(created.secret)
            elif args.keys_command == "list":
                for key, account in await list_keys(database):
                    state = "revoked" if key.revoked_at else "active"
                    print(f"{key.id}\t{account.name}\t{key.name}\t{','.join(key.scopes)}\t{state}")
            else:
                key = await revoke_key(database, args.key_id)
                await _announce_key_change(settings)
                print(f"Revoked key {key.id}.")
            return 0
        finally:
            await close_databases()

    return asyncio.run(run())


async def _announce_key_change(settings: Settings) -> None:
    """Tell running servers to forget cached keys (only reachable through Redis)."""
    if not settings.redis_url:
        return
    from mp4e.events import RedisEventBus
    from mp4e.runtime import INVALIDATION_CHANNEL

    bus = RedisEventBus(settings.redis_url, settings.redis_namespace)
    try:
        bus.publish(INVALIDATION_CHANNEL, {"keys": True})
    finally:
        await bus.close()


def _db(args: argparse.Namespace) -> int:
    from mp4e.migrations.runner import upgrade_database

    upgrade_database(get_settings())
    return 0


# Exit codes of `mp4e inspect`, chosen like grep's: found, not found, error.
INSPECT_FOUND = 0
INSPECT_NONE = 1
INSPECT_ERROR = 2


def _inspect(args: argparse.Namespace) -> int:
    """Print the MP4E document embedded in a local file as indented JSON."""
    import json
    from pathlib import Path

    from mp4e.vision.mp4box import read_metadata

    path = Path(args.file)
    try:
        document = read_metadata(path)
    except MP4EError as exc:
        print(f"error: {args.file}: {exc.message}", file=sys.stderr)
        return INSPECT_ERROR
    except OSError as exc:
        print(f"error: cannot read {args.file}: {exc.strerror or exc}", file=sys.stderr)
        return INSPECT_ERROR
    if document is None:
        print(f"No MP4E metadata in {args.file}.", file=sys.stderr)
        return INSPECT_NONE
    print(json.dumps(document, indent=2, ensure_ascii=False))
    return INSPECT_FOUND


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mp4e", description="MP4E server.")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="Run the API, GraphiQL and (without Redis) workers.")
    serve.add_argument("--host", default="127.0.0.1", help="Interface to bind (default 127.0.0.1).")
    serve.add_argument("--port", type=int, default=8000, help="TCP port (default 8000).")
    serve.add_argument(
        "--proxy-headers", action="store_true", help="Trust X-Forwarded-* from a reverse proxy."
    )
    serve.add_argument(
        "--access-log", action="store_true", help="Log one line per request (off by default)."
    )
    serve.set_defaults(handler=_serve)

    worker = commands.add_parser("worker", help="Run Dramatiq job workers (needs Redis).")
    worker.add_argument("--processes", type=int, default=1, help="Worker processes (default 1).")
    worker.add_argument("--threads", type=int, default=2, help="Threads per process (default 2).")
    worker.set_defaults(handler=_worker)

    keys = commands.add_parser("keys", help="Create, list and revoke API keys.")
    key_commands = keys.add_subparsers(dest="keys_command", required=True)
    create = key_commands.add_parser("create", help="Create a key; prints the secret last.")
    create.add_argument("--name", required=True, help="A label for the key.")
    create.add_argument("--account", help="Account name, created if missing (default: default).")
    create.add_argument(
        "--scope", action="append", help="A scope to grant; repeat for more (default: *)."
    )
    key_commands.add_parser("list", help="List keys with their account, scopes and state.")
    revoke = key_commands.add_parser("revoke", help="Revoke a key by id.")
    revoke.add_argument("key_id", help="The key id, e.g. key_0123456789abcdef.")
    keys.set_defaults(handler=_keys)

    db = commands.add_parser("db", help="Database schema.")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    db_commands.add_parser("upgrade", help="Apply migrations up to the newest revision.")
    db.set_defaults(handler=_db)

    inspect = commands.add_parser(
        "inspect",
        help="Print the MP4E metadata embedded in a local MP4 or MOV file.",
        description=(
            "Print the embedded metadata document as JSON on stdout. Exit status: 0 when "
            "the file contains a document, 1 when it contains none, 2 when the file cannot "
            "be read or its metadata box is damaged."
        ),
    )
    inspect.add_argument("file", help="Path of the MP4, MOV or WebM file.")
    inspect.set_defaults(handler=_inspect)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging()
    try:
        return int(args.handler(args))
    except MP4EError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
