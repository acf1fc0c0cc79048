"""Logs: JSON lines with the current span's ids, and gunicorn's access log as JSON on stdout."""

from __future__ import annotations

import datetime
import json
import logging
import sys
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
from gunicorn.config import Config
from gunicorn.glogging import Logger
from opentelemetry.sdk.trace import TracerProvider

from service import logs
from service.telemetry import SPAN_ID_ENV, TRACE_ID_ENV


def record(message: str, name: str = "service.test") -> logging.LogRecord:
    return logging.LogRecord(name, logging.WARNING, __file__, 1, message, None, None)


def test_a_line_carries_the_ids_of_the_current_span() -> None:
    formatter = logs.JsonFormatter()
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("request") as span:
        inside = json.loads(formatter.format(record('a "quoted"\nmessage')))
    context = span.get_span_context()
    assert inside["trace_id"] == format(context.trace_id, "032x")
    assert inside["span_id"] == format(context.span_id, "016x")
    assert inside["message"] == 'a "quoted"\nmessage'
    assert inside["level"] == "WARNING" and inside["logger"] == "service.test"
    outside = json.loads(formatter.format(record("no request")))
    assert "trace_id" not in outside


def test_exceptions_stay_inside_the_json_line() -> None:
    try:
        raise ValueError("bad")
    except ValueError:
        failed = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", None, sys.exc_info())
    line = logs.JsonFormatter().format(failed)
    assert "\n" not in line
    assert "ValueError: bad" in json.loads(line)["exception"]


@pytest.fixture
def restored_logging() -> Iterator[None]:
    """gunicorn's setup reconfigures logging process-wide; put it back afterwards."""
    loggers = [logging.getLogger(n) for n in ("", "gunicorn.error", "gunicorn.access")]
    saved = [(lg, lg.handlers[:], lg.level, lg.propagate) for lg in loggers]
    yield
    for lg, handlers, level, propagate in saved:
        lg.handlers[:] = handlers
        lg.setLevel(level)
        lg.propagate = propagate


@pytest.mark.usefixtures("restored_logging")
def test_the_access_log_is_json_on_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    cfg = Config()
    cfg.set("accesslog", "-")
    cfg.set("logconfig_dict", logs.gunicorn_logconfig("json", "INFO"))
    cfg.set("access_log_format", "%(m)s %(U)s %(s)s")
    logger = Logger(cfg)
    environ = {
        "REQUEST_METHOD": "GET",
        "RAW_URI": "/v1/badge?image=x",
        "PATH_INFO": "/v1/badge",
        "QUERY_STRING": "image=x",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_USER_AGENT": 'curl "quoted"',
        TRACE_ID_ENV: "0af7651916cd43dd8448eb211c80319c",
        SPAN_ID_ENV: "b7ad6b7169203331",
    }
    response = SimpleNamespace(status="200 OK", headers=[], sent=42)
    request = SimpleNamespace(headers=[("User-Agent", 'curl "quoted"')])
    logger.access(response, request, environ, datetime.timedelta(milliseconds=12, microseconds=5))
    logger.error("an error-log line")
    captured = capsys.readouterr()
    (line,) = captured.out.splitlines()
    entry = json.loads(line)
    assert entry["logger"] == "gunicorn.access"
    assert entry["message"] == "GET /v1/badge 200"
    assert entry["method"] == "GET" and entry["path"] == "/v1/badge"
    assert entry["query"] == "image=x"
    assert entry["status"] == 200 and entry["bytes"] == 42
    assert entry["duration_ms"] == 12.005
    assert entry["user_agent"] == 'curl "quoted"'
    assert entry["trace_id"] == "0af7651916cd43dd8448eb211c80319c"
    assert entry["span_id"] == "b7ad6b7169203331"
    (error,) = captured.err.splitlines()
    assert json.loads(error)["message"] == "an error-log line"


def test_text_format_is_plain() -> None:
    line = logs.formatter("text").format(record("hello"))
    assert line.endswith(f"WARNING [{record('x').process}] service.test: hello")
