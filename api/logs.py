"""Logging of the service: request ids on every line, text or JSON, secrets redacted.

- :data:`REQUEST_ID` holds the id of the HTTP request being handled (set by
  :class:`api.middleware.RequestContext`); :class:`RequestIdFilter` copies it onto every log
  record (``-`` outside a request), whatever logger emits it (ours, the ledger's, uvicorn's).
- :class:`TextFormatter` (default) prints ``time level [request id] logger: message``;
  :class:`JsonFormatter` (``PLEDGELEDGER_LOG_FORMAT=json``) prints one JSON object per line with
  ``ts``, ``level``, ``logger``, ``request_id``, ``message``, any ``extra`` fields, and ``exc``.
- Both formatters pass the finished line through :func:`redact`: the secrets registered with
  :func:`register_secrets` (the relayer key, passwords in the database, chain and MQTT URLs)
  and anything shaped like an API key or a bearer token are replaced by ``[redacted]``. The
  code does not log secrets in the first place; this is the net under it.
"""

from __future__ import annotations

import json
import logging
import re
from contextvars import ContextVar
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit

from ledger.orgs import KEY_PREFIX
from ledger.settings import Settings

__all__ = [
    "REQUEST_ID",
    "JsonFormatter",
    "RequestIdFilter",
    "TextFormatter",
    "logging_config",
    "redact",
    "register_secrets",
]

#: The id of the HTTP request this code runs for, if any.
REQUEST_ID: ContextVar[str | None] = ContextVar("pledgeledger_request_id", default=None)

REDACTED = "[redacted]"
_SECRETS: set[str] = set()
_PATTERNS = re.compile(
    rf"{re.escape(KEY_PREFIX)}[A-Za-z0-9_-]{{8,}}"  # our API keys
    r"|(?i:bearer)\s+[A-Za-z0-9._~+/=-]+"  # an Authorization header value
)


def register_secrets(settings: Settings) -> None:
    """Never let these settings' secrets reach a log line: the relayer key (with and without
    ``0x``) and the passwords in the database, chain and MQTT URLs."""
    key = settings.relayer_key
    if key:
        bare = key.strip().removeprefix("0x").removeprefix("0X")
        _SECRETS.update({key.strip(), bare, bare.lower(), bare.upper()})
    for url in (settings.db_url, settings.chain, settings.mqtt_url):
        try:
            password = urlsplit(url).password if url else None
        except ValueError:
            password = None
        if password:
            _SECRETS.add(password)
    _SECRETS.discard("")


def redact(text: str) -> str:
    """``text`` with registered secrets, API keys and bearer tokens replaced by ``[redacted]``."""
    for secret in _SECRETS:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return _PATTERNS.sub(REDACTED, text)


class RequestIdFilter(logging.Filter):
    """Adds ``request_id`` (the current request's id, ``-`` outside a request) to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get() or "-"
        return True


class TextFormatter(logging.Formatter):
    """``2026-11-22 10:00:00,123 INFO [3f2a…] ledger.anchoring: anchored batch 7 …``"""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s [%(request_id)s] %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        if not hasattr(record, "request_id"):  # a handler without the filter
            record.request_id = REQUEST_ID.get() or "-"
        return redact(super().format(record))


#: Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "request_id", "color_message", "taskName"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line (see the module doc)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "request_id": getattr(record, "request_id", None) or REQUEST_ID.get(),
            "message": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")})
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exc"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return redact(json.dumps(entry, default=str, ensure_ascii=False))


def logging_config(*, fmt: str = "text", level: str = "INFO") -> dict[str, Any]:
    """A :func:`logging.config.dictConfig` for the service and uvicorn (also in its workers):
    one handler on stderr with our formatter and the request-id filter; uvicorn's loggers
    propagate to it."""
    if fmt not in ("text", "json"):
        raise ValueError(f"log format must be text or json, not {fmt!r}")
    level = level.upper()
    formatter = {"()": f"{__name__}.{'JsonFormatter' if fmt == 'json' else 'TextFormatter'}"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": f"{__name__}.RequestIdFilter"}},
        "formatters": {"pledgeledger": formatter},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "formatter": "pledgeledger",
                "filters": ["request_id"],
            },
        },
        "loggers": {
            "uvicorn": {"handlers": [], "propagate": True, "level": level},
            "uvicorn.error": {"handlers": [], "propagate": True, "level": level},
            "uvicorn.access": {"handlers": [], "propagate": True, "level": level},
        },
        "root": {"handlers": ["stderr"], "level": level},
    }
