"""The control plane's errors; the HTTP edge turns them into answers (services/api/app.py)."""
from __future__ import annotations


class ControlError(Exception):
    """Base of the control plane's errors. ``retriable``: the same request may succeed later."""

    retriable = False


class ControlBehind(ControlError):
    """This process could not read the control log as far as a request needs (its end when
    the request arrived, or a change it just wrote) within POSTLINE_CONTROL_CATCH_UP_TIMEOUT:
    the log is unreachable or this process's follower is stuck. Answered 503 with Retry-After."""

    retriable = True


class ChangeRefused(ControlError):
    """A change that did not apply: ``status`` 409 when a field it sets was changed by another
    request since the entity was read (read it again and retry), 404 when the entity was
    deleted meanwhile."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
