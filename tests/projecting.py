"""A projector in a thread of the test's process, beside an app under Starlette's TestClient
(`crm serve` runs it as a child process of its own: services/worker_processes.py)."""

from __future__ import annotations

import threading

from services.leadership import Leadership, lead_in_thread
from services.projector import Projector


class BackgroundProjector:
    """Runs `projector` in a thread while this process holds the projector's lock."""

    def __init__(self, projector: Projector, leadership: Leadership) -> None:
        self.projector = projector
        self.leadership = leadership
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self.projector.setup()
        self._thread = threading.Thread(
            target=lead_in_thread,
            args=(self.leadership, self._stop, self.projector.run),
            name="projector",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
