"""Retention: how long readings are kept, per city, on either storage path.

Whole days older than the longest retention of any city go at once (plain path: the
daily partitions are dropped; TimescaleDB: the chunks). Cities that keep less lose
their older rows by a bounded delete, together with their rollups.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg

DEFAULT_KEEP_DAYS = 400


@dataclass(frozen=True)
class RetentionResult:
    dropped_partitions: int
    deleted_rows: int


def set_retention(conn: psycopg.Connection[Any], city: str, keep_days: int) -> None:
    conn.execute(
        "INSERT INTO retention (city, keep_days) VALUES (%s, %s)"
        " ON CONFLICT (city) DO UPDATE SET keep_days = EXCLUDED.keep_days",
        (city, keep_days),
    )


def apply_retention(
    conn: psycopg.Connection[Any], now: datetime, default_days: int = DEFAULT_KEEP_DAYS
) -> RetentionResult:
    """Drop and delete what every city's retention has expired, as of ``now``."""
    rules = conn.execute("SELECT city, keep_days FROM retention").fetchall()
    longest = max([default_days, *(days for _, days in rules)])
    with conn.transaction():
        row = conn.execute(
            "SELECT cityops_drop_partitions_before(%s::date)",
            ((now - timedelta(days=longest)).date(),),
        ).fetchone()
        dropped = int(row[0]) if row else 0
        oldest_kept = now - timedelta(days=longest)
        for table in ("readings_1m", "readings_1h"):
            if _is_table(conn, table):
                conn.execute(
                    f"DELETE FROM {table} WHERE bucket < %s",  # noqa: S608  # fixed table names
                    (oldest_kept,),
                )
        deleted = 0
        for city, days in rules:
            cutoff = now - timedelta(days=days)
            deleted += conn.execute(
                "DELETE FROM readings WHERE city = %s AND ts < %s", (city, cutoff)
            ).rowcount
            for table in ("readings_1m", "readings_1h"):
                if _is_table(conn, table):
                    conn.execute(
                        f"DELETE FROM {table} WHERE city = %s AND bucket < %s",  # noqa: S608
                        (city, cutoff),
                    )
    return RetentionResult(dropped, deleted)


def _is_table(conn: psycopg.Connection[Any], name: str) -> bool:
    """Rollups are tables on the plain path (continuous aggregates prune themselves)."""
    row = conn.execute(
        "SELECT relkind FROM pg_class WHERE relname = %s AND relnamespace = 'public'::regnamespace",
        (name,),
    ).fetchone()
    return row is not None and row[0] == "r"
