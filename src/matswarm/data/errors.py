"""Errors raised by the data layer: each names the file and, where it applies, the column."""

from __future__ import annotations


class DataError(ValueError):
    """A table cannot be used for the task as given.

    ``source`` is the file (or org name for in-memory tables) and ``column`` the offending column,
    so the message can tell the user exactly what to fix.
    """

    def __init__(self, message: str, *, source: str | None = None, column: str | None = None):
        self.source = source
        self.column = column
        where = []
        if source:
            where.append(source)
        if column:
            where.append(f"column {column!r}")
        prefix = (", ".join(where) + ": ") if where else ""
        super().__init__(prefix + message)
