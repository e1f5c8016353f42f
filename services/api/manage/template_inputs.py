"""What a template is created and changed with: Resend's request bodies (its SDKs send
``name, alias, from, subject, reply_to, html, text, variables: [{key, type, fallback_value}]``),
also what the dashboard's editor is read into. Limits: docs/templates.md."""
from __future__ import annotations

import re
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from shared.addresses import AddressError, has_forbidden_chars, parse_mailbox

MAX_VARIABLES = 20  # Resend's limit per template
MAX_TEMPLATE_BYTES = 256 * 1024  # subject + html + text of one draft or version (one control record each)
KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,49}")  # what a {{{KEY}}} placeholder can name
ALIAS = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")


class VariableIn(BaseModel):
    model_config = ConfigDict(extra="ignore")  # Resend's objects carry ids and times when read back
    key: str = Field(examples=["FIRST_NAME"])
    type: Literal["string", "number"] = Field(examples=["string"])
    fallback_value: str | int | float | None = Field(None, examples=["there"])

    @field_validator("key")
    @classmethod
    def _key(cls, v: str) -> str:
        if not KEY.fullmatch(v):
            raise ValueError("1-50 letters, digits and _, not starting with a digit (used as {{{KEY}}})")
        return v

    @model_validator(mode="after")
    def _fallback_type(self) -> Self:
        value = self.fallback_value
        if value is None:
            return self
        if self.type == "string" and not isinstance(value, str):
            raise ValueError(f"fallback_value: must be a string for the string variable {self.key}")
        if self.type == "number" and (isinstance(value, (str, bool))):
            raise ValueError(f"fallback_value: must be a number for the number variable {self.key}")
        return self


class TemplateFields(BaseModel):
    """Every field optional (an update); ``TemplateCreate`` requires name and html."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    name: str | None = Field(None, min_length=1, max_length=200, examples=["welcome"])
    alias: str | None = Field(None, examples=["welcome-email"], description="Another id to send and manage it by.")
    from_: str | None = Field(None, alias="from", examples=["Acme <hello@acme.test>"])
    subject: str | None = Field(None, max_length=998, examples=["Welcome, {{{FIRST_NAME}}}"])
    reply_to: str | list[str] | None = Field(None, description="Address or list of addresses.")
    html: str | None = Field(None, examples=["<p>Hello {{{FIRST_NAME}}}</p>"])
    text: str | None = Field(None, description="Plain text; derived from the HTML when absent.")
    variables: list[VariableIn] | None = Field(None, max_length=MAX_VARIABLES)

    @field_validator("alias")
    @classmethod
    def _alias(cls, v: str | None) -> str | None:
        if v is not None and not ALIAS.fullmatch(v):
            raise ValueError("1-100 letters, digits, _ . - (starting with a letter or digit)")
        return v

    @field_validator("from_")
    @classmethod
    def _from(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                parse_mailbox(v)
            except AddressError as exc:
                raise ValueError(str(exc)) from None
        return v

    @field_validator("subject")
    @classmethod
    def _subject(cls, v: str | None) -> str | None:
        if v is not None and has_forbidden_chars(v):
            raise ValueError("must not contain line breaks or NUL")
        return v

    @field_validator("reply_to")
    @classmethod
    def _reply_to(cls, v: str | list[str] | None) -> list[str] | None:
        if v is None:
            return None
        items = [v] if isinstance(v, str) else v
        if len(items) > 50:
            raise ValueError("at most 50 addresses")
        for item in items:
            try:
                parse_mailbox(item)
            except AddressError as exc:
                raise ValueError(str(exc)) from None
        return list(items)

    @field_validator("variables")
    @classmethod
    def _unique(cls, v: list[VariableIn] | None) -> list[VariableIn] | None:
        keys = [x.key for x in v or ()]
        if dup := next((k for k in keys if keys.count(k) > 1), None):
            raise ValueError(f"{dup} is declared twice")
        return v

    @model_validator(mode="after")
    def _size(self) -> Self:
        size = sum(len((s or "").encode("utf-8", "surrogatepass")) for s in (self.subject, self.html, self.text))
        if size > MAX_TEMPLATE_BYTES:
            raise ValueError(f"html: subject, html and text together are {size} bytes, over the limit of "
                             f"{MAX_TEMPLATE_BYTES} bytes")
        return self

    def given(self) -> dict[str, Any]:
        """The fields the request set (an explicit null included), by field name."""
        return {name: getattr(self, name) for name in self.model_fields_set}


class TemplateCreate(TemplateFields):
    name: str = Field(min_length=1, max_length=200, examples=["welcome"])
    html: str = Field(examples=["<p>Hello {{{FIRST_NAME}}}</p>"])
