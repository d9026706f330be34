"""Multi-row inserts compiled once and, on PostgreSQL, sent straight to the driver in one pipeline.

Issue 17's profile of the group-commit thread: of its CPU per stored decision, SQLAlchemy's execution
layer (cache-key generation, compiled-statement setup, result proxies, three times per batch) cost more
than the driver's own work. :class:`BulkInsert` compiles the ``INSERT`` once per dialect and column set
with SQLAlchemy -- the same SQL it would send -- and binds each value through the column type's own bind
processor -- the same values it would send -- then hands the rows to psycopg's ``executemany``.
:func:`pipelined` sends every insert of a transaction in one psycopg pipeline (one round trip instead
of one per statement; the commit follows as before) and raises a failed insert as SQLAlchemy's
:class:`~sqlalchemy.exc.IntegrityError` / :class:`~sqlalchemy.exc.DBAPIError`, so callers see the same
errors either way. Other dialects (SQLite) take the ordinary ``conn.execute(insert(table), rows)``.

Used inside a transaction the caller opened on ``conn`` (the driver's implicit transaction is that one).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Table, insert
from sqlalchemy.exc import DBAPIError

__all__ = ["BulkInsert", "pipelined"]


def _driver(conn: Connection) -> Any | None:
    """The psycopg connection under ``conn`` on PostgreSQL, else None."""
    if conn.dialect.name != "postgresql" or conn.dialect.driver != "psycopg":
        return None
    return conn.connection.driver_connection


@contextmanager
def pipelined(conn: Connection) -> Iterator[None]:
    """Send the statements of the block in one pipeline (PostgreSQL); errors as SQLAlchemy's."""
    pg = _driver(conn)
    if pg is None:
        yield
        return
    import psycopg

    try:
        with pg.pipeline():
            yield
    except psycopg.Error as exc:
        # the statement is unknown here (any of the block's); the driver's error says which
        raise DBAPIError.instance("pipelined insert", None, exc, psycopg.Error) from exc


class BulkInsert:
    """``INSERT INTO table`` of many rows with the same keys; thread-safe after the first use."""

    def __init__(self, table: Table) -> None:
        self.table = table
        self._compiled: dict[tuple[str, tuple[str, ...]], tuple[str, list[tuple[str, Any]]] | None] = {}

    def _prepare(self, conn: Connection, keys: tuple[str, ...]) -> tuple[str, list[tuple[str, Any]]] | None:
        """(SQL, [(key, bind processor)]) for these keys, or None when SQLAlchemy would bind anything
        else (a column default, say): such rows take the ordinary path."""
        cache_key = (conn.dialect.name, keys)
        if cache_key not in self._compiled:
            compiled = insert(self.table).compile(dialect=conn.dialect, column_keys=list(keys))
            if set(compiled.params) != set(keys) or compiled.positional:
                self._compiled[cache_key] = None
            else:
                procs: list[tuple[str, Any]] = []
                for key in keys:
                    proc: Callable[[Any], Any] | None = (
                        self.table.c[key].type.dialect_impl(conn.dialect).bind_processor(conn.dialect))
                    procs.append((key, proc))
                self._compiled[cache_key] = (str(compiled), procs)
        return self._compiled[cache_key]

    def run(self, conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
        if not rows:
            return
        pg = _driver(conn)
        prepared = self._prepare(conn, tuple(rows[0])) if pg is not None else None
        if prepared is None or any(len(r) != len(rows[0]) for r in rows):
            conn.execute(insert(self.table), list(rows))
            return
        sql, procs = prepared
        bound = [{k: (p(r[k]) if p is not None else r[k]) for k, p in procs} for r in rows]
        with pg.cursor() as cur:
            cur.executemany(sql, bound)
