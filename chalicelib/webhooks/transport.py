"""One webhook POST over the standard library's http.client: to an address the guard checked.

The connection goes to the address `guard.resolve` allowed, through `connect` (a dependency: tests
give one that cannot reach anything but loopback), with the URL's host name in the Host header and,
for https, in SNI and the certificate check. No redirect is followed (http.client follows none: a
3xx is an answer, and not a success); connect and read are bounded by `timeout`; at most
MAX_BODY_BYTES of the answer are read. Nothing here is retried: delivery.py decides.
"""

from __future__ import annotations

import http.client
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass

from .guard import IPAddress, Target

#: Bytes of a receiver's answer read at most (its start goes into the attempt's error).
MAX_BODY_BYTES = 4096
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
        try:
            conn.request("POST", target.path, body=body, headers=headers)
            response = conn.getresponse()
            return Answer(response.status, response.read(MAX_BODY_BYTES))
        except TimeoutError:
            return Answer(None, error=f"timed out after {timeout:g} s")
        except ssl.SSLError as exc:
            return Answer(None, error=f"TLS error: {exc.reason or type(exc).__name__}")
        except (OSError, http.client.HTTPException) as exc:
            return Answer(None, error=f"connection error: {_reason(exc)}")
        finally:
            conn.close()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ConnectionResetError):
        return "connection reset"
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return text[:120]
