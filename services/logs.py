"""Log lines: one JSON object per line by default (CRM_LOG_FORMAT=json), or plain text.

A record's structured fields travel in `extra={"fields": {...}}`; the JSON formatter puts them
beside the time, level, logger and message, so a log shipper can index `request_id`,
`status` or `read_model` without parsing the message.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sys
import time
from datetime import UTC, datetime
from typing import Any

import msgspec

from services.settings import SettingError

FORMATS = ("json", "text")
LEVELS = ("debug", "info", "warning", "error")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


class JsonFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__()
        self._second = (-1, "")  # the last second formatted, in ISO 8601 without its fraction

    def format(self, record: logging.LogRecord) -> str:
        return self.line(
            record.created,
            record.levelname,
            record.name,
            record.getMessage(),
            getattr(record, "fields", None),
            self.formatException(record.exc_info) if record.exc_info else None,
        )

    def line(
        self,
        created: float,
        level: str,
        logger: str,
        message: str,
        fields: dict[str, Any] | None,
        exception: str | None = None,
    ) -> str:
        entry: dict[str, Any] = {
            "time": self._time(created),
            "level": level.lower(),
            "logger": logger,
            "message": message,
        }
        entry.update(fields or {})
        if exception:
            entry["exception"] = exception
        return msgspec.json.encode(entry, enc_hook=str).decode()

    def _time(self, created: float) -> str:
        """`2026-01-31T12:00:00.123+00:00`, as `datetime.isoformat` writes it; the second is
        formatted once for all its lines (formatting a datetime was a fifth of a line's CPU)."""
        second = int(created)
        micros = round((created - second) * 1e6)  # as datetime rounds a timestamp
        if micros >= 1_000_000:
            second, micros = second + 1, micros - 1_000_000
        if second != self._second[0]:
            text = datetime.fromtimestamp(second, UTC).isoformat(timespec="seconds")
            self._second = (second, text.removesuffix("+00:00"))
        return f"{self._second[1]}.{micros // 1000:03d}+00:00"


# What a request may bring into a line (a path's %0A or %1B): written as it is, it would start
# a forged line or drive the operator's terminal, so a text line shows it as an escape.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _escaped(text: str) -> str:
    return _CONTROL.sub(lambda found: found.group().encode("unicode_escape").decode(), text)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        return _escaped(super().formatMessage(record))  # a traceback after it keeps its lines

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = getattr(record, "fields", None)
        if fields:
            line += " " + " ".join(
                f"{k}={_escaped(str(v))}" for k, v in fields.items() if v is not None
            )
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
            self.write(self.format(record))
        except Exception:
            self.handleError(record)

    def write(self, line: str) -> None:
        """Writes a formatted line, or keeps it for the end of the event loop's pass."""
        line += self.terminator
        stream = sys.stderr
        loop = asyncio._get_running_loop()
        if loop is None:
            self._write(stream, line)
            return
        with self.lock:  # type: ignore[union-attr]
            if self._pending and stream is not self._pending_to:
                self.flush()
            if not self._pending:
                loop.call_soon(self.flush)
                self._pending_to = stream
            self._pending.append(line)

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


def log_fields(logger: logging.Logger, level: int, message: str, fields: dict[str, Any]) -> None:
    """`logger.log(level, message, extra={"fields": fields})`, for the line of every request.

    When the line would go nowhere but to the JSON handler that `configure` installs, it is
    built and handed to that handler directly: a LogRecord and the logging machinery around
    it cost a kept leaderboard page a sixth of its CPU. Any other set-up (text, a handler or
    filter added on the way) gets the record as usual.
    """
    if not logger.isEnabledFor(level):
        return
    handler = _json_only(logger, level)
    if handler is None:
        logger.log(level, "%s", message, extra={"fields": fields})
        return
    formatter: JsonFormatter = handler.formatter  # type: ignore[assignment]
    line = formatter.line(time.time(), logging.getLevelName(level), logger.name, message, fields)
    try:
        handler.write(line)
    except Exception:
        handler.handleError(logging.makeLogRecord({"msg": message}))


def _json_only(logger: logging.Logger, level: int) -> StandardError | None:
    """The JSON handler, if it is the only thing between `logger` and standard error."""
    node: logging.Logger | None = logger
    while node is not None:
        if node.filters or node.disabled:
            return None
        if node.parent is None:  # the root
            handlers = node.handlers
            if len(handlers) == 1 and type(handlers[0]) is StandardError:
                found = handlers[0]
                if (
                    type(found.formatter) is JsonFormatter
                    and not found.filters
                    and level >= found.level
                ):
                    return found
            return None
        if node.handlers or not node.propagate:
            return None
        node = node.parent
    return None


def configure(fmt: str = "json", level: str = "info") -> None:
    """Sends every log record of the process at `level` or above to standard error in the
    chosen format (`info` has a line per request; `warning` keeps the problems alone)."""
    if fmt not in FORMATS:
        raise SettingError(f"CRM_LOG_FORMAT must be one of {', '.join(FORMATS)}, not {fmt!r}")
    if level.lower() not in LEVELS:
        raise SettingError(f"CRM_LOG_LEVEL must be one of {', '.join(LEVELS)}, not {level!r}")
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
