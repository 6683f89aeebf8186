"""A webhook receiver on loopback, and a connector that cannot reach anything else.

`Receiver` answers each POST with the next scripted reply (a status, or "hang" to answer after the
deliverer's timeout) and records what it got. `loopback_only` is the connector every delivery in the
tests goes through: a bug that lets a delivery past the guard still cannot send a packet anywhere but
127.0.0.1 or ::1, and the attempt is recorded in `LoopbackOnly.refused`.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Delivery:
    headers: dict[str, str]
    body: bytes
    path: str


@dataclass
class Receiver:
    """An HTTP server on 127.0.0.1 scripted with replies; the last reply repeats."""

    script: list[int | str] = field(default_factory=lambda: [200])
    hang_seconds: float = 3.0
    got: list[Delivery] = field(default_factory=list)

    def __post_init__(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                reply = receiver.script[min(len(receiver.got), len(receiver.script) - 1)]
                receiver.got.append(Delivery({k.lower(): v for k, v in self.headers.items()}, body, self.path))
                if reply == "hang":
                    time.sleep(receiver.hang_seconds)
                    reply = 200
                self.send_response(int(reply))
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"no")

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hooks/jobs"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class LoopbackOnly:
    """A connector (transport.Connector) that connects to 127.0.0.1 and ::1 only."""

    def __init__(self) -> None:
        self.connected: list[tuple[str, int]] = []
        self.refused: list[tuple[str, int]] = []

    def __call__(self, address: tuple[str, int], timeout: float) -> socket.socket:
        if address[0] not in ("127.0.0.1", "::1"):
            self.refused.append(address)
            raise ConnectionRefusedError(f"the tests' connector refuses {address[0]}")
        self.connected.append(address)
        return socket.create_connection(address, timeout=timeout)
