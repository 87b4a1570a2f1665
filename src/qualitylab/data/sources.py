"""Open a dataset: the single entry point to the data.

:func:`open_dataset` accepts a folder of files, a DuckDB database file, an ibis
connection URL or an existing ibis connection, and returns a :class:`Dataset`
that exposes each table of the contract as a lazy ibis expression. Nothing is
pulled into pandas here; every check and metric is an engine query.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import itertools
import operator
import os
import weakref
from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ibis
import ibis.expr.types as ir
import pandas as pd
from ibis.backends import BaseBackend

from qualitylab.data.checkmemo import (
    CHECKS_TABLE,
    check_memo_path,
    read_check_memo,
    stored_checks,
    write_check_memo,
)
from qualitylab.data.checkmemo import check_memo_dir as check_memo_dir  # public, as before
from qualitylab.data.contract import TABLES, Check, Conformed, Problem, conform
from qualitylab.data.params import Parameters, load_parameters
from qualitylab.errors import DataContractError, ParameterError

__all__ = ["Dataset", "ValidationReport", "open_dataset", "REPORT_COLUMNS"]

REPORT_COLUMNS = [
    "table",
    "column",
    "check",
    "bad_rows",
    "example",
    "severity",
    "message",
]
_SEVERITY_ORDER = {"fatal": 0, "error": 1, "warning": 2, "info": 3}
_DB_SUFFIXES = (".duckdb", ".ddb", ".db")


@dataclass(frozen=True)
class ValidationReport:
    """Result of :meth:`Dataset.validate`.

    Attributes
    ----------
    frame : pandas.DataFrame
        One row per problem: ``table, column, check, bad_rows, example,
        severity, message``; sorted by severity.
    rows : dict
        Rows per present table.
    quarantined : dict
        Rows excluded from metrics per table (severity ``error``).
    """

    frame: pd.DataFrame
    rows: dict[str, int]
    quarantined: dict[str, int]

    @property
    def fatal(self) -> pd.DataFrame:
        """Problems that make the data unusable."""
        return self.frame[self.frame["severity"] == "fatal"]

    @property
    def ok(self) -> bool:
        """True when there is no fatal problem."""
        return self.fatal.empty

    def raise_if_fatal(self) -> None:
        """Raise :class:`DataContractError` describing every fatal problem."""
        if self.ok:
            return
        first = self.fatal.iloc[0]
        lines = [str(m) for m in self.fatal["message"]]
        raise DataContractError(
            "the data breaks the contract:\n  " + "\n  ".join(lines),
            table=str(first["table"]),
            column=str(first["column"]),
            check=str(first["check"]),
            bad_rows=None if pd.isna(first["bad_rows"]) else int(first["bad_rows"]),
            example=first["example"],
        )

    def to_text(self) -> str:
        """A readable report for the terminal."""
        lines = ["Tables: " + ", ".join(f"{t} ({n:,} rows)" for t, n in self.rows.items())]
        if self.frame.empty:
            lines.append("No problems found.")
        for sev in ("fatal", "error", "warning", "info"):
            part = self.frame[self.frame["severity"] == sev]
            if part.empty:
                continue
            head = {
                "fatal": "FATAL (the data cannot be used)",
                "error": "QUARANTINED (rows excluded from metrics)",
                "warning": "WARNINGS (rows kept)",
                "info": "INFO",
            }[sev]
            lines.append(f"\n{head}:")
            for _, r in part.iterrows():
                lines.append(f"  - {r['message']}")
        if any(self.quarantined.values()):
            q = ", ".join(f"{t}: {n:,}" for t, n in self.quarantined.items() if n)
            lines.append(f"\nQuarantined rows: {q}")
        lines.append("\nResult: " + ("FAILED" if not self.ok else "OK"))
        return "\n".join(lines)


class Dataset:
    """The tables of one dataset as lazy ibis expressions.

    Use :func:`open_dataset` rather than the constructor.

    Attributes
    ----------
    backend : ibis backend
        The engine (DuckDB by default).
    source : str
        Where the data came from (a secret-free description).
    params : Parameters
        Loaded parameters (market time zones, targets, thresholds).
    """

    def __init__(
        self,
        backend: BaseBackend,
        raw_tables: dict[str, ir.Table],
        *,
        source: str,
        params: Parameters,
        assume_utc: bool = False,
        locations: dict[str, str] | None = None,
    ) -> None:
        self.backend = backend
        self.source = source
        self.params = params
        self.assume_utc = assume_utc
        self._raw = dict(raw_tables)
        self._locations = dict(locations or {})
        self._conformed: dict[str, Conformed] = {}
        self._views: dict[str, ir.Table] = {}
        self._market: str | None = None  # set on a slice made by for_market
        self._slices: dict[str, Dataset] = {}
        # results of pure functions of a slice (a snapshot), see remember()
        self._memo: dict[Hashable, Any] = {}
        # per table: rows failing each (check, column), from validate(); and which
        # error checks fail at all (see _failing)
        self._check_counts: dict[str, dict[tuple[str, str, str], int]] = {}
        self._failing_checks: dict[str, dict[tuple[str, str, str], bool]] = {}
        # per table: its row count and failing checks as stored with the data
        # (``CHECKS_TABLE``), used while the table still has that many rows
        self._stored_checks: dict[str, tuple[int, dict[str, bool]]] = {}
        #: Columns added to ``decisions`` by :meth:`stacked`, usable in ``by=``.
        self.extra_grains: tuple[str, ...] = ()

    def __repr__(self) -> str:
        return f"Dataset({self.source!r}, tables={list(self.tables)})"

    @property
    def tables(self) -> tuple[str, ...]:
        """Names of the contract tables present, in contract order."""
        return tuple(t for t in TABLES if t in self._raw)

    def has(self, name: str) -> bool:
        """Whether a table is present."""
        return name in self._raw

    def location(self, name: str) -> str:
        """Where a table is read from (file, folder or database table)."""
        return self._locations.get(name, f"{self.source}:{name}")

    def raw(self, name: str) -> ir.Table:
        """The table as the engine reads it, before typing and quarantine."""
        self._require(name)
        return self._raw[name]

    def _require(self, name: str) -> None:
        if name not in TABLES:
            raise DataContractError(
                f"unknown table '{name}'; the contract has: {', '.join(TABLES)}", table=name
            )
        if name not in self._raw:
            raise DataContractError(
                f"table '{name}' is not in {self.source}; this analysis needs it "
                f"(present: {', '.join(self.tables) or 'none'})",
                table=name,
                check="missing_table",
            )

    def _conform(self, name: str) -> Conformed:
        if name not in self._conformed:
            self._require(name)
            self._conformed[name] = conform(
                self._raw[name],
                TABLES[name],
                known_markets=self.params.codes,
                assume_utc=self.assume_utc,
            )
        return self._conformed[name]

    def table(self, name: str, *, quarantine: bool = True) -> ir.Table:
        """A contract table, typed, with quarantined rows excluded.

        Parameters
        ----------
        name : str
            Table name from the contract (e.g. ``"decisions"``).
        quarantine : bool, default True
            Exclude rows that fail an ``error``-severity check.

        Returns
        -------
        ibis.Table
            A lazy expression; nothing is computed.

        Raises
        ------
        DataContractError
            If the table is absent or its schema breaks the contract.
        """
        if quarantine and name in self._views:
            return self._views[name]
        conformed = self._conform(name)
        if conformed.schema_fatal:
            p = conformed.schema_fatal[0]
            raise DataContractError(
                f"{p.message} [{self.location(name)}]",
                table=p.table,
                column=p.column,
                check=p.check,
            )
        staged = conformed.staged
        assert staged is not None
        if quarantine:
            own = [c for c in self._conform(name).checks if c.severity == "error"]
            cross = [c for c in self._cross_checks(name) if c.severity == "error"]
            failing = self._failing(name, staged, [*own, *cross])
            bad = [c.predicate(staged) for c in own if failing[_check_key(c)]]
            if bad:
                any_bad = bad[0].fill_null(False)
                for b in bad[1:]:
                    any_bad = any_bad | b.fill_null(False)
                staged = staged.filter(~any_bad)
            if any(failing[_check_key(c)] for c in cross):
                # audits of unknown decisions: a top-level IN filter, which engines
                # plan as a semi-join (under OR, Spark evaluates it row by row)
                staged = staged.filter(staged.decision_id.isin(self._decision_ids()))
        hidden = [c for c in staged.columns if c.startswith("__raw_")]
        typed = staged.drop(*hidden) if hidden else staged
        if quarantine:
            typed = self._as_view(name, typed)
            self._views[name] = typed
        return typed

    @property
    def market(self) -> str | None:
        """The market this dataset was sliced to (:meth:`for_market`), else None."""
        return self._market

    def market_tables(self, market: str) -> dict[str, ir.Table]:
        """Typed, quarantined expressions for one market's rows of every table.

        ``qa_audits`` keeps the audits of the market's decisions, ``events``
        keeps the market's and the all-market (``*``) events, tables without a
        market column are left out.
        """
        if not self.has("decisions"):
            raise DataContractError(
                f"table 'decisions' is not in {self.source}; a market slice needs it",
                table="decisions",
                check="missing_table",
            )
        dec = self.table("decisions")
        dec = dec.filter(dec.market == market)
        out: dict[str, ir.Table] = {"decisions": dec}
        for name in self.tables:
            if name == "decisions":
                continue
            t = self.table(name)
            if name == "qa_audits":
                out[name] = t.filter(t.decision_id.isin(dec.decision_id))
            elif name == "events":
                out[name] = t.filter(t.market.isin([market, "*"]))
            elif "market" in t.columns:
                out[name] = t.filter(t.market == market)
        return out

    def for_market(self, market: str) -> Dataset:
        """One market's slice, computed once and kept in the engine.

        On DuckDB the market's typed, quarantined rows are stored as temporary
        tables, so the many queries of a per-market analysis (a detection
        scan runs dozens) neither re-read the other markets nor re-apply the
        contract checks. On Spark they are cached DataFrames (ibis
        ``Table.cache()``). The slice is a snapshot (reopen the dataset to see
        new data), reused while anyone holds it; the dataset itself keeps the
        three most recently used, so a loop over ten markets holds at most
        three in memory (a slice's temporary tables are dropped with it).
        Other engines get the dataset back unchanged: their own pruning applies.

        Parameters
        ----------
        market : str
            Market code.

        Returns
        -------
        Dataset
            A dataset holding only that market (``events`` keeps ``*`` rows).

        Examples
        --------
        >>> import tempfile
        >>> from qualitylab.demodata.generate import generate
        >>> folder = tempfile.mkdtemp()
        >>> _ = generate(folder, scale="small", seed=1, days=14, markets=["SG", "TH"])
        >>> sg = open_dataset(folder).for_market("SG")
        >>> sg.market, sg.table("decisions").market.nunique().to_pyarrow().as_py()
        ('SG', 1)
        """
        if self.market == market:
            return self
        if self.market is not None:
            raise ValueError(
                f"dataset is already sliced to {self.market}; cannot slice to {market}"
            )
        engine = getattr(self.backend, "name", "")
        if engine not in ("duckdb", "pyspark"):
            return self
        if market in self._slices:
            self._slices[market] = self._slices.pop(market)  # most recently used last
            return self._slices[market]
        exprs = self.market_tables(market)
        tables: dict[str, ir.Table] = {}
        stored: list[str] = []
        for name, expr in exprs.items():
            if engine == "pyspark":  # a cached DataFrame, kept in memory after first use
                tables[name] = expr.cache()
                continue
            tmp = f"ql_{name}_{market}_{id(self):x}_{next(_SLICE_IDS)}"
            sql = self.backend.compile(expr)
            self.backend.raw_sql(f'CREATE OR REPLACE TEMP TABLE "{tmp}" AS {sql}')
            tables[name] = self.backend.table(tmp)
            stored.append(tmp)
        sliced = Dataset(
            self.backend,
            tables,
            source=f"{self.source} [{market}]",
            params=self.params,
            assume_utc=self.assume_utc,
            locations={n: self.location(n) for n in tables},
        )
        sliced._views = dict(tables)  # already typed and quarantined
        sliced._market = market
        # the slice's temporary tables live as long as the slice: dropped when the
        # last reference to it goes (the cache below keeps only the latest few)
        if stored:
            weakref.finalize(sliced, _drop_tables, self.backend, stored)
        self._slices[market] = sliced
        while len(self._slices) > _SLICES_KEPT:
            self._slices.pop(next(iter(self._slices)))
        return sliced

    def remember(self, key: Hashable, compute: Callable[[], Any]) -> Any:
        """``compute()``, remembered under `key` while this market slice lives.

        A slice made by :meth:`for_market` is a snapshot of the market's rows,
        so a pure function of it with the same arguments gives the same result:
        an analyst re-running a cell, or switching a widget back, gets the
        remembered aggregates instead of re-scanning. The latest
        :data:`_MEMO_KEPT` results are kept. A dataset that is not a slice
        reads its sources afresh, so it computes every time. Callers must not
        modify what they get back (copy it first).

        Examples
        --------
        >>> import tempfile
        >>> from qualitylab.demodata.generate import generate
        >>> folder = tempfile.mkdtemp()
        >>> _ = generate(folder, scale="small", seed=1, days=14, markets=["SG"])
        >>> ds = open_dataset(folder)
        >>> calls = []
        >>> sg = ds.for_market("SG")
        >>> [sg.remember("k", lambda: calls.append(1) or len(calls)) for _ in range(2)]
        [1, 1]
        >>> [ds.remember("k", lambda: calls.append(1) or len(calls)) for _ in range(2)]
        [2, 3]
        """
        if self._market is None:
            return compute()
        if key in self._memo:
            self._memo[key] = self._memo.pop(key)  # most recently used last
            return self._memo[key]
        value = compute()
        self._memo[key] = value
        while len(self._memo) > _MEMO_KEPT:
            self._memo.pop(next(iter(self._memo)))
        return value

    @contextlib.contextmanager
    def kept(self, expr: ir.Table) -> Iterator[ir.Table]:
        """`expr` computed once and kept by the engine while the block runs.

        For several queries over one intermediate result (a scorecard's
        audits joined to their decisions): on DuckDB a temporary table
        (dropped at the end of the block), on Spark a cached DataFrame
        (unpersisted); other engines get `expr` back and recompute it.
        ibis ``Table.cache()`` would do this, but its release fails on the
        installed sqlglot (it emits ``DROP TABLE IF EXISTS`` without a name).

        Examples
        --------
        >>> import tempfile
        >>> from qualitylab.demodata.generate import generate
        >>> folder = tempfile.mkdtemp()
        >>> _ = generate(folder, scale="small", seed=1, days=14, markets=["SG"])
        >>> ds = open_dataset(folder)
        >>> with ds.kept(ds.table("qa_audits")) as audits:
        ...     int(audits.count().to_pyarrow().as_py()) > 0
        True
        """
        engine = getattr(self.backend, "name", "")
        if engine == "pyspark":
            cached = expr.cache()
            try:
                yield _typed_as(cached, expr)
            finally:
                with contextlib.suppress(Exception):
                    cached.release()
            return
        if engine != "duckdb":
            yield expr
            return
        tmp = f"ql_kept_{id(self):x}_{next(_SLICE_IDS)}"
        sql = self.backend.compile(expr)
        self.backend.raw_sql(f'CREATE OR REPLACE TEMP TABLE "{tmp}" AS {sql}')
        try:
            yield _typed_as(self.backend.table(tmp), expr)
        finally:
            _drop_tables(self.backend, [tmp])

    def stacked(self, dimensions: Sequence[str]) -> Dataset:
        """The dataset with its decisions stacked once per dimension.

        Each decision appears once for every dimension in ``dimensions``, with
        two added columns: ``dimension`` (its name) and ``segment`` (the
        decision's value of it, as text). Metrics grouped by
        ``["dimension", "segment", ...]`` then give every dimension's segments
        in one engine query instead of one query per dimension, which is how
        :func:`qualitylab.detect.scan` loads its series (each query costs ~0.1 s
        of ibis compilation, whatever the data size). The audits join the
        stacked decisions as before, so every dimension sees all of them.

        Parameters
        ----------
        dimensions : sequence of str
            Decision columns, e.g. ``["vendor", "queue"]``.

        Returns
        -------
        Dataset
            Sharing this dataset's engine and checks; only ``decisions`` differs.
        """
        dims = list(dimensions)
        if not dims:
            raise ParameterError("stacked() needs at least one dimension", key="dimensions")
        dec = self.table("decisions")
        unknown = [d for d in dims if d not in dec.columns]
        if unknown:
            raise DataContractError(
                f"decisions has no column {unknown[0]!r} to stack by", table="decisions"
            )
        parts = [dec.mutate(dimension=ibis.literal(d), segment=dec[d].cast("string")) for d in dims]
        out = copy.copy(self)
        out._views = {**self._views, "decisions": ibis.union(*parts, distinct=False)}
        out._slices = {}
        out._memo = {}
        out.extra_grains = (*self.extra_grains, "dimension", "segment")
        return out

    def _failing(
        self, name: str, staged: ir.Table, checks: list[Check]
    ) -> dict[tuple[str, str, str], bool]:
        """Which error checks some row of the table fails (one counting pass, cached).

        A check no row fails cannot change the quarantined table, so its
        predicate is left out of the filter every later query runs: on clean
        data the typed table is then read at the cost of its casts alone
        (re-evaluating ~15 row checks cost each query ~0.4 s per million rows).
        The counts come from :meth:`validate` when it ran first. If the counting
        query fails, every check is kept. A dataset assumes its source does not
        change while it is open.

        For tables read from files the answer is also kept on disk (see
        :func:`check_memo_dir`), keyed by each file's path, size and
        modification time, the contract's checks and the known markets, so
        other processes opening the same unchanged files (notebooks, the
        runner's workers) skip the pass.
        """
        if name not in self._failing_checks:
            keys = [_check_key(c) for c in checks]
            memo = check_memo_path(
                self._locations, name, keys, sorted(self.params.codes), self.assume_utc
            )
            stored = read_check_memo(memo)
            if stored is None:
                stored = self._checks_stored_with_data(name, staged, keys)
            try:
                if not checks:
                    counts = []
                elif stored is not None:
                    counts = [int(stored.get(repr(k), True)) for k in keys]
                elif name in self._check_counts:
                    known = self._check_counts[name]
                    counts = [known.get(k, 1) for k in keys]
                else:
                    ref = self._reference_ids() if name == "qa_audits" else None
                    counts = _count_failing(staged, checks, self._cross_checks(name), ref)
            except Exception:  # counting failed: keep every check
                counts, memo = [1] * len(checks), None
            self._failing_checks[name] = {k: n > 0 for k, n in zip(keys, counts, strict=True)}
            if stored is None and memo is not None:
                write_check_memo(memo, {repr(k): n > 0 for k, n in zip(keys, counts, strict=True)})
        failing = self._failing_checks[name]
        return {_check_key(c): failing.get(_check_key(c), True) for c in checks}

    def _checks_stored_with_data(
        self, name: str, staged: ir.Table, keys: list[tuple[str, str, str]]
    ) -> dict[str, bool] | None:
        """The table's failing checks as stored in the database, if they still apply.

        They apply when the stored record names every check the contract now
        runs on the table and the table still has the rows it had then.
        """
        if name not in self._stored_checks:
            return None
        rows, failing = self._stored_checks[name]
        if any(repr(k) not in failing for k in keys):
            return None
        try:
            if int(staged.count().to_pyarrow().as_py()) != rows:
                return None
        except Exception:  # cannot count: run the checking pass
            return None
        return failing

    def check_results(self) -> pd.DataFrame:
        """Which contract checks each present table fails, to store with the data.

        Runs the checking pass of every table not checked yet. Written as
        ``CHECKS_TABLE`` into a DuckDB database that also holds the tables
        (the runner's market caches do), it spares every later
        :func:`open_dataset` of that database the pass, for as long as each
        table keeps its row count and the contract its checks.

        Returns
        -------
        pandas.DataFrame
            One row per table and error check: ``table``, ``check`` (its key),
            ``failing`` (some row fails it) and the table's ``rows``.

        Examples
        --------
        >>> import tempfile
        >>> from qualitylab.demodata.generate import generate
        >>> folder = tempfile.mkdtemp()
        >>> _ = generate(folder, scale="small", seed=1, days=14, markets=["SG"])
        >>> res = open_dataset(folder).check_results()
        >>> res.columns.tolist(), "decisions" in set(res["table"]), bool(res["failing"].any())
        (['table', 'check', 'failing', 'rows'], True, False)
        """
        rows = []
        for name in self.tables:
            if self._conform(name).schema_fatal:
                continue
            self.table(name)  # runs (or recalls) the table's checking pass
            staged = self._conform(name).staged
            assert staged is not None
            n = int(staged.count().to_pyarrow().as_py())
            for key, failing in self._failing_checks.get(name, {}).items():
                rows.append({"table": name, "check": repr(key), "failing": failing, "rows": n})
        frame = pd.DataFrame(rows, columns=["table", "check", "failing", "rows"])
        return frame.astype(
            {"table": "string", "check": "string", "failing": bool, "rows": "int64"}
        )

    def _as_view(self, name: str, expr: ir.Table) -> ir.Table:
        """Register the typed, quarantined table as a temporary view.

        Later queries then reference the view by name, so the engine does not
        recompile the typing and quarantine logic into every query (ibis
        compilation of that tree costs ~0.3 s a query). Falls back to the
        expression when the backend cannot create a view.
        """
        view = f"ql_{name}_{id(self):x}"
        try:
            if self.backend.name == "duckdb":
                sql = self.backend.compile(expr)
                self.backend.raw_sql(f'CREATE OR REPLACE TEMP VIEW "{view}" AS {sql}')
                return self.backend.table(view)
            return self.backend.create_view(view, expr, overwrite=True)
        except Exception:  # a backend without (temporary) views: keep the expression
            return expr

    def _error_checks(self, name: str) -> list[Check]:
        checks = [c for c in self._conform(name).checks if c.severity == "error"]
        checks.extend(c for c in self._cross_checks(name) if c.severity == "error")
        return checks

    def _decision_ids(self) -> ir.Column:
        """The typed decisions' non-null ids (the reference of audits)."""
        typed = self._conform("decisions").typed
        return typed.filter(typed.decision_id.notnull()).decision_id

    def _reference_ids(self) -> ir.Table | None:
        """The decisions' ids as a one-column table (for counting audits of unknown ids)."""
        if not self.has("decisions") or self._conform("decisions").schema_fatal:
            return None
        typed = self._conform("decisions").typed
        return typed.filter(typed.decision_id.notnull()).select("decision_id")

    def _cross_checks(self, name: str) -> list[Check]:
        """Checks that look at another table (audits of unknown decisions)."""
        if name != "qa_audits" or not self.has("decisions"):
            return []
        dec = self._conform("decisions")
        if dec.schema_fatal:
            return []
        ids = self._decision_ids()
        return [
            Check(
                "qa_audits",
                "decision_id",
                "unknown_decision",
                "error",
                lambda t: ~t.decision_id.isin(ids),
                lambda t: ibis.literal("audit_id=").concat(
                    t.audit_id, ibis.literal(", decision_id="), t.decision_id
                ),
                "audits of a decision_id that is not in decisions",
            )
        ]

    def validate(self, *, raise_on_fatal: bool = False) -> ValidationReport:
        """Check every present table against the contract, in the engine.

        Parameters
        ----------
        raise_on_fatal : bool, default False
            Raise :class:`DataContractError` when a fatal problem is found.

        Returns
        -------
        ValidationReport
            The tidy problem table with counts and examples.
        """
        records: list[dict[str, Any]] = []
        rows: dict[str, int] = {}
        quarantined: dict[str, int] = {}
        for name, spec in TABLES.items():
            if name not in self._raw:
                sev = "fatal" if spec.required else "info"
                msg = (
                    f"required table '{name}' is missing from {self.source}"
                    if spec.required
                    else f"optional table '{name}' is absent; analyses that need it are skipped"
                )
                records.append(_record(name, "", "missing_table", None, None, sev, msg))
                continue
            records.extend(self._validate_table(name, rows, quarantined))
        frame = pd.DataFrame.from_records(records, columns=REPORT_COLUMNS)
        frame["bad_rows"] = frame["bad_rows"].astype("Int64")
        frame = frame.sort_values(
            "severity", key=lambda s: s.map(_SEVERITY_ORDER), kind="stable"
        ).reset_index(drop=True)
        report = ValidationReport(frame=frame, rows=rows, quarantined=quarantined)
        if raise_on_fatal:
            report.raise_if_fatal()
        return report

    def _validate_table(
        self, name: str, rows: dict[str, int], quarantined: dict[str, int]
    ) -> list[dict[str, Any]]:
        where = self.location(name)
        conformed = self._conform(name)
        out = [_from_problem(p, where) for p in conformed.problems]
        staged = conformed.staged
        if conformed.schema_fatal or staged is None:
            return out
        checks = [*conformed.checks, *self._cross_checks(name)]
        aggs: dict[str, ir.Value] = {"__n": staged.count()}
        for i, chk in enumerate(checks):
            aggs[f"c{i}"] = chk.predicate(staged).fill_null(False).cast("int64").sum()
        bad_any = None
        error_checks = [c for c in checks if c.severity == "error"]
        for chk in error_checks:
            p = chk.predicate(staged).fill_null(False)
            bad_any = p if bad_any is None else bad_any | p
        if bad_any is not None:
            aggs["__q"] = bad_any.cast("int64").sum()
        counts = _engine(lambda: staged.aggregate(**aggs).to_pandas().iloc[0], name, where)
        n = int(counts["__n"])
        rows[name] = n
        self._check_counts[name] = {
            _check_key(c): int(counts[f"c{i}"] or 0) for i, c in enumerate(checks)
        }
        quarantined[name] = int(counts.get("__q", 0) or 0)
        if n == 0:
            sev = "fatal" if TABLES[name].required else "warning"
            out.append(
                _record(
                    name, "", "empty_table", 0, None, sev, f"table '{name}' ({where}) has no rows"
                )
            )
            return out
        for i, chk in enumerate(checks):
            bad = int(counts[f"c{i}"] or 0)
            if bad == 0:
                continue
            example = _engine(
                lambda c=chk: (
                    staged.filter(c.predicate(staged).fill_null(False))
                    .select(ex=c.example(staged))
                    .limit(1)
                    .to_pandas()["ex"]
                ),
                name,
                where,
            )
            ex = str(example.iloc[0]) if len(example) else None
            action = {"fatal": "", "error": " (quarantined)", "warning": " (kept)"}.get(
                chk.severity, ""
            )
            msg = (
                f"{name}.{chk.column}: {bad:,} of {n:,} rows have {chk.describe}{action}; e.g. {ex}"
            )
            out.append(_record(name, chk.column, chk.check, bad, ex, chk.severity, msg))
        key = TABLES[name].key
        if key:
            out.extend(self._duplicates(name, staged, key, where))
        return out

    def _duplicates(
        self, name: str, staged: ir.Table, key: str, where: str
    ) -> list[dict[str, Any]]:
        dup = staged.group_by(key).aggregate(k=staged.count()).filter(lambda t: t.k > 1)
        res = _engine(
            lambda: dup.aggregate(rows=dup.k.sum(), ex=dup[key].min()).to_pandas().iloc[0],
            name,
            where,
        )
        if pd.isna(res["rows"]) or int(res["rows"]) == 0:
            return []
        bad = int(res["rows"])
        msg = (
            f"{name}.{key}: {bad:,} rows share a {key} with another row (must be unique); "
            f"e.g. {key}={res['ex']}"
        )
        return [_record(name, key, "duplicate_key", bad, f"{key}={res['ex']}", "fatal", msg)]


def _count_failing(
    staged: ir.Table,
    checks: list[Check],
    cross_checks: list[Check],
    reference: ir.Table | None = None,
) -> list[int]:
    """Rows failing each check; all zeros after one cheap pass when none fails.

    Clean data is the common case: one pass asks whether any check fails
    (cheaper than a count per check), then counts follow only if one does. A
    check against another table is its own filter: under OR, Spark evaluates
    the IN row by row. With `reference` (the decisions' ids), whether an
    audit's decision is unknown is asked as an anti-join, which the engine
    builds on the audits instead of on every decision id (DuckDB on 10.4M
    decisions: 2.3 s instead of 6.0 s).
    """
    preds = [c.predicate(staged).fill_null(False) for c in checks]
    other = {_check_key(c) for c in cross_checks}
    own = [p for c, p in zip(checks, preds, strict=True) if _check_key(c) not in other]
    probes: list[ir.Table] = [staged.filter(functools.reduce(operator.or_, own))] if own else []
    for c, p in zip(checks, preds, strict=True):
        if _check_key(c) not in other:
            continue
        if reference is not None and c.check == "unknown_decision":
            known = staged.filter(staged.decision_id.notnull())
            probes.append(known.anti_join(reference, "decision_id"))
        else:
            probes.append(staged.filter(p))
    if not any(bool(t.limit(1).count().to_pandas()) for t in probes):
        return [0] * len(checks)
    aggs = {f"c{i}": p.cast("int64").sum() for i, p in enumerate(preds)}
    row = staged.aggregate(**aggs).to_pandas().iloc[0]
    return [int(row[f"c{i}"] or 0) for i in range(len(checks))]


#: Market slices a dataset keeps for reuse (each holds a market's rows in memory).
_SLICES_KEPT = 3
#: Results a market slice remembers (:meth:`Dataset.remember`).
_MEMO_KEPT = 32
_SLICE_IDS = itertools.count()


def _typed_as(kept: ir.Table, expr: ir.Table) -> ir.Table:
    """A kept result with the expression's column types.

    The engine may store a column in another type than ibis gave it: a float
    literal such as ``1.0`` becomes ``DECIMAL(2,1)`` in DuckDB and Spark, and
    decimal arithmetic on it then rounds. Such columns are cast back.
    """
    want, got = expr.schema(), kept.schema()
    back = {c: kept[c].cast(want[c]) for c in want.names if got[c] != want[c]}
    return kept.mutate(**back) if back else kept


def _drop_tables(backend: BaseBackend, names: list[str]) -> None:
    for name in names:  # best effort: the connection may already be closed
        with contextlib.suppress(Exception):
            backend.raw_sql(f'DROP TABLE IF EXISTS "{name}"')


def _check_key(check: Check) -> tuple[str, str, str]:
    return (check.check, check.column, check.describe)


def _record(
    table: str,
    column: str,
    check: str,
    bad: int | None,
    example: str | None,
    severity: str,
    message: str,
) -> dict[str, Any]:
    return {
        "table": table,
        "column": column,
        "check": check,
        "bad_rows": bad,
        "example": example,
        "severity": severity,
        "message": message,
    }


def _from_problem(p: Problem, where: str) -> dict[str, Any]:
    return _record(
        p.table, p.column, p.check, p.bad_rows, p.example, p.severity, f"{p.message} [{where}]"
    )


def _engine(fn: Any, table: str, where: str) -> Any:
    """Run an engine query, turning engine read errors into contract errors."""
    try:
        return fn()
    except DataContractError:
        raise
    except Exception as exc:  # the engine's own error types vary by backend
        raise DataContractError(
            f"table '{table}' ({where}) could not be read by the engine: {_first_line(exc)}",
            table=table,
            check="unreadable",
        ) from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


def _read_folder(
    folder: Path, names: Sequence[str]
) -> tuple[BaseBackend, dict[str, ir.Table], dict[str, str]]:
    con = ibis.duckdb.connect()
    tables: dict[str, ir.Table] = {}
    locations: dict[str, str] = {}
    for name in names:
        candidates = [
            folder / f"{name}.parquet",
            folder / name,
            folder / f"{name}.csv",
        ]
        found = [c for c in candidates if c.exists()]
        if not found:
            continue
        if len(found) > 1:
            raise DataContractError(
                f"table '{name}' is ambiguous in {folder}: found "
                f"{', '.join(str(f.name) for f in found)}; keep one",
                table=name,
                check="ambiguous_table",
            )
        path = found[0]
        locations[name] = str(path)
        tables[name] = _engine(lambda p=path, n=name: _read_one(con, p, n), name, str(path))
    return con, tables, locations


def _read_one(con: BaseBackend, path: Path, name: str) -> ir.Table:
    if path.is_dir():
        files = sorted(str(p) for p in path.rglob("*.parquet"))
        if not files:
            raise DataContractError(
                f"table '{name}': folder {path} holds no .parquet files",
                table=name,
                check="empty_folder",
            )
        return con.read_parquet(files, table_name=f"src_{name}")
    if path.suffix == ".csv":
        _check_utf8(path, name)
        return con.read_csv(str(path), table_name=f"src_{name}", all_varchar=True, header=True)
    return con.read_parquet(str(path), table_name=f"src_{name}")


def _check_utf8(path: Path, name: str, chunk: int = 1 << 20) -> None:
    """Refuse a CSV file that is not UTF-8, naming the byte offset."""
    offset = 0
    tail = b""
    with path.open("rb") as fh:
        while True:
            block = fh.read(chunk)
            if not block:
                break
            data = tail + block
            try:
                data.decode("utf-8")
                tail = b""
            except UnicodeDecodeError as exc:
                if exc.start >= len(data) - 3 and exc.reason == "unexpected end of data":
                    tail = data[exc.start :]
                    offset += exc.start
                    continue
                raise DataContractError(
                    f"table '{name}' ({path}) is not UTF-8 text: byte "
                    f"{offset + exc.start - len(tail) if tail else offset + exc.start} "
                    f"({data[exc.start : exc.start + 1]!r}) cannot be decoded; "
                    "save the file as UTF-8",
                    table=name,
                    check="encoding",
                    example=repr(data[max(0, exc.start - 10) : exc.start + 10]),
                ) from None
            offset += len(block)
    if tail:
        raise DataContractError(
            f"table '{name}' ({path}) is not UTF-8 text: truncated character at the end",
            table=name,
            check="encoding",
        )


def _redact(url: str) -> str:
    """Hide a password in a connection URL."""
    if "://" not in url or "@" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"


def open_dataset(
    source: str | os.PathLike[str] | BaseBackend,
    *,
    parameters: Parameters | str | os.PathLike[str] | None = None,
    assume_utc: bool = False,
) -> Dataset:
    """Open a dataset from a folder, a DuckDB file, a URL or an ibis connection.

    Parameters
    ----------
    source : path, str or ibis backend
        - a folder holding, per table, ``name.parquet``, a folder ``name/`` of
          Parquet files, or ``name.csv``;
        - a DuckDB database file (``.duckdb``/``.ddb``/``.db``) with tables of
          the contract's names;
        - an ibis connection URL (``"duckdb:///path.ddb"``, ``"trino://..."``);
        - an existing ibis connection (DuckDB, PySpark, ...).
    parameters : Parameters or path, optional
        Loaded parameters or their folder; found automatically when omitted.
    assume_utc : bool, default False
        Accept time-zone-naive timestamps as UTC instead of refusing them.

    Returns
    -------
    Dataset
        Lazy tables; call :meth:`Dataset.validate` to check the contract.

    Raises
    ------
    DataContractError
        If the source does not exist or a file cannot be read.

    Examples
    --------
    >>> import tempfile, pandas as pd
    >>> folder = tempfile.mkdtemp()
    >>> pd.DataFrame({"week_start": ["2026-01-05"], "market": ["SG"], "vendor": ["A"],
    ...     "metric": ["accuracy"], "value": [0.97]}).to_csv(f"{folder}/vendor_reported.csv",
    ...     index=False)
    >>> ds = open_dataset(folder)
    >>> ds.tables
    ('vendor_reported',)
    >>> ds.table("vendor_reported").value.sum().to_pyarrow().as_py()
    0.97
    """
    params = parameters if isinstance(parameters, Parameters) else load_parameters(parameters)
    names = list(TABLES)
    if isinstance(source, BaseBackend):
        return _from_backend(source, names, params, assume_utc, type(source).__module__)
    if isinstance(source, str) and "://" in source and not Path(source).exists():
        try:
            con = ibis.connect(source)
        except Exception as exc:
            raise DataContractError(
                f"cannot connect to {_redact(source)}: {_first_line(exc)}", check="connect"
            ) from None
        return _from_backend(con, names, params, assume_utc, _redact(source))
    path = Path(source)
    if not path.exists():
        raise DataContractError(
            f"data source {path} does not exist (expected a folder of tables, a DuckDB "
            "file or a connection URL)",
            check="missing_source",
        )
    if path.is_dir():
        con, tables, locations = _read_folder(path, names)
        if not tables:
            raise DataContractError(
                f"{path} holds none of the contract's tables "
                f"(looked for {', '.join(n + '.parquet|/|.csv' for n in names[:2])}, ...)",
                table="decisions",
                check="missing_table",
            )
        return Dataset(
            con,
            tables,
            source=str(path),
            params=params,
            assume_utc=assume_utc,
            locations=locations,
        )
    if path.suffix.lower() in _DB_SUFFIXES:
        try:
            con = ibis.duckdb.connect(str(path), read_only=True)
        except Exception as exc:
            raise DataContractError(
                f"{path} could not be opened as a DuckDB database: {_first_line(exc)}",
                check="unreadable",
            ) from None
        return _from_backend(con, names, params, assume_utc, str(path))
    if path.suffix.lower() in (".parquet", ".csv"):
        raise DataContractError(
            f"{path} is a single file; point --data at the folder holding it, with the file "
            f"named after its table (e.g. decisions{path.suffix})",
            check="missing_source",
        )
    raise DataContractError(
        f"{path}: unknown kind of source (expected a folder, a .duckdb file or a URL)",
        check="missing_source",
    )


def _from_backend(
    con: BaseBackend, names: Sequence[str], params: Parameters, assume_utc: bool, label: str
) -> Dataset:
    try:
        present = set(con.list_tables())
    except Exception as exc:
        raise DataContractError(
            f"cannot list tables of {label}: {_first_line(exc)}", check="connect"
        ) from None
    tables = {n: _instants_as_utc(con, con.table(n), n) for n in names if n in present}
    locations = {n: f"{label}:{n}" for n in tables}
    ds = Dataset(
        con, tables, source=label, params=params, assume_utc=assume_utc, locations=locations
    )
    if CHECKS_TABLE in present:
        ds._stored_checks = stored_checks(con)
    return ds


def _instants_as_utc(con: BaseBackend, table: ir.Table, name: str) -> ir.Table:
    """Type Spark's instant timestamps as UTC-aware.

    Spark's ``TimestampType`` is an instant (stored as UTC, shown in the session
    time zone, which ibis sets to UTC), but ibis reports it without a time zone,
    like the naive ``TimestampNTZType``. The contract refuses naive timestamps,
    so instants are cast to ``timestamp('UTC')`` (a no-op in Spark SQL) and
    ``TimestampNTZType`` columns stay naive (refused unless ``assume_utc``).
    Other backends report the time zone themselves and are left unchanged.
    """
    if getattr(con, "name", "") != "pyspark":
        return table
    try:
        from pyspark.sql.types import TimestampType

        fields = con._session.table(name).schema.fields  # type: ignore[attr-defined]
    except Exception:  # not a catalog table, or pyspark internals moved: leave it
        return table
    instants = [
        f.name for f in fields if type(f.dataType) is TimestampType and f.name in table.columns
    ]
    if not instants:
        return table
    utc = ibis.expr.datatypes.Timestamp(timezone="UTC")
    return table.mutate(**{c: table[c].cast(utc) for c in instants})
