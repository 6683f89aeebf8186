"""What both clients share about sending a `Call`: building the request, reading the answer."""

from __future__ import annotations

import os
from typing import IO, Any

import httpx

from . import errors
from ._plans import Call
from .retry import RetryPolicy, parse_retry_after

USER_AGENT = "jobs-client/0.1"


def settings(url: str | None, key: str | None) -> tuple[str, str | None]:
    """The API's URL and key: as given, else JOBS_API_URL / JOBS_API_KEY."""
    url = url or os.environ.get("JOBS_API_URL")
    if not url:
        raise ValueError("the API's URL is needed: Client(url) or JOBS_API_URL")
    return url.rstrip("/"), key if key is not None else os.environ.get("JOBS_API_KEY")


def request_args(call: Call, base_url: str, key: str | None, file: IO[bytes] | None) -> dict[str, Any]:
    """Keyword arguments of httpx's `request` for the call; the API key goes to the API only."""
    headers = {"user-agent": USER_AGENT, **(call.headers or {})}
    if call.url is None and key:
        headers["x-api-key"] = key
    args: dict[str, Any] = {
        "method": call.method,
        "url": call.url or base_url + call.path,
        "params": call.params,
        "headers": headers,
    }
    if call.json is not None:
        args["json"] = call.json
    if call.form is not None:
        # httpx writes the data fields before the files: S3 wants the file as the form's last field.
        args["data"] = call.form
        if file is not None:
            args["files"] = {"file": (os.path.basename(call.file or "upload"), file, call.content_type)}
    return args


def safe(call: Call, policy: RetryPolicy) -> bool:
    return call.repeatable or policy.safe(call.method, call.headers)


def outcome(call: Call, response: httpx.Response) -> httpx.Response:
    """The response when its status is one the call expects; else the error it means."""
    if response.status_code in call.ok:
        return response
    if call.url is not None and call.form is not None:
        raise errors.UploadFailed(f"the upload was refused: {response.status_code} {response.text[:300]}")
    if call.url is not None and response.status_code >= 400:
        raise errors.TransportError(f"GET of the result's object answered {response.status_code}")
    raise errors.from_response(response, retry_after=parse_retry_after(response.headers.get("Retry-After")))


def unreachable(call: Call, base_url: str, exc: httpx.TransportError) -> errors.TransportError:
    where = call.url.split("?")[0] if call.url else base_url
    return errors.TransportError(f"cannot reach {where}: {exc or type(exc).__name__}")
