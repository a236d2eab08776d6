"""``python -m bot`` / ``classifier-bot``: load settings, run the bot, exit with a clear code.

``python -m bot [run]`` starts the bot (``run`` is the default); ``python -m bot db
upgrade|current|repair|backup|restore|copy`` works on the database and the data folder only
(``bot/db/cli.py``); ``--help`` and ``--version`` print and exit 0 without reading settings
or starting anything.

Exit codes (:data:`EXIT_CODES`, also printed by ``--help``):

- 0: stopped cleanly (SIGINT/SIGTERM: in-flight work drained, the backend stopped)
- 1: an unexpected error (logged with its traceback)
- 2: invalid configuration (the message names the setting), or ``HTTP_PORT`` cannot be bound
- 3: ``DISCORD_TOKEN`` missing, or rejected by Discord
- 4: ``MESSAGE_CONTENT_INTENT=true`` but the intent is not enabled for the application
- 5: the classifier backend or the database could not start
- 6: (``db``) the database could not be opened or migrated
- 7: the database and the data folder do not belong together (the start was refused and
  nothing changed; the message names both and the command that fixes it)
- 8: Discord could not be reached or did not answer at start: the login got no answer
  within ``DISCORD_REQUEST_TIMEOUT_S`` (or a server error, or no connection), or the
  gateway refused the first connection for ``GATEWAY_CONNECT_TIMEOUT_S`` of retries
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from importlib import metadata
from pathlib import Path

import aiohttp
import discord
from pydantic import ValidationError

from bot.core.client import BackendStartFailed, DatabaseStartFailed, configure_endpoints
from bot.core.health import HealthEndpointFailed, ListenerFailed
from bot.core.logconfig import setup_logging
from bot.core.reaching_discord import DiscordUnreachable
from bot.core.settings import Settings
from bot.core.sharding import create_bot
from bot.db.engine import DataMismatch

log = logging.getLogger("bot")

EXIT_OK, EXIT_ERROR, EXIT_CONFIG, EXIT_TOKEN, EXIT_INTENT, EXIT_BACKEND = 0, 1, 2, 3, 4, 5
EXIT_DATA_MISMATCH = 7
EXIT_DISCORD = 8  # 6 is the db command's, 7 a data mismatch


def load_settings() -> Settings | int:
    """The settings, or an exit code after printing what is wrong (no traceback)."""
    try:
        return Settings()  # type: ignore[call-arg]  # pydantic-settings reads the environment
    except ValidationError as exc:
        problems = []
        token_only = True
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"]) or "settings"
            token_only &= field == "discord_token"
            if err["type"] == "missing":
                problems.append(f"  {field.upper()}: required but not set")
            else:
                problems.append(f"  {field.upper()}: {err['msg']}")
        print("Invalid configuration (environment or .env):", *problems, sep="\n", file=sys.stderr)
        if token_only:
            print(
                "Set DISCORD_TOKEN to your bot's token (Developer Portal > Bot > Reset Token).",
                file=sys.stderr,
            )
            return EXIT_TOKEN
        return EXIT_CONFIG


async def run(settings: Settings) -> int:
    """Run until a signal or a fatal error; return the exit code."""
    configure_endpoints(settings)
    bot = create_bot(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # not on Windows
            loop.add_signal_handler(sig, stop.set)
    async with bot:
        runner = asyncio.create_task(bot.start(settings.discord_token.get_secret_value()))
        stopper = asyncio.create_task(stop.wait())
        await asyncio.wait({runner, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if not runner.done():
            log.info("signal received, stopping")
            stopper.cancel()
            await bot.close()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await runner
            return EXIT_OK
        stopper.cancel()
        await bot.close()
        return exit_code_for(runner.exception())


def exit_code_for(exc: BaseException | None) -> int:
    if exc is None:
        return EXIT_OK
    if isinstance(exc, discord.LoginFailure):
        log.error(
            "Discord rejected DISCORD_TOKEN (401 Unauthorized). Copy a fresh token from "
            "the Developer Portal > your application > Bot > Reset Token."
        )
        return EXIT_TOKEN
    if isinstance(exc, discord.PrivilegedIntentsRequired):
        log.error(
            "MESSAGE_CONTENT_INTENT=true, but the Message Content intent is not enabled "
            "for this application. Enable it in the Developer Portal > Bot > Privileged "
            "Gateway Intents, or set MESSAGE_CONTENT_INTENT=false."
        )
        return EXIT_INTENT
    if isinstance(exc, DatabaseStartFailed) and isinstance(exc.__cause__, DataMismatch):
        log.error("%s", exc)
        return EXIT_DATA_MISMATCH
    if isinstance(exc, DatabaseStartFailed):
        log.error("The database could not be opened: %s", exc)
        return EXIT_BACKEND
    if isinstance(exc, HealthEndpointFailed):
        log.error("%s. Choose another port or unset HTTP_PORT.", exc)
        return EXIT_CONFIG
    if isinstance(exc, ListenerFailed):
        log.error("%s", exc)
        return EXIT_CONFIG
    if isinstance(exc, BackendStartFailed):
        log.error("The classifier backend could not start: %s", exc)
        return EXIT_BACKEND
    if isinstance(exc, DiscordUnreachable):
        log.error("%s", exc)
        return EXIT_DISCORD
    if isinstance(exc, aiohttp.ClientConnectionError | discord.GatewayNotFound):
        log.error(
            "Could not reach Discord (%s: %s). Check the network and DISCORD_API_BASE / "
            "DISCORD_GATEWAY_URL.",
            type(exc).__name__,
            exc,
        )
        return EXIT_DISCORD
    log.error("The bot stopped on an unexpected error", exc_info=exc)
    return EXIT_ERROR


DISTRIBUTION = "golem-image-classifier-bot"
EXIT_CODES = """exit codes of run:
  0  stopped cleanly (SIGINT/SIGTERM)
  1  unexpected error (logged with its traceback)
  2  invalid configuration (the message names the setting; HTTP_PORT or DASHBOARD_PORT
     that cannot be bound)
  3  DISCORD_TOKEN missing, or rejected by Discord
  4  MESSAGE_CONTENT_INTENT=true but the intent is not enabled for the application
  5  the classifier backend or the database could not start
  6  (db) the database could not be opened or migrated
  7  the database and the data folder do not belong together (the start was refused and
     nothing changed; the message names both and the command that fixes it)
  8  Discord could not be reached or did not answer: the login (no answer within
     DISCORD_REQUEST_TIMEOUT_S), or the gateway's first connection (refused for
     GATEWAY_CONNECT_TIMEOUT_S of retries)

Settings come from the environment and a .env file in the working folder (.env.example
lists them)."""


def version() -> str:
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:  # run from a source tree that is not installed
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    prog = "classifier-bot" if Path(sys.argv[0]).name == "classifier-bot" else "python -m bot"
    parser = argparse.ArgumentParser(
        prog=prog,
        description="A Discord bot that classifies images (see README.md).",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    commands = parser.add_subparsers(dest="command", title="commands", metavar="{run,db}")
    commands.add_parser(
        "run",
        help="start the bot (the default when no command is given)",
        description="Start the bot with the settings of the environment and .env.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands.add_parser(
        "db",
        help="the database without the bot: upgrade, current, repair, backup, restore, copy",
        add_help=False,  # its own parser (bot/db/cli.py) answers db --help
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, rest = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    if args.command == "db":  # python -m bot db upgrade|current|repair|backup|restore|copy
        from bot.db.cli import main as db_main

        return db_main(rest)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    loaded = load_settings()
    if isinstance(loaded, int):
        return loaded
    settings = loaded
    setup_logging(settings.log_level, settings.secret_values(), settings.log_format)
    try:
        return asyncio.run(run(settings))
    except KeyboardInterrupt:
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
