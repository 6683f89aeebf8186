"""The SSRF guard of completion webhooks: which callback URLs and addresses a delivery may reach.

A `callbackUrl` is checked twice. At submit (`check_url`): an absolute https URL (http only where
WEBHOOK_ALLOW_HTTP says so, never inside Lambda), no user name or password, a host name or an
address; an address in a refused range is a 400 then, written in any spelling the resolver
accepts (`0x7f000001`, `2130706433`, `0177.0.0.1`, `[::ffff:127.0.0.1]`). At delivery
(`resolve`): the host is resolved and refused if ANY of its addresses is private, loopback,
link-local, CGNAT, multicast, reserved or the instance-metadata address, IPv4 and IPv6 alike, IPv4
inside IPv6 (mapped, 6to4, NAT64) judged as the IPv4 it carries; the request then goes to the address
that was checked, never to a second resolution (a DNS-rebinding name cannot swap it).

Loopback is allowed only where WEBHOOK_ALLOW_LOOPBACK says so (the local runtime), and never in
Lambda (`ON_AWS`): there a receiver on loopback would be the function itself, or its neighbours.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from .. import errors

#: Inside a Lambda function (set by the runtime): loopback and http are refused whatever is configured.
ON_AWS = "AWS_LAMBDA_FUNCTION_NAME" in os.environ
#: Longest callback URL kept (the column is VARCHAR(2048)).
MAX_URL_CHARS = 2048
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
#: `host, port -> addresses`; the default asks the system's resolver (getaddrinfo).
Resolver = Callable[[str, int], list[str]]

_METADATA = {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
# One part of a numeric host, as inet_aton reads it: decimal, octal (leading 0) or hex (0x).
_NUMERIC_PART = re.compile(r"0x[0-9a-f]*|[0-9]+", re.I)
# RFC 1123 host names (letters, digits, hyphens; dots between labels; an optional final dot).
_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)", re.I)


@dataclass(frozen=True)
class Policy:
    """What a deployment accepts: http and loopback only where configured, and never in Lambda."""

    allow_http: bool = False
    allow_loopback: bool = False

    @classmethod
    def of(cls, *, allow_http: bool, allow_loopback: bool, on_aws: bool = ON_AWS) -> Policy:
        return cls(allow_http=allow_http and not on_aws, allow_loopback=allow_loopback and not on_aws)


@dataclass(frozen=True)
class Target:
    """A checked callback URL: where to connect, and what to say in the request."""

    scheme: str
    host: str
    port: int
    #: The path and query sent in the request line.
    path: str


def refusal(address: IPAddress, policy: Policy = Policy()) -> str | None:
    """Why a delivery must not go to this address (a short phrase), or None if it may."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            return refusal(embedded, policy)
    if address in _METADATA:
        return "the instance-metadata address"
    if address.is_loopback:
        return None if policy.allow_loopback else "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if isinstance(address, ipaddress.IPv4Address) and address in _CGNAT:
        return "a CGNAT (shared) address"
    if address.is_multicast:
        return "a multicast address"
    if address.is_private:
        return "a private address"
    if address.is_unspecified or address.is_reserved or not address.is_global:
        return "a reserved address"
    return None


def parse_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """The IPv4 address a numeric host denotes as inet_aton (and so getaddrinfo) reads it: one to four
    parts, each decimal, octal (`0177`) or hex (`0x7f`), the last filling the bytes left (`127.1`,
    `2130706433`, `0x7f000001`). None for a host that is not numeric (a name); ValueError for a
    numeric host no resolver would read as an address (`256.1.1.1`, `0999`)."""
    parts = (host[:-1] if host.endswith(".") else host).split(".")
    if not all(_NUMERIC_PART.fullmatch(part) for part in parts):
        return None
    if len(parts) > 4:
        raise ValueError(f"{host!r} is not an address")
    values = []
    for part in parts:
        if part[:2].lower() == "0x":
            values.append(int(part[2:] or "0", 16))
        elif len(part) > 1 and part[0] == "0":
            try:
                values.append(int(part, 8))
            except ValueError:
                raise ValueError(f"{host!r} is not an address") from None
        else:
            values.append(int(part))
    *leading, last = values
    if any(v > 255 for v in leading) or last >= 256 ** (5 - len(values)):
        raise ValueError(f"{host!r} is not an address")
    number = 0
    for v in leading:
        number = number << 8 | v
    return ipaddress.IPv4Address(number << 8 * (5 - len(values)) | last)


