"""``python -m bot db upgrade|current|repair``: the database without starting the bot."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from pydantic import ValidationError

from bot.db.engine import DatabaseError, code_heads, current_revision, make_engine, upgrade


def _settings() -> object:
    from bot.core.settings import Settings

    extra = {} if os.environ.get("DISCORD_TOKEN") else {"discord_token": "not-needed-for-db"}
    return Settings(**extra)  # type: ignore[arg-type]


async def _run(command: str) -> int:
    settings = _settings()
    url = settings.database_url_value  # type: ignore[attr-defined]
    if command == "upgrade":
        engine = make_engine(url)
        try:
            before, after = await upgrade(engine)
        finally:
            await engine.dispose()
        print(f"database at revision {after} (was {before or 'empty'})")
    elif command == "current":
        engine = make_engine(url)
        try:
            rev = await current_revision(engine)
        finally:
            await engine.dispose()
        print(f"database revision: {rev or 'empty'}; this code: {', '.join(code_heads())}")
    else:
        from bot.db.opening import open_store
        from bot.db.repair import repair

        store = await open_store(settings)  # type: ignore[arg-type]  # repairs once
        try:
            report = await repair(store)
        finally:
            await store.close()
        print(f"repair: {len(report.rows_removed)} records, {len(report.files_removed)} files")
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bot db")
    parser.add_argument("command", choices=("upgrade", "current", "repair"))
    args = parser.parse_args(argv)
    try:
        return asyncio.run(_run(args.command))
    except ValidationError as exc:  # the messages only: an input may hold a password
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"]).upper() or "SETTINGS"
            print(f"Invalid configuration: {field}: {err['msg']}", file=sys.stderr)
        return 2
    except DatabaseError as exc:
        print(str(exc), file=sys.stderr)
        return 6
