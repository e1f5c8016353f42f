"""Resend's remote attachments: each ``path`` URL is fetched when the send is accepted, so the
request appended to the log carries the bytes, not the URL (a 2xx stays durable: the relay
fetches nothing later, and a file changed or gone afterwards changes nothing).

The fetch is guarded like a webhook delivery (shared/ssrf.py): http(s) only; every address
the host resolves to must be public, unless POSTLINE_WEBHOOK_ALLOW_PRIVATE (dev and tests);
the connection goes to the checked address; redirects are followed (at most
``MAX_REDIRECTS``), each hop checked the same way. The remote attachments of one send are
fetched one after the other under one deadline (POSTLINE_ATTACHMENT_FETCH_TIMEOUT) and within
the bytes the message size limit leaves (read no further than that). The content type is the
attachment's own, else the response's (unless it is a generic one), else guessed from the
file name.

Any failure — a refused address, unreachable, a non-2xx answer, an empty or too large file, the
deadline — is a 422 naming the attachment: ``attachments[1].path: …``."""
from __future__ import annotations

import asyncio
import base64
import mimetypes
from dataclasses import dataclass

import httpx

from services.api.refusal import Refusal
from services.api.schemas import MIME_TYPE, AttachmentIn, SendEmail
from shared.message_size import MAX_MESSAGE_BYTES
from shared.ssrf import BlockedDestination, pinned
from services.api.context import ApiContext

MAX_REDIRECTS = 5
USER_AGENT = "Postline-Attachments/1"
GENERIC_TYPES = {"application/octet-stream", "binary/octet-stream", "application/download", "application/force-download"}


class FetchFailed(Exception):
    """Why one remote attachment could not be used (the text follows ``attachments[i].path: ``)."""


@dataclass
class _Budget:
    """Raw bytes the remote attachments may still add before the encoded message would pass
    the size limit (base64: 57 bytes become a 78-byte line)."""

    left: int

    @classmethod
    def of(cls, body: SendEmail) -> _Budget:
        return cls(max(0, MAX_MESSAGE_BYTES - body.encoded_size().total) * 57 // 78)


async def fetch_remote(rt: ApiContext, body: SendEmail) -> SendEmail | Refusal:
    """``body`` with every ``path`` attachment replaced by its fetched content (``body`` itself
    when it has none), or the 422 of the first that failed."""
    remote = [i for i, a in enumerate(body.attachments or []) if a.path is not None]
    if not remote:
        return body
    attachments = list(body.attachments or [])
    budget, current = _Budget.of(body), remote[0]
    try:
        async with asyncio.timeout(rt.settings.attachment_fetch_timeout):
            async with httpx.AsyncClient(follow_redirects=False, trust_env=False) as client:
                for current in remote:
                    attachments[current] = await _fetched(client, attachments[current], budget,
                                                          rt.settings.webhook_allow_private)
    except FetchFailed as exc:
        return _refused(current, str(exc))
    except TimeoutError:
        return _refused(current, f"not fetched within {rt.settings.attachment_fetch_timeout:g} s")
    fetched = body.model_copy(update={"attachments": attachments})
    size = fetched.encoded_size()
    if size.total > MAX_MESSAGE_BYTES:  # the budget leaves room for the fetched types' headers too; this is the rule
        return _refused(remote[-1], f"the encoded message would be {size.total} bytes, over the limit of "
                                    f"{MAX_MESSAGE_BYTES} bytes")
    return fetched


def _refused(index: int, why: str) -> Refusal:
    return Refusal(422, why, field=f"attachments[{index}].path")


async def _fetched(client: httpx.AsyncClient, attachment: AttachmentIn, budget: _Budget,
                   allow_private: bool) -> AttachmentIn:
    """The attachment with its content (base64) and content type; raises FetchFailed."""
    url = str(attachment.path)
    for _ in range(MAX_REDIRECTS + 1):
        try:
            target = await pinned(url, allow_private)
        except BlockedDestination as exc:
            raise FetchFailed(f"refused: {exc}") from None
        except ValueError as exc:
            raise FetchFailed(f"a redirect to {url}: {exc}") from None
        try:
            async with client.stream("GET", target.url, headers={"user-agent": USER_AGENT, **target.headers},
                                     extensions=target.extensions) as resp:
                if resp.is_redirect and "location" in resp.headers:
                    url = str(httpx.URL(url).join(resp.headers["location"]))
                    continue
                if not resp.is_success:
                    raise FetchFailed(f"{url} answered {resp.status_code}")
                data = await _read(resp, budget)
                response_type = resp.headers.get("content-type", "")
        except httpx.HTTPError as exc:
            raise FetchFailed(f"cannot fetch {url}: {type(exc).__name__} {exc}".rstrip()) from None
        return attachment.model_copy(update={"path": None, "content_base64": base64.b64encode(data).decode(),
                                             "content_type": _content_type(attachment, response_type)})
    raise FetchFailed(f"more than {MAX_REDIRECTS} redirects")


async def _read(resp: httpx.Response, budget: _Budget) -> bytes:
    """The body, read no further than the budget allows (which it then spends)."""
    too_large = FetchFailed(f"the file is larger than the {budget.left} bytes the message size limit "
                            f"({MAX_MESSAGE_BYTES // (1024 * 1024)} MiB) leaves")
    declared = resp.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > budget.left:
        raise too_large
    chunks, size = [], 0
    async for chunk in resp.aiter_bytes():
        size += len(chunk)
        if size > budget.left:
            raise too_large
        chunks.append(chunk)
    if size == 0:
        raise FetchFailed("the file is empty")
    budget.left -= size
    return b"".join(chunks)


def _content_type(attachment: AttachmentIn, response_type: str) -> str:
    """The attachment's own type when it gave one, else the response's (parameters dropped)
    unless generic, else a guess from the file name."""
    if "content_type" in attachment.model_fields_set:
        return attachment.content_type
    served = response_type.split(";", 1)[0].strip().lower()
    if MIME_TYPE.fullmatch(served) and served not in GENERIC_TYPES:
        return served
    return mimetypes.guess_type(attachment.filename)[0] or "application/octet-stream"
