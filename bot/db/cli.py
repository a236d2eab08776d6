"""``python -m bot db ...``: the database and the data folder without starting the bot.

  upgrade              migrate the database to this version's schema
  current              show the database's schema revision
  repair [--apply]     show what the start-up check would change; --apply does it
                       (deletes rows whose file is missing, sets aside unnamed files)
  backup FILE          one archive: database snapshot, files, manifest (bot may run)
  restore FILE [--force]  verify and restore an archive into DATABASE_URL and DATA_DIR
  copy TARGET_URL      copy the database to another one (SQLite <-> PostgreSQL), verified

Settings come from the environment and ``.env`` as for the bot (``DISCORD_TOKEN`` is not
needed). Nothing is created where no bot data is found: run it in the bot's folder.

Exit codes: 0 done; 1 unexpected error; 2 invalid configuration or arguments; 3 no bot
data here (nothing was created) or no such archive; 4 refused: the target holds data
(restore without --force, copy), or the archive file exists; 5 verification failed (an
archive that does not match its manifest, a copy that differs); 6 the database cannot be
used (unreachable, or a schema revision to upgrade first); 7 the database and the data
folder do not belong together (``repair`` shows what would fix it).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import SecretStr, ValidationError
from sqlalchemy.exc import SQLAlchemyError

from bot.db.engine import (
    DatabaseError,
    DataMismatch,
    code_heads,
    current_revision,
    make_engine,
    safe_url,
    upgrade,
)

if TYPE_CHECKING:
    from bot.core.settings import Settings
    from bot.db.repair import RepairReport, Survey
    from bot.db.store import Store

EXIT_OK, EXIT_ERROR, EXIT_CONFIG, EXIT_NO_DATA, EXIT_REFUSED = 0, 1, 2, 3, 4
EXIT_VERIFY, EXIT_DATABASE, EXIT_MISMATCH = 5, 6, 7
#: items listed per kind by ``repair`` (the counts are always complete)
LISTED = 20


class CliError(Exception):
    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def _settings() -> Settings:
    from bot.core.settings import Settings

    extra = {} if os.environ.get("DISCORD_TOKEN") else {"discord_token": "not-needed-for-db"}
    return Settings(**extra)  # type: ignore[arg-type]


def _located(settings: Settings, command: str) -> None:
    """Refuse, creating nothing, where there is no bot data to work on."""
    from bot.db.copy import sqlite_path

    data_dir = settings.data_dir.resolve()
    here = "" if Path(".env").is_file() else " (there is no .env in this folder)"
    explicit = "data_dir" in settings.model_fields_set
    if command == "restore":
        if not explicit and not data_dir.is_dir():
            raise CliError(
                f"No bot folder here: DATA_DIR is not set{here} and {data_dir} does not "
                "exist. Set DATA_DIR (and DATABASE_URL) to where the data should go.",
                EXIT_NO_DATA,
            )
        return
    if not data_dir.is_dir():
        raise CliError(
            f"No bot data here: the data folder {data_dir} does not exist{here}. Run this "
            "in the bot's folder, or set DATA_DIR and DATABASE_URL.",
            EXIT_NO_DATA,
        )
    db_file = sqlite_path(settings.database_url_value)
    if command != "upgrade" and db_file is not None and not db_file.is_file():
        raise CliError(
            f"No database here: {db_file} does not exist{here}. Run this in the bot's "
            "folder, or set DATABASE_URL.",
            EXIT_NO_DATA,
        )


def _progress(what: str, done: int, total: int) -> None:
    print(f"  {what}: {done}/{total}", file=sys.stderr, flush=True)


async def _at_head(url: str) -> None:
    engine = make_engine(url)
    try:
        revision = await current_revision(engine)
    except Exception as exc:
        raise _unreachable(url, exc) from exc
    finally:
        await engine.dispose()
    if revision not in code_heads():
        raise CliError(
            f"The database {safe_url(url)} is at revision {revision or 'empty'}, this version "
            f"of the bot at {', '.join(code_heads())}: run `python -m bot db upgrade` first.",
            EXIT_DATABASE,
        )


async def _reachable(url: str) -> None:
    engine = make_engine(url)
    try:
        async with engine.connect():
            pass
    except Exception as exc:
        raise _unreachable(url, exc) from exc
    finally:
        await engine.dispose()


def _unreachable(url: str, exc: BaseException) -> CliError:
    reason = str(exc).splitlines()[0][:200] if str(exc) else ""
    return CliError(
        f"Cannot use the database {safe_url(url)} ({type(exc).__name__}: {reason}). Check "
        "DATABASE_URL and that the database server is running.",
        EXIT_DATABASE,
    )


async def _run(args: argparse.Namespace) -> int:
    settings = _settings()
    _located(settings, args.command)
    url = settings.database_url_value
    if args.command == "upgrade":
        engine = make_engine(url)
        try:
            before, after = await upgrade(engine)
        finally:
            await engine.dispose()
        print(f"database at revision {after} (was {before or 'empty'})")
    elif args.command == "current":
        engine = make_engine(url)
        try:
            rev = await current_revision(engine)
        except Exception as exc:
            raise _unreachable(url, exc) from exc
        finally:
            await engine.dispose()
        print(f"database revision: {rev or 'empty'}; this code: {', '.join(code_heads())}")
    elif args.command == "repair":
        await _repair(settings, apply=args.apply)
    elif args.command == "backup":
        await _backup(settings, Path(args.file))
    elif args.command == "restore":
        await _restore(settings, Path(args.file), force=args.force)
    else:
        await _copy(settings, args.target_url)
    return EXIT_OK


async def _open(settings: Settings) -> Store:
    from bot.db.opening import quotas_from
    from bot.db.store import Store
    from golem_backend.feature_cache import cache_evictor

    url = settings.database_url_value
    await _at_head(url)
    store = Store(url, settings.data_dir, quotas_from(settings))
    await store.open()
    store.evict_features = cache_evictor(settings.cache_path)
    return store


async def _repair(settings: Settings, *, apply: bool) -> None:
    from bot.db.repair import apply_repair, survey

    store = await _open(settings)
    try:
        found = await survey(store)
        print(f"database {safe_url(store.url)}; data folder {store.data_dir.resolve()}")
        problem = found.problem()
        print(
            f"as they are, the bot refuses to start: {problem}"
            if problem is not None
            else "as they are, the bot starts"
        )
        if not apply:
            _print_plan(found, store.data_dir)
            return
        _print_done(await apply_repair(store, found))
    finally:
        await store.close()


def _listed(title: str, items: list[str]) -> None:
    print(title)
    for item in items[:LISTED]:
        print(f"  {item}")
    if len(items) > LISTED:
        print(f"  ... and {len(items) - LISTED} more")


def _print_plan(found: Survey, data_dir: Path) -> None:
    ids = found.identities
    if ids.conflict:
        print(
            f"identity: the database's is {ids.database}, the folder's {ids.folder}: the "
            "folder would take the database's"
        )
    elif ids.database is None or ids.folder is None:
        print(
            f"identity: database {ids.database or '(none)'}, folder {ids.folder or '(none)'}: "
            "both would get the same one"
        )
    _listed(
        f"{len(found.missing)} record(s) whose file is missing would be deleted:",
        [r.what for r in found.missing],
    )
    moving = [str(p) for p in [*found.orphans, *found.leftovers]]
    _listed(
        f"{len(moving)} file(s) no record names would move to {data_dir / 'set-aside'}/<time>/:",
        moving,
    )
    if found.found_again:
        print(f"{len(found.found_again)} record(s) marked missing have their file again")
    if found.young:
        print(f"{len(found.young)} unnamed file(s) younger than 15 minutes are left alone")
    if found.pending:
        print(f"{found.pending} removal(s) a forget or pruning recorded would be finished")
    if found.interrupted_retrains:
        print(f"{found.interrupted_retrains} retrain(s) left running would be recorded as failed")
    print("nothing was changed: `python -m bot db repair --apply` does this")


def _print_done(report: RepairReport) -> None:
    _listed(
        f"deleted {len(report.rows_removed)} record(s) whose file was missing:", report.rows_removed
    )
    where = report.set_aside_to or "set-aside"
    _listed(
        f"moved {len(report.set_aside)} file(s) no record names to {where}:",
        [str(p) for p in report.set_aside],
    )
    if report.found_again:
        print(f"{len(report.found_again)} record(s) have their file again")
    removed = len(report.removals.files)
    if removed or report.removals.features:
        print(
            f"finished recorded removals: {removed} file(s), {report.removals.features} "
            "cached feature row(s)"
        )
    if report.retrains_interrupted:
        print(f"recorded {report.retrains_interrupted} interrupted retrain(s) as failed")
    print(f"identity {report.identity} in the database and the data folder")


async def _backup(settings: Settings, archive: Path) -> None:
    import bot.db.backup as backups

    url = settings.database_url_value
    await _at_head(url)
    report = await backups.backup(url, settings.data_dir, archive, _progress)
    print(backups.describe(report))
    store = await _open(settings)  # deletions deferred while it ran
    try:
        await store.removals.run_pending()
    finally:
        await store.close()


async def _restore(settings: Settings, archive: Path, *, force: bool) -> None:
    import bot.db.restore as restores

    url = settings.database_url_value
    report = await restores.restore(
        url, settings.data_dir, archive, force=force, progress=_progress
    )
    rows = sum(t.rows for t in report.tables)
    print(
        f"restored {len(report.tables)} tables ({rows} rows) into {safe_url(url)} and "
        f"{report.files} files into {settings.data_dir.resolve()}; every table and file "
        "matches the manifest"
    )
    if report.set_aside is not None:
        print(f"what was there before is in {report.set_aside}")


async def _copy(settings: Settings, target: str) -> None:
    from bot.core.settings import Settings as _S
    from bot.db.copy import copy_between, sqlite_path

    try:
        checked = _S._database_url(SecretStr(target))  # the rules DATABASE_URL follows
    except ValueError as exc:
        raise CliError(f"TARGET_URL: {exc}", EXIT_CONFIG) from None
    assert checked is not None
    target_url = checked.get_secret_value()
    source_url = settings.database_url_value
    if target_url == source_url:
        raise CliError("TARGET_URL is the database DATABASE_URL names.", EXIT_CONFIG)
    target_file = sqlite_path(target_url)
    if target_file is not None and not target_file.parent.is_dir():
        raise CliError(f"The folder {target_file.parent} does not exist.", EXIT_CONFIG)
    await _at_head(source_url)
    await _reachable(target_url)
    copied = await copy_between(source_url, target_url, _progress)
    rows = sum(t.rows for t in copied)
    print(
        f"copied {len(copied)} tables ({rows} rows) from {safe_url(source_url)} to "
        f"{safe_url(target_url)}; every table's row count and sha256 match. Point "
        "DATABASE_URL at the copy and start the bot (the data folder stays as it is)."
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bot db", description="The bot's database and data folder."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("upgrade", help="migrate the database to this version's schema")
    sub.add_parser("current", help="show the database's schema revision")
    repair = sub.add_parser("repair", help="show what the start-up check would change")
    repair.add_argument("--apply", action="store_true", help="do it")
    backup = sub.add_parser("backup", help="write one archive of the database and files")
    backup.add_argument("file")
    restore = sub.add_parser("restore", help="restore an archive into an empty target")
    restore.add_argument("file")
    restore.add_argument("--force", action="store_true", help="replace the target's data")
    copy = sub.add_parser("copy", help="copy the database to another one, verified")
    copy.add_argument("target_url", metavar="TARGET_URL")
    return parser


def main(argv: list[str]) -> int:
    from bot.db.backup import BackupError

    args = _parser().parse_args(argv)
    try:
        return asyncio.run(_run(args))
    except ValidationError as exc:  # the messages only: an input may hold a password
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"]).upper() or "SETTINGS"
            print(f"Invalid configuration: {field}: {err['msg']}", file=sys.stderr)
        return EXIT_CONFIG
    except CliError as exc:
        print(str(exc), file=sys.stderr)
        return exc.code
    except BackupError as exc:
        print(str(exc), file=sys.stderr)
        return exc.code
    except DataMismatch as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_MISMATCH
    except DatabaseError as exc:
        from bot.db.copy import CopyMismatch, TargetNotEmpty

        print(str(exc), file=sys.stderr)
        if isinstance(exc, TargetNotEmpty):
            return EXIT_REFUSED
        return EXIT_VERIFY if isinstance(exc, CopyMismatch) else EXIT_DATABASE
    except (SQLAlchemyError, OSError) as exc:  # one line, as for the bot's users
        reason = str(exc).splitlines()[0][:300] if str(exc) else ""
        print(
            f"The database or a file could not be used ({type(exc).__name__}: {reason})",
            file=sys.stderr,
        )
        return EXIT_DATABASE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_ERROR
