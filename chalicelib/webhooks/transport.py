"""One webhook POST over the standard library's http.client: to an address the guard checked.

The connection goes to the address `guard.resolve` allowed, through `connect` (a dependency: tests
give one that cannot reach anything but loopback), with the URL's host name in the Host header and,
for https, in SNI and the certificate check. No redirect is followed (http.client follows none: a
3xx is an answer, and not a success); connect and each read are bounded by `timeout`, the whole
attempt by WHOLE_ATTEMPT_TIMEOUTS of them; at most MAX_BODY_BYTES of the answer are read. Nothing
here is retried: delivery.py decides.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass

from .guard import IPAddress, Target

#: Bytes of a receiver's answer read at most (its start goes into the attempt's error).
MAX_BODY_BYTES = 4096
#: The whole attempt (connect, send, the answer's headers and first bytes) is cut off after this
#: many timeouts.
WHOLE_ATTEMPT_TIMEOUTS = 3
#: `(address, port), timeout -> a connected socket`.
Connector = Callable[[tuple[str, int], float], socket.socket]


def system_connect(address: tuple[str, int], timeout: float) -> socket.socket:
    """A TCP connection made by the operating system."""
    return socket.create_connection(address, timeout=timeout)


@dataclass(frozen=True)
class Answer:
    """What one POST got: the status and the first bytes of the body, or why there was none."""

    status: int | None
    body: bytes = b""
    #: A timeout or a connection error, when there was no status.
    error: str | None = None


class _Connection(http.client.HTTPConnection):
    """An HTTP(S) connection to one checked address, whatever the host name would resolve to now."""

    def __init__(
        self,
        target: Target,
        address: IPAddress,
        *,
        timeout: float,
        connect: Connector,
        tls: ssl.SSLContext | None,
    ):
        super().__init__(target.host, target.port, timeout=timeout)
        self._address, self._connector, self._tls, self._name = str(address), connect, tls, target.host

    def connect(self) -> None:
        sock = self._connector((self._address, self.port), self.timeout)  # type: ignore[arg-type]
        sock.settimeout(self.timeout)
        self.sock = sock if self._tls is None else self._tls.wrap_socket(sock, server_hostname=self._name)


class Transport:
    """Sends one POST per call to a checked address."""

    def __init__(self, *, connect: Connector = system_connect, tls: ssl.SSLContext | None = None):
        self._connect = connect
        self._tls = tls

    def post(
        self, target: Target, address: IPAddress, body: bytes, headers: dict[str, str], *, timeout: float
    ) -> Answer:
        """POST `body` to the target at `address`; the answer, or the error that stopped it."""
        tls = None
        if target.scheme == "https":
            tls = self._tls or ssl.create_default_context()
        conn = _Connection(target, address, timeout=timeout, connect=self._connect, tls=tls)
        # The socket's timeout bounds each connect and read; this bounds the whole attempt, so a
        # receiver that trickles its answer a byte at a time cannot hold the function.
        whole = WHOLE_ATTEMPT_TIMEOUTS * timeout
        aborted = threading.Event()
        watchdog = threading.Timer(whole, _abort, args=(conn, aborted))
        watchdog.daemon = True
        watchdog.start()
        cut_off = Answer(None, error=f"timed out: no whole answer within {whole:g} s")
        try:
            conn.request("POST", target.path, body=body, headers=headers)
            response = conn.getresponse()
            answer = Answer(response.status, response.read(MAX_BODY_BYTES))
        except TimeoutError:
            return Answer(None, error=f"timed out after {timeout:g} s")
        except ssl.SSLError as exc:
            return cut_off if aborted.is_set() else Answer(None, error=f"TLS error: {exc.reason or type(exc).__name__}")
        except (OSError, http.client.HTTPException) as exc:
            return cut_off if aborted.is_set() else Answer(None, error=f"connection error: {_reason(exc)}")
        finally:
            watchdog.cancel()
            conn.close()
        # An answer cut short reads as complete to http.client (the end of headers, a short body).
        return cut_off if aborted.is_set() else answer


def _abort(conn: http.client.HTTPConnection, aborted: threading.Event) -> None:
    """End a connection from the watchdog's thread: its blocked read returns at once."""
    aborted.set()
    sock = conn.sock
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ConnectionResetError):
        return "connection reset"
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return text[:120]
