"""Logging for the bot: one stderr handler, secrets redacted, ``discord.http`` at WARNING.

``LOG_FORMAT=text`` (default) writes one readable line per record; ``LOG_FORMAT=json``
one JSON object per line (``python-json-logger``) with ``time``, ``level``, ``logger``,
``message`` and, inside a command, the request's context (``command``, ``guild_id``,
``channel_id``, ``interaction_id``; no user names). Secrets are replaced in both formats,
whatever part of the record (message, arguments, traceback) carries them.
"""

from __future__ import annotations

import contextvars
import logging
import sys
from collections.abc import Iterable
from typing import IO, Any, Literal

from pythonjsonlogger.json import JsonFormatter

REDACTED = "[REDACTED]"
TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
JSON_FIELDS = "%(asctime)s %(levelname)s %(name)s %(message)s"
CONTEXT_FIELDS = ("command", "guild_id", "channel_id", "interaction_id")

#: the request being handled by the current task (set once per interaction)
request_context: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "request_context", default=None
)


def set_request_context(**fields: Any) -> None:
    """Attach ``fields`` to every record logged by this task and the tasks it starts."""
    request_context.set({k: v for k, v in fields.items() if v is not None})


class RequestContextFilter(logging.Filter):
    """Copies the current request's context onto each record (for the JSON format)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in (request_context.get() or {}).items():
            setattr(record, key, value)
        return True


def _redact(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, REDACTED)
    return text


class RedactingFormatter(logging.Formatter):
    """Replaces every secret in the formatted record (message, arguments and traceback)."""

    def __init__(self, fmt: str, secrets: Iterable[str]) -> None:
        super().__init__(fmt)
        self.secrets = [s for s in secrets if s]

    def format(self, record: logging.LogRecord) -> str:
        return _redact(super().format(record), self.secrets)


class RedactingJsonFormatter(JsonFormatter):
    """One JSON object per record, secrets replaced after serialisation (a token or app
    key has no character JSON escapes, so it appears verbatim if anywhere)."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__(
            JSON_FIELDS,
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            timestamp=False,
        )
        self.secrets = [s for s in secrets if s]

    def format(self, record: logging.LogRecord) -> str:
        return _redact(super().format(record), self.secrets)


def make_handler(
    stream: IO[str], fmt: Literal["text", "json"] = "text", secrets: Iterable[str] = ()
) -> logging.Handler:
    handler = logging.StreamHandler(stream)
    if fmt == "json":
        handler.setFormatter(RedactingJsonFormatter(secrets))
    else:
        handler.setFormatter(RedactingFormatter(TEXT_FORMAT, secrets))
    handler.addFilter(RequestContextFilter())
    return handler


def setup_logging(
    level: str, secrets: Iterable[str] = (), fmt: Literal["text", "json"] = "text"
) -> None:
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(make_handler(sys.stderr, fmt, secrets))
    root.setLevel(level)
    logging.getLogger("discord.http").setLevel(logging.WARNING)