def literal_address(host: str) -> IPAddress | None:
    """The address a URL's host (without brackets) spells, IPv6 or any IPv4 spelling; None for a name."""
    if ":" in host:
        return ipaddress.IPv6Address(host.split("%")[0])
    return parse_ipv4(host)


def check_url(url: object, policy: Policy) -> str:
    """The callback URL as given, once it is one a delivery may use; InvalidRequest (400) otherwise."""
    if not isinstance(url, str) or not url or len(url) > MAX_URL_CHARS:
        raise errors.InvalidRequest(f"callbackUrl must be a URL of at most {MAX_URL_CHARS} characters")
    found = target(url, policy)
    try:
        address = literal_address(found.host)
    except ValueError as exc:
        raise errors.InvalidRequest(f"callbackUrl's host: {exc}") from None
    if address is not None and (why := refusal(address, policy)):
        raise errors.InvalidRequest(f"callbackUrl's host is {why}: webhooks go to public addresses only")
    return url


def target(url: str, policy: Policy) -> Target:
    """Where a callback URL points; InvalidRequest when it is malformed or the policy refuses its scheme."""
    if any(ord(c) <= 0x20 or ord(c) >= 0x7F for c in url):
        raise errors.InvalidRequest("callbackUrl must be printable ASCII, without spaces")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise errors.InvalidRequest(f"callbackUrl is not a URL: {exc}") from None
    schemes = ("https", "http") if policy.allow_http else ("https",)
    if parts.scheme not in schemes:
        raise errors.InvalidRequest(f"callbackUrl must be an {' or '.join(schemes)} URL")
    if "@" in parts.netloc:
        raise errors.InvalidRequest("callbackUrl must not carry a user name or password")
    host = parts.hostname or ""
    if not host:
        raise errors.InvalidRequest("callbackUrl has no host")
    if "[" in parts.netloc:
        try:
            ipaddress.IPv6Address(host.split("%")[0])
        except ValueError:
            raise errors.InvalidRequest("callbackUrl's host is not an IPv6 address") from None
    elif not all(_LABEL.fullmatch(label) for label in (host[:-1] if host.endswith(".") else host).split(".")):
        raise errors.InvalidRequest("callbackUrl's host is not a host name")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(parts.scheme, host, port or (443 if parts.scheme == "https" else 80), path)


def system_resolver(host: str, port: int) -> list[str]:
    """Every address the system's resolver gives for `host` (TCP)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class Refused(Exception):
    """The callback's host resolves to an address a delivery must not reach."""

    address: str = ""


def resolve(target_: Target, policy: Policy, resolver: Resolver) -> list[IPAddress]:
    """The addresses to try for the target, all of them allowed; Refused when any is not (a name
    with one private address among public ones is refused too: the resolver may pick it next time);
    OSError when the name does not resolve."""
    try:
        literal = literal_address(target_.host)
    except ValueError as exc:
        raise Refused(f"refused: {exc}") from None
    if literal is not None:
        found: list[IPAddress] = [literal]
    else:
        found = [ipaddress.ip_address(a.split("%")[0]) for a in resolver(target_.host.rstrip("."), target_.port)]
    if not found:
        raise OSError(f"{target_.host} has no address")
    for address in found:
        why = refusal(address, policy)
        if why:
            refused = Refused(f"refused: the host resolves to {why}")
            refused.address = str(address)  # for the log only: a client never reads our resolver's answers
            raise refused
    return found
