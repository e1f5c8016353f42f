"""A send step's "no", as a value.

The send preparation (services/api/sending.py) returns a ``Refusal`` instead of raising;
each door maps it to its own protocol: the HTTP routes to an error response
(``errors.http_error``), SMTP submission to a reply (``submission/replies.refusal``)."""
from __future__ import annotations

from dataclasses import dataclass, field as dataclass_field


@dataclass(frozen=True, slots=True)
class Refusal:
    status: int                     # what it means in HTTP terms: 400, 403, 429, 503
    message: str                    # human-readable, names what to do about it
    field: str | None = None        # the request field it is about, when there is one
    retry_after: int | None = None  # seconds: a temporary refusal (the log is down, a rate limit)
    cause: BaseException | None = dataclass_field(default=None, compare=False, repr=False)  # an infrastructure fault, for the log

    @property
    def text(self) -> str:
        """``"<field>: <message>"``, the API's error wording (the message names the field: docs/compatibility.md)."""
        return f"{self.field}: {self.message}" if self.field else self.message

    @property
    def temporary(self) -> bool:
        return self.status == 429 or self.status >= 500
