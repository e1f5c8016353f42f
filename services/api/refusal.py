"""A use case's "no", as a value.

The accept core (services/api/accept.py), the idempotency gate, the email lookup and the
management operations (services/api/manage/) return a ``Refusal`` instead of raising; each
door maps it to its own protocol: the HTTP edge to an error response (``errors.http_error``,
``errors.refusal_response``), SMTP submission to a reply (``submission/replies.refusal``),
the dashboard to a page's message.

``code`` is the stable machine-readable name clients read (``name`` in the HTTP error body,
docs/compatibility.md); it is given where the refusal is made, never derived from the text."""
from __future__ import annotations

from dataclasses import dataclass, field as dataclass_field

from shared.quota import Decision

# status → code, for a refusal that has no finer one
CODES = {
    400: "validation_error",
    401: "invalid_api_key",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    409: "conflict",
    413: "body_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limit_exceeded",
    500: "application_error",
    503: "service_unavailable",
}


def code_for(status: int) -> str:
    """The default machine code of an HTTP status."""
    return CODES.get(status) or ("application_error" if status >= 500 else "invalid_request")


@dataclass(frozen=True, slots=True)
class Refusal:
    status: int                     # what it means in HTTP terms: 400, 403, 404, 409, 429, 503
    message: str                    # human-readable, names what to do about it
    field: str | None = None        # the request field it is about, when there is one
    retry_after: int | None = None  # seconds: a temporary refusal (the log is down, a rate limit)
    cause: BaseException | None = dataclass_field(default=None, compare=False, repr=False)  # an infrastructure fault, for the log
    code: str | None = None         # the machine code when finer than the status's (``name``)
    # the service's rate-limit state to report with it (the HTTP edge's ``RateLimit-*`` headers)
    limits: Decision | None = dataclass_field(default=None, compare=False)

    @property
    def text(self) -> str:
        """``"<field>: <message>"``, the API's error wording (the error names the field)."""
        return f"{self.field}: {self.message}" if self.field else self.message

    @property
    def name(self) -> str:
        """The machine-readable code: ``code``, else the status's."""
        return self.code or code_for(self.status)

    @property
    def temporary(self) -> bool:
        return self.status == 429 or self.status >= 500
