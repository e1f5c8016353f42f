"""SSRF guard for the URLs Postline fetches or posts to on a user's behalf (webhook endpoints,
remote attachments): refuse destinations on loopback, private, link-local,
multicast, reserved or unspecified addresses, including IPv4-mapped, NAT64 and 6to4 forms
of them. Checked on the resolved addresses at connect time (the request then goes to the
checked address), so a DNS answer that changes between check and connect cannot slip past."""
from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx

NAT64 = ipaddress.ip_network("64:ff9b::/96")
SIX_TO_FOUR = ipaddress.ip_network("2002::/16")


class BlockedDestination(ValueError):
    pass


class Unresolvable(BlockedDestination):
    """The host has no address now (no such name, DNS unreachable): refused for a request,
    though not a judgement of where it points."""


def _embedded_v4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped:
        return ip.ipv4_mapped
    if ip in NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip in SIX_TO_FOUR:
        return ipaddress.IPv4Address((int(ip) >> 80) & 0xFFFFFFFF)
    return None


def is_forbidden(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(ip, ipaddress.IPv6Address):
        inner = _embedded_v4(ip)
        if inner is not None and is_forbidden(inner):
            return True
    if isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local:  # fec0::/10: deprecated, still routed inside
        return True                                                    # some networks, and "global" to ipaddress
    return (ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_reserved
            or ip.is_unspecified or not ip.is_global)


def check_url_shape(url: str) -> tuple[str, str, int]:
    """``(scheme, host, port)`` of an http(s) URL without credentials; raises ValueError,
    also for what the HTTP client would refuse to send (it raises ``httpx.InvalidURL``, no
    ValueError): a control character or a space anywhere (``urlsplit`` drops tabs and line
    breaks without a word), or a host it cannot encode."""
    if any(ch <= " " or ch == "\x7f" for ch in url):
        raise ValueError("must not contain spaces or control characters")
    try:
        httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise ValueError(f"is not a valid URL ({exc})") from None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValueError("must be an http:// or https:// URL")
    if not parts.hostname:
        raise ValueError("must have a host")
    if parts.username or parts.password:
        raise ValueError("must not contain credentials")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise ValueError("has an invalid port") from None
    return parts.scheme, parts.hostname, port


async def resolve_checked(host: str, port: int, allow_private: bool) -> str:
    """The first address of ``host`` after checking every address; raises BlockedDestination."""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise Unresolvable(f"cannot resolve {host}: {exc}") from None
    ips = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
    if not ips:
        raise Unresolvable(f"{host} has no address")
    if not allow_private:
        bad = [str(ip) for ip in ips if is_forbidden(ip)]
        if bad:
            raise BlockedDestination(f"{host} resolves to a non-public address ({bad[0]})")
    return str(ips[0])


@dataclass(frozen=True)
class Pinned:
    """A request target after the guard: ``url`` has the checked address as its host, and
    ``headers``/``extensions`` keep the original name for the Host header and for TLS (SNI and
    the certificate's name), so the request goes exactly where it was checked."""

    url: httpx.URL
    headers: dict[str, str] = field(default_factory=dict)
    extensions: dict[str, str] = field(default_factory=dict)


async def pinned(url: str, allow_private: bool) -> Pinned:
    """``url`` checked (shape, then every address it resolves to) and pinned to the address;
    raises ValueError for a malformed URL and BlockedDestination for a refused address."""
    scheme, host, port = check_url_shape(url)
    ip = await resolve_checked(host, port, allow_private)
    original = httpx.URL(url)
    return Pinned(original.copy_with(host=ip), {"host": original.netloc.decode()},
                  {"sni_hostname": host} if scheme == "https" else {})
