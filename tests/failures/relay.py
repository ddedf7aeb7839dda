"""A TCP relay between a client and its server that a test arms to lose an answer."""

from __future__ import annotations

import socket
import threading


class Relay:
    """Relays each connection it accepts to `upstream` (a unix socket's path, or a host and
    port). `_sends` decides whether what the client sends passes on, and may mark the
    connection doomed; `_down` passes what the server answers, or drops a doomed connection.
    A dropped connection sets `dropped`."""

    def __init__(self, upstream: str | tuple[str, int]) -> None:
        self.upstream = upstream
        self.armed = threading.Event()
        self.dropped = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self._listener.close()
        for sock in self._sockets:
            close(sock)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if isinstance(self.upstream, str):
                server = socket.socket(socket.AF_UNIX)
            else:
                server = socket.socket()
            server.connect(self.upstream)
            self._sockets += [client, server]
            doomed = threading.Event()
            threading.Thread(target=self._up, args=(client, server, doomed), daemon=True).start()
            threading.Thread(target=self._down, args=(server, client, doomed), daemon=True).start()

    def _up(self, client: socket.socket, server: socket.socket, doomed: threading.Event) -> None:
        while data := recv(client):
            if not self._sends(data, doomed):
                self.drop(client, server)
                return
            try:
                server.sendall(data)
            except OSError:
                return

    def drop(self, *sockets: socket.socket) -> None:
        self.dropped.set()
        for sock in sockets:
            close(sock)

    def _sends(self, data: bytes, doomed: threading.Event) -> bool:
        raise NotImplementedError

    def _down(self, server: socket.socket, client: socket.socket, doomed: threading.Event) -> None:
        raise NotImplementedError


def recv(sock: socket.socket) -> bytes:
    try:
        return sock.recv(65536)
    except OSError:
        return b""


def close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()
