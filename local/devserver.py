"""The API served over HTTP on this machine, by Chalice's local server with two fixes.

- Every HTTP method reaches the app, which answers 405 for undeclared ones (Chalice's handler
  lets Python's http.server answer 501 to any method outside GET, PUT, POST, HEAD, DELETE, PATCH
  and OPTIONS).
- Requests are handled by threads (a browser's keep-alive connection must not block others), but
  the app is called one request at a time: Chalice keeps the current request on the app object,
  so two concurrent calls would see each other's request.
"""

from __future__ import annotations

import functools
import threading
from http.server import BaseHTTPRequestHandler

from chalice import Chalice
from chalice.config import Config
from chalice.local import ChaliceRequestHandler, LocalDevServer, LocalGateway

from local.gateway import ApiGateway, Keyring

_app_lock = threading.Lock()


class _Handler(ChaliceRequestHandler):
    def __init__(
        self, request, client_address, server, app_object: Chalice, config: Config, keyring: Keyring | None = None
    ) -> None:
        # ChaliceRequestHandler's own __init__ would make a plain LocalGateway and handle the request
        # at once; this one puts the gateway with API keys and usage plans in front when asked.
        if keyring is None:
            self.local_gateway = LocalGateway(app_object, config)
        else:
            self.local_gateway = ApiGateway(app_object, config, keyring=keyring)
        BaseHTTPRequestHandler.__init__(self, request, client_address, server)

    def _generic_handle(self) -> None:
        with _app_lock:
            super()._generic_handle()

    def __getattr__(self, name: str):
        # http.server looks up do_<METHOD> for each request: all of them go to the app.
        if name.startswith("do_"):
            return self._generic_handle
        raise AttributeError(name)

    # Chalice's class binds these to its own, unlocked handler; __getattr__ only sees the others.
    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = do_PATCH = do_OPTIONS = _generic_handle


def make_server(
    app: Chalice, host: str, port: int, *, keyring: Keyring | None = None, lambda_timeout: int = 30
) -> LocalDevServer:
    """A server for the app on host:port; call serve_forever(), and shutdown() from another thread.

    With a keyring, API keys and usage plans are enforced as API Gateway would (local/gateway.py);
    without one, any `x-api-key` value stands for its owner.
    """
    config = Config.create(chalice_stage="dev", app_name=app.app_name, chalice_app=app, lambda_timeout=lambda_timeout)
    return LocalDevServer(app, config, host, port, handler_cls=functools.partial(_Handler, keyring=keyring))
