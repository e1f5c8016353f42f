"""Query parameters for the analytics store: the one place values meet SQL.

Queries name their values as server-side parameters (``{name:Type}``) and never format
them into the SQL text. The ClickHouse server adapter hands them to clickhouse-connect,
which renders each value in ClickHouse's text form for parameters; chDB takes that text
form ready-made, so ``bind`` renders it with the same function. A string's backslash,
tab, newline or quote is escaped; a list becomes an array literal; a datetime is UTC."""
from __future__ import annotations

from typing import Any


def bind(params: dict[str, Any] | None) -> dict[str, str]:
    """Every value of ``params`` as the escaped text ClickHouse parses for a ``{name:Type}``
    parameter (strings, numbers, bools, lists/tuples, datetimes, ``None`` → NULL)."""
    from clickhouse_connect.driver.binding import format_bind_value  # heavy import: only when querying

    return {name: format_bind_value(value) for name, value in (params or {}).items()}
