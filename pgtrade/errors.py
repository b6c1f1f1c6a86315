"""User-facing errors: the CLI prints them as one line and exits non-zero, never with a traceback."""

from __future__ import annotations


class PgtradeError(Exception):
    """An error a user can act on; its message is the whole story (what failed and what to do)."""


class DatabaseUnavailable(PgtradeError):
    """The database server cannot be reached."""


class MigrationError(PgtradeError):
    """A migration file failed, drifted, or the server lacks a required extension."""
