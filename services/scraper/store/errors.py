"""Telling "the database is gone" from "this statement is wrong"."""

from __future__ import annotations

import psycopg
from sqlalchemy.exc import DBAPIError


class DatabaseUnavailable(RuntimeError):
    """Postgres cannot be reached (stopped, restarting, network): the run cannot go on."""


def is_connection_problem(exc: BaseException) -> bool:
    """True when a database error means "the server is gone", not "this statement is wrong"."""
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        orig = exc.orig
        sqlstate = getattr(orig, "sqlstate", None) or ""
        # Class 40 (deadlock, serialization) is an OperationalError too, but the server is fine.
        return isinstance(orig, (psycopg.OperationalError, psycopg.InterfaceError)) and not sqlstate.startswith("40")
    return isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError))
