"""The two schema variants, read with PostgreSQL's own parser (libpg_query).

The plain variant runs on the real PostgreSQL in the integration tests; TimescaleDB is not
available on the test machines, so its variant is checked here for what the shared
queries rely on: it parses, and it defines the same tables and columns under the same
names, its rollups being real-time continuous aggregates.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

import pglast
import pytest
from pglast import ast

from store.migrate import PLAIN, TIMESCALE, available


def _statements(variant: str) -> list[Any]:
    out: list[Any] = []
    for migration in available(variant):
        out += [raw.stmt for raw in pglast.parse_sql(migration.sql)]
    return out


def _output_name(target: ast.ResTarget) -> str:
    if target.name:
        return str(target.name)
    fields = target.val.fields  # a bare column reference keeps its column's name
    return str(fields[-1].sval)


def _relations(variant: str) -> dict[str, list[str]]:
    """Table and materialized view names → their column names, in order."""
    rels: dict[str, list[str]] = {}
    for st in _statements(variant):
        if isinstance(st, ast.CreateStmt):
            name = st.relation.relname
            cols = [c.colname for c in st.tableElts if isinstance(c, ast.ColumnDef)]
            likes = [c for c in st.tableElts if isinstance(c, ast.TableLikeClause)]
            rels[name] = cols + [col for like in likes for col in rels[like.relation.relname]]
        elif isinstance(st, ast.CreateTableAsStmt):
            rels[st.into.rel.relname] = [_output_name(t) for t in st.query.targetList]
    return rels


def test_every_migration_of_both_variants_parses() -> None:
    names = [m.name for v in (PLAIN, TIMESCALE) for m in available(v)]
    assert "rollup_refresh" in names
    for variant in (PLAIN, TIMESCALE):
        assert _statements(variant)
    files = [f.name for f in resources.files("store.migrations").iterdir()]
    assert sum(f.endswith(".sql") for f in files) == len(available(PLAIN)) + sum(
        m.variant == TIMESCALE for m in available(TIMESCALE)
    )


@pytest.mark.parametrize("table", ["readings", "readings_1m", "readings_1h", "rollup_watermark"])
def test_both_variants_define_the_same_columns(table: str) -> None:
    assert _relations(TIMESCALE)[table] == _relations(PLAIN)[table]


def test_timescale_rollups_are_real_time_continuous_aggregates() -> None:
    views = {
        st.into.rel.relname: {(o.defnamespace, o.defname): o.arg for o in st.into.options}
        for st in _statements(TIMESCALE)
        if isinstance(st, ast.CreateTableAsStmt)
    }
    assert set(views) == {"readings_1m", "readings_1h"}
    for options in views.values():
        assert ("timescaledb", "continuous") in options
        assert options[("timescaledb", "materialized_only")].sval == "false"


def test_timescale_variant_sets_up_hypertable_policies_and_an_open_watermark() -> None:
    calls: dict[str, list[Any]] = {}
    for st in _statements(TIMESCALE):
        if isinstance(st, ast.SelectStmt) and st.targetList:
            call = st.targetList[0].val
            if isinstance(call, ast.FuncCall):
                calls.setdefault(call.funcname[-1].sval, []).append(call)
    assert {
        "create_hypertable",
        "add_continuous_aggregate_policy",
        "add_compression_policy",
        "add_retention_policy",
    } <= set(calls)
    [hypertable] = calls["create_hypertable"]
    dimension = hypertable.args[1]
    assert isinstance(dimension, ast.FuncCall)
    assert dimension.funcname[-1].sval == "by_range"  # the TimescaleDB 2.13+ form
    inserts = [
        st
        for st in _statements(TIMESCALE)
        if isinstance(st, ast.InsertStmt) and st.relation.relname == "rollup_watermark"
    ]
    [insert] = inserts
    [[value]] = insert.selectStmt.valuesLists
    assert value.val.sval == "infinity"  # every bucket reads from the aggregates


class _Server:
    """What a PostgreSQL server answers to the two questions the choice asks."""

    def __init__(self, installed: bool, preload: str) -> None:
        self.installed, self.preload = installed, preload

    def execute(self, query: str, *_args: Any) -> Any:
        answer = self

        class Row:
            def fetchone(self) -> Any:
                if "pg_available_extensions" in query:
                    return (1,) if answer.installed else None
                return (answer.preload,)

        return Row()


@pytest.mark.parametrize(
    ("installed", "preload", "chosen"),
    [
        (False, "", False),
        (True, "", False),  # installed but not preloaded: CREATE EXTENSION would fail
        (True, "pg_stat_statements", False),
        (True, "pg_stat_statements, timescaledb", True),
        (True, "timescaledb", True),
    ],
)
def test_timescale_only_when_installed_and_preloaded(
    installed: bool, preload: str, chosen: bool
) -> None:
    from store.migrate import timescale_check

    ok, why = timescale_check(_Server(installed, preload))  # type: ignore[arg-type]
    assert ok is chosen
    assert why
    # CITYOPS_TIMESCALE=off (Settings.timescale) always takes the plain path.
    off, why_off = timescale_check(_Server(installed, preload), "off")  # type: ignore[arg-type]
    assert off is False
    assert "CITYOPS_TIMESCALE=off" in why_off
