"""Log lines: one JSON object per line by default (CRM_LOG_FORMAT=json), or plain text.

A record's structured fields travel in `extra={"fields": {...}}`; the JSON formatter puts them
beside the time, level, logger and message, so a log shipper can index `request_id`,
`status` or `read_model` without parsing the message.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from datetime import UTC, datetime
from typing import Any

import msgspec

FORMATS = ("json", "text")
LEVELS = ("debug", "info", "warning", "error")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(getattr(record, "fields", None) or {})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return msgspec.json.encode(entry, enc_hook=str).decode()


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = getattr(record, "fields", None)
        if fields:
            line += " " + " ".join(f"{k}={v}" for k, v in fields.items() if v is not None)
        return line


class StandardError(logging.Handler):
    """Writes to whatever `sys.stderr` is when a record comes (a test harness swaps it).

    Records logged on an event loop's thread (a line per request) are written together once
    the loop has run what is ready: one write for all the answers of a batch of commands
    instead of a write each. A write is a system call, which hands the interpreter lock to
    another thread that wants it (the account writer) and waits to take it back; a line at a
    time, that cost a request more CPU than its domain logic. Lines from other threads are
    written at once, and whatever waits is written at exit (`logging.shutdown` flushes).
    """

    terminator = "\n"

    def __init__(self) -> None:
        super().__init__()
        self._pending: list[str] = []
        self._pending_to: Any = None  # the standard error of when they were logged

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + self.terminator
            stream = sys.stderr
            loop = asyncio._get_running_loop()
            if loop is None:
                self._write(stream, line)
                return
            if self._pending and stream is not self._pending_to:
                self.flush()
            if not self._pending:
                loop.call_soon(self.flush)
                self._pending_to = stream
            self._pending.append(line)
        except Exception:
            self.handleError(record)

    def flush(self) -> None:
        self.acquire()
        try:
            lines, self._pending = self._pending, []
            if lines:
                self._write(self._pending_to, "".join(lines))
        except Exception:  # as a line's own write would: reported, not raised into the loop
            self.handleError(logging.makeLogRecord({"msg": "%d log lines", "args": (len(lines),)}))
        finally:
            self.release()

    @staticmethod
    def _write(stream: Any, text: str) -> None:
        stream.write(text)
        stream.flush()


def configure(fmt: str = "json", level: str = "info") -> None:
    """Sends every log record of the process at `level` or above to standard error in the
    chosen format (`info` has a line per request; `warning` keeps the problems alone)."""
    if fmt not in FORMATS:
        raise ValueError(f"CRM_LOG_FORMAT must be one of {', '.join(FORMATS)}, not {fmt!r}")
    if level.lower() not in LEVELS:
        raise ValueError(f"CRM_LOG_LEVEL must be one of {', '.join(LEVELS)}, not {level!r}")
    # Neither format shows the caller's file, thread or process, so the records need not
    # look them up: the logging docs' optimisations, worth it for a line per request.
    logging._srcfile = None  # type: ignore[attr-defined]
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = StandardError()
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
