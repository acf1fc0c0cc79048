"""Logs: one JSON object per line, carrying the trace and span ids of the request it is about.

The application's loggers and gunicorn's error log write to stderr, gunicorn's access log to
stdout. `SIGVERIFY_LOG_FORMAT=text` gives plain lines instead (gunicorn's usual access format).
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from service.telemetry import SPAN_ID_ENV, TRACE_ID_ENV, current_ids

TEXT_FORMAT = "%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s"
ACCESS_LOGGER = "gunicorn.access"


class JsonFormatter(logging.Formatter):
    """A record as `{"time", "level", "logger", "message", "pid", "trace_id", "span_id", ...}`.

    The ids are the current span's. A gunicorn access record is read field by field from the
    atoms gunicorn logs it with; its ids are those the request's span left in the WSGI environ
    (the span has ended by the time gunicorn logs the request).
    """

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        if record.name == ACCESS_LOGGER and isinstance(record.args, Mapping):
            entry.update(_access_fields(record.args))
        else:
            ids = current_ids()
            if ids is not None:
                entry["trace_id"], entry["span_id"] = ids
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        return json.dumps(entry, default=str)


def _access_fields(atoms: Mapping[str, Any]) -> dict[str, Any]:
    """The request as fields, from gunicorn's access-log atoms (read as a plain dict)."""

    def atom(key: str) -> Any:
        value = atoms.get(key)
        # gunicorn escapes double quotes for its quoted text format; JSON escapes its own.
        return value.replace('\\"', '"') if isinstance(value, str) else value

    fields: dict[str, Any] = {
        "method": atom("m"),
        "path": atom("U"),
        "query": atom("q") or None,
        "protocol": atom("H"),
        "status": _int(atom("s")),
        "bytes": atom("B"),
        "duration_ms": round(_int(atom("D")) / 1000, 3),
        "remote_addr": atom("h"),
        "user_agent": atom("a"),
    }
    trace_id = atom("{" + TRACE_ID_ENV + "}e")  # environ entries, as gunicorn names them
    if trace_id:
        fields["trace_id"] = trace_id
        fields["span_id"] = atom("{" + SPAN_ID_ENV + "}e")
    return fields


def _int(value: object) -> int:
    try:
        return int(str(value))
    except ValueError:
        return 0


def formatter(log_format: str) -> logging.Formatter:
    """The formatter `SIGVERIFY_LOG_FORMAT` names."""
    return JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)


def configure(log_format: str, level: str) -> None:
    """Send the root logger to stderr in `log_format` (outside gunicorn: `sigverify serve`)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(log_format))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.captureWarnings(True)


def gunicorn_logconfig(log_format: str, level: str) -> dict[str, Any]:
    """gunicorn's `logconfig_dict`: app and error log to stderr, access log to stdout."""
    json_format = log_format == "json"
    text = {"format": TEXT_FORMAT}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "main": {"()": JsonFormatter} if json_format else text,
            "access": {"()": JsonFormatter} if json_format else {"format": "%(message)s"},
        },
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "main",
                "stream": "ext://sys.stderr",
            },
            "stdout": {
                "class": "logging.StreamHandler",
                "formatter": "access",
                "stream": "ext://sys.stdout",
            },
        },
        "root": {"level": level, "handlers": ["stderr"]},
        "loggers": {
            "gunicorn.error": {"level": level, "handlers": ["stderr"], "propagate": False},
            ACCESS_LOGGER: {"level": "INFO", "handlers": ["stdout"], "propagate": False},
        },
    }
