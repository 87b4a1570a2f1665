"""The data contract: table specifications and the checks that enforce them.

Each table of ``../shared/DESIGN.md`` is a :class:`TableSpec` of
:class:`ColumnSpec`. :func:`conform` turns a raw engine table into the typed
table the library uses (strings from CSV are parsed in the engine, time zones
normalised to UTC) and lists the checks that apply; :func:`run_checks` counts
bad rows for every check in one aggregate query per table, so validation works
on tens of millions of rows without loading them.

Severities
----------
``fatal``
    The data cannot be used: :class:`~qualitylab.errors.DataContractError`.
``error``
    The offending rows are quarantined: excluded from every metric, counted
    and reported.
``warning``
    Reported; rows are kept.
``info``
    For the record (e.g. an optional table is absent).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import ibis
import ibis.expr.datatypes as dt
import ibis.expr.types as ir

__all__ = [
    "ACTIONS",
    "QA_SOURCES",
    "ROUTINGS",
    "SEVERITIES",
    "TABLES",
    "Check",
    "ColumnSpec",
    "Problem",
    "TableSpec",
    "conform",
]

Kind = Literal["string", "timestamp", "float", "date"]
Severity = Literal["fatal", "error", "warning", "info"]
SEVERITIES: tuple[Severity, ...] = ("fatal", "error", "warning", "info")

ACTIONS = ("no_action", "warn", "restrict", "end_live", "ban")
ROUTINGS = ("human", "ai_assisted", "ai_auto")
QA_SOURCES = ("vendor", "internal")
TIERS = ("vendor_lead", "internal", "policy", "legal")
SEVERITY_LEVELS = ("sev1", "sev2", "sev3", "sev4")

MARKET_RE = r"^[A-Z]{2}$"
LANGUAGE_RE = r"^[a-z]{2}$"
# A timestamp string that states its offset: Z, +08, +0800 or +08:00.
_OFFSET_RE = r"(Z|z|[+-][0-9]{2}(:?[0-9]{2})?)$"


@dataclass(frozen=True)
class ColumnSpec:
    """One column of the contract."""

    name: str
    kind: Kind
    nullable: bool = False
    vocab: tuple[str, ...] | None = None
    pattern: str | None = None
    lower: float | None = None
    upper: float | None = None
    lower_inclusive: bool = True
    vocab_severity: Severity = "error"
    optional: bool = False  # the column may be absent from the table


@dataclass(frozen=True)
class TableSpec:
    """One table of the contract."""

    name: str
    columns: tuple[ColumnSpec, ...]
    key: str | None = None
    required: bool = False

    def column(self, name: str) -> ColumnSpec:
        """Return the spec of one column."""
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(name)

    @property
    def names(self) -> tuple[str, ...]:
        """Column names in contract order."""
        return tuple(c.name for c in self.columns)


def _c(name: str, kind: Kind = "string", nullable: bool = False, **kw: object) -> ColumnSpec:
    return ColumnSpec(name, kind, nullable, **kw)  # type: ignore[arg-type]


TABLES: dict[str, TableSpec] = {
    t.name: t
    for t in (
        TableSpec(
            "decisions",
            (
                _c("decision_id"),
                _c("created_at", "timestamp"),
                _c("decided_at", "timestamp", True),
                _c("market", pattern=MARKET_RE),
                _c("vendor"),
                _c("site"),
                _c("queue"),
                _c("language", pattern=LANGUAGE_RE),
                _c("moderator_id", nullable=True),
                _c("routing", vocab=ROUTINGS),
                _c("action", nullable=True, vocab=ACTIONS),
                _c("policy", nullable=True),
                _c("ai_model", nullable=True),
                _c("ai_score", "float", True, lower=0.0, upper=1.0),
                _c("ai_policy", nullable=True),
            ),
            key="decision_id",
            required=True,
        ),
        TableSpec(
            "qa_audits",
            (
                _c("audit_id"),
                _c("decision_id"),
                _c("audited_at", "timestamp"),
                _c("qa_source", vocab=QA_SOURCES),
                _c("auditor_id"),
                _c("qa_action", vocab=ACTIONS),
                _c("qa_policy"),
                _c("sample_weight", "float", True, lower=0.0, lower_inclusive=False),
                # the sampling stratum of the audit (optional column; see metrics.qa_metrics)
                _c("stratum", nullable=True, optional=True),
            ),
            key="audit_id",
        ),
        TableSpec(
            "staffing",
            (
                _c("date", "date"),
                _c("market", pattern=MARKET_RE),
                _c("vendor"),
                _c("site"),
                _c("queue"),
                _c("scheduled_hours", "float", lower=0.0),
                _c("productive_hours", "float", lower=0.0),
            ),
        ),
        TableSpec(
            "calibration",
            (
                _c("session_id"),
                _c("held_at", "timestamp"),
                _c("market", pattern=MARKET_RE),
                _c("case_id"),
                _c("rater_id"),
                _c("rater_group"),
                _c("label"),
                _c("expected_label", nullable=True),
            ),
        ),
        TableSpec(
            "vendor_reported",
            (
                _c("week_start", "date"),
                _c("market", pattern=MARKET_RE),
                _c("vendor"),
                _c("metric"),
                _c("value", "float"),
            ),
        ),
        TableSpec(
            "events",
            (
                _c("effective_at", "timestamp"),
                _c("market", pattern=r"^([A-Z]{2}|\*)$"),
                _c("kind"),
                _c("policy", nullable=True),
                _c("description"),
            ),
        ),
        TableSpec(
            "escalations",
            (
                _c("escalation_id"),
                _c("decision_id", nullable=True),
                _c("raised_at", "timestamp"),
                _c("resolved_at", "timestamp", True),
                _c("market", pattern=MARKET_RE),
                _c("vendor"),
                _c("queue"),
                _c("tier", vocab=TIERS),
                _c("severity", vocab=SEVERITY_LEVELS),
                _c("reason"),
            ),
            key="escalation_id",
        ),
        TableSpec(
            "red_team",
            (
                _c("item_id"),
                _c("created_at", "timestamp"),
                _c("market", pattern=MARKET_RE),
                _c("language", pattern=LANGUAGE_RE),
                _c("policy"),
                _c("attack"),
                _c("ai_model"),
                _c("ai_score", "float", lower=0.0, upper=1.0),
            ),
            key="item_id",
        ),
    )
}


@dataclass(frozen=True)
class Problem:
    """A problem found without scanning data (from the schema or the files)."""

    table: str
    column: str
    check: str
    severity: Severity
    message: str
    bad_rows: int | None = None
    example: str | None = None


@dataclass(frozen=True)
class Check:
    """A row-level check: ``predicate(staged)`` is true on bad rows."""

    table: str
    column: str
    check: str
    severity: Severity
    predicate: Callable[[ir.Table], ir.BooleanValue]
    example: Callable[[ir.Table], ir.Value]
    describe: str


@dataclass(frozen=True)
class Conformed:
    """A raw table conformed to its spec."""

    spec: TableSpec
    staged: ir.Table | None
    problems: tuple[Problem, ...] = ()
    checks: tuple[Check, ...] = field(default_factory=tuple)

    @property
    def typed(self) -> ir.Table:
        """The typed table (hidden ``__raw_*`` columns dropped)."""
        assert self.staged is not None
        hidden = [c for c in self.staged.columns if c.startswith("__raw_")]
        return self.staged.drop(*hidden) if hidden else self.staged

    @property
    def schema_fatal(self) -> tuple[Problem, ...]:
        """Problems that make the table unusable before any scan."""
        return tuple(p for p in self.problems if p.severity == "fatal")


_KIND_LABEL = {
    "string": "string",
    "timestamp": "timestamp (UTC-aware)",
    "float": "number",
    "date": "date",
}


def _is_nullish(src: dt.DataType) -> bool:
    """An all-null column (Parquet type ``null``), usable as any type."""
    return src.is_null() or (isinstance(src, dt.Unknown) and "NULL" in str(src).upper())


def _all_null(expr: ir.Column) -> bool:
    """Whether a column holds no value at all (one small engine query)."""
    return int(expr.count().to_pyarrow().as_py() or 0) == 0


def _raw_col(name: str) -> str:
    return f"__raw_{name}"


def _str(expr: ir.Value) -> ir.StringValue:
    return expr.cast("string")


def _example_of(table: TableSpec, column: str, raw: bool = False) -> Callable[[ir.Table], ir.Value]:
    col = _raw_col(column) if raw else column
    key = table.key

    def example(t: ir.Table) -> ir.Value:
        value = _str(t[col]).fill_null("<null>")
        if key and key != column:
            return ibis.literal(f"{key}=").concat(
                _str(t[key]).fill_null("<null>"), ibis.literal(f", {column}="), value
            )
        return value

    return example


def conform(
    raw: ir.Table,
    spec: TableSpec,
    *,
    known_markets: Sequence[str] | None = None,
    assume_utc: bool = False,
) -> Conformed:
    """Type a raw table according to its spec and list the checks that apply.

    Parameters
    ----------
    raw : ibis.Table
        The table as the engine reads it.
    spec : TableSpec
        Its contract.
    known_markets : sequence of str, optional
        Market codes that have a parameters file; rows of other markets are
        quarantined.
    assume_utc : bool, default False
        Treat time-zone-naive timestamps as UTC instead of refusing them.

    Returns
    -------
    Conformed
        The staged table (typed columns plus hidden raw copies of parsed
        columns), schema-level problems, and row-level checks.

    Examples
    --------
    >>> import ibis, pandas as pd
    >>> raw = ibis.memtable(pd.DataFrame({"week_start": ["2026-01-05"], "market": ["SG"],
    ...     "vendor": ["A"], "metric": ["accuracy"], "value": ["0.97"]}))
    >>> c = conform(raw, TABLES["vendor_reported"])
    >>> c.typed.schema()["value"]
    Float64(nullable=True)
    >>> [p.check for p in c.problems]
    []
    """
    schema = raw.schema()
    if any(c.optional and c.name not in schema for c in spec.columns):
        # an optional column that is absent is simply not part of this table
        spec = replace(
            spec, columns=tuple(c for c in spec.columns if c.name in schema or not c.optional)
        )
    problems: list[Problem] = []
    checks: list[Check] = []
    missing = [c.name for c in spec.columns if c.name not in schema]
    for name in missing:
        kind = spec.column(name).kind
        problems.append(
            Problem(
                spec.name,
                name,
                "missing_column",
                "fatal",
                f"table '{spec.name}' has no column '{name}' ({_KIND_LABEL[kind]}); "
                f"it has: {', '.join(schema.names) or 'no columns'}",
            )
        )
    if missing:
        return Conformed(spec, None, tuple(problems), ())

    mutations: dict[str, ir.Value] = {}
    for col in spec.columns:
        src = schema[col.name]
        expr = raw[col.name]
        if col.kind == "string":
            if src.is_string():
                continue
            if _is_nullish(src) or _all_null(expr):
                # An all-null column has no type of its own in Parquet (read as null/int).
                mutations[col.name] = expr.cast("string")
            elif src.is_integer() or src.is_boolean():
                mutations[col.name] = expr.cast("string")
                problems.append(
                    Problem(
                        spec.name,
                        col.name,
                        "coerced_type",
                        "warning",
                        f"table '{spec.name}', column '{col.name}': stored as {src}, read as text",
                    )
                )
            else:
                problems.append(_wrong_type(spec, col, src))
            continue
        if src.is_string():
            mutations[_raw_col(col.name)] = expr
            mutations[col.name] = _parse(expr, col.kind, assume_utc)
            checks.append(_unparseable_check(spec, col))
            if col.kind == "timestamp" and not assume_utc:
                checks.append(_naive_string_check(spec, col))
            continue
        if col.kind == "float":
            if src.is_numeric() or _is_nullish(src):
                mutations[col.name] = expr.cast("float64")
            else:
                problems.append(_wrong_type(spec, col, src))
        elif col.kind == "timestamp":
            if src.is_timestamp():
                if src.timezone is None and not assume_utc:
                    problems.append(
                        Problem(
                            spec.name,
                            col.name,
                            "naive_timestamp",
                            "fatal",
                            f"table '{spec.name}', column '{col.name}': timestamps have no time "
                            "zone; the contract requires UTC-aware timestamps. Write them with a "
                            "UTC offset (e.g. 2026-01-05T08:00:00Z) or open the data with "
                            "assume_utc=True if they are UTC.",
                        )
                    )
                else:
                    mutations[col.name] = expr.cast(dt.Timestamp(timezone="UTC"))
            elif _is_nullish(src):
                mutations[col.name] = expr.cast(dt.Timestamp(timezone="UTC"))
            else:
                problems.append(_wrong_type(spec, col, src))
        elif col.kind == "date":
            if src.is_date():
                pass
            elif _is_nullish(src) or src.is_timestamp():
                mutations[col.name] = expr.cast("date")
            else:
                problems.append(_wrong_type(spec, col, src))
    staged = raw.mutate(**mutations) if mutations else raw
    if any(p.severity == "fatal" for p in problems):
        return Conformed(spec, staged, tuple(problems), tuple(checks))

    checks.extend(_row_checks(spec, known_markets))
    return Conformed(spec, staged, tuple(problems), tuple(checks))


def _wrong_type(spec: TableSpec, col: ColumnSpec, src: dt.DataType) -> Problem:
    return Problem(
        spec.name,
        col.name,
        "wrong_type",
        "fatal",
        f"table '{spec.name}', column '{col.name}': expected {_KIND_LABEL[col.kind]}, found {src}",
    )


def _parse(expr: ir.StringValue, kind: Kind, assume_utc: bool) -> ir.Value:
    trimmed = expr.strip()
    text = trimmed.nullif("")
    if kind == "float":
        return text.try_cast("float64")
    if kind == "date":
        return text.try_cast("date")
    return text.try_cast(dt.Timestamp(timezone="UTC"))


def _unparseable_check(spec: TableSpec, col: ColumnSpec) -> Check:
    raw = _raw_col(col.name)

    def predicate(t: ir.Table) -> ir.BooleanValue:
        text = t[raw].strip().nullif("")
        return text.notnull() & t[col.name].isnull()

    return Check(
        spec.name,
        col.name,
        "unparseable",
        "fatal",
        predicate,
        _example_of(spec, col.name, raw=True),
        f"values that cannot be read as {_KIND_LABEL[col.kind]}",
    )


def _naive_string_check(spec: TableSpec, col: ColumnSpec) -> Check:
    raw = _raw_col(col.name)

    def predicate(t: ir.Table) -> ir.BooleanValue:
        text = t[raw].strip().nullif("")
        return text.notnull() & t[col.name].notnull() & ~text.re_search(_OFFSET_RE)

    return Check(
        spec.name,
        col.name,
        "naive_timestamp",
        "fatal",
        predicate,
        _example_of(spec, col.name, raw=True),
        "timestamps without a UTC offset (write 2026-01-05T08:00:00Z, or open the data "
        "with assume_utc=True)",
    )


def _row_checks(spec: TableSpec, known_markets: Sequence[str] | None) -> list[Check]:
    checks: list[Check] = []
    for col in spec.columns:
        name = col.name
        if not col.nullable:
            if col.kind == "string":

                def pred(t: ir.Table, n: str = name) -> ir.BooleanValue:
                    return t[n].isnull() | (t[n].strip() == "")

            else:

                def pred(t: ir.Table, n: str = name) -> ir.BooleanValue:
                    return t[n].isnull()

            sev: Severity = "fatal" if name == spec.key else "error"
            checks.append(
                Check(spec.name, name, "null", sev, pred, _example_of(spec, name), "empty values")
            )
        if col.vocab is not None:
            allowed = list(col.vocab)
            checks.append(
                Check(
                    spec.name,
                    name,
                    "vocabulary",
                    col.vocab_severity,
                    lambda t, n=name, a=allowed: t[n].notnull() & ~t[n].isin(a),
                    _example_of(spec, name),
                    f"values outside {{{', '.join(allowed)}}}",
                )
            )
        if col.pattern is not None:
            sev = "warning" if col.pattern == LANGUAGE_RE else "error"
            # known market codes that match pass without the regex (an IN list is
            # ~10x cheaper per row than a regular expression on 10M rows)
            fine = [
                c for c in (known_markets or ()) if name == "market" and re.search(col.pattern, c)
            ]
            checks.append(
                Check(
                    spec.name,
                    name,
                    "format",
                    sev,
                    lambda t, n=name, p=col.pattern, ok=fine: _unless_known(
                        t[n], ok, t[n].notnull() & ~t[n].re_search(p)
                    ),
                    _example_of(spec, name),
                    f"values not matching {col.pattern}",
                )
            )
        if col.lower is not None or col.upper is not None:
            checks.append(_range_check(spec, col))
    if known_markets is not None and "market" in spec.names:
        known = list(known_markets) + (["*"] if spec.name == "events" else [])
        checks.append(
            Check(
                spec.name,
                "market",
                "unknown_market",
                "error",
                lambda t: _unless_known(
                    t.market, known, t.market.re_search(r"^([A-Z]{2}|\*)$") & ~t.market.isin(known)
                ),
                _example_of(spec, "market"),
                "market codes with no parameters/markets/<CODE>.yaml "
                f"(known: {', '.join(sorted(known_markets)) or 'none'})",
            )
        )
    checks.extend(_table_specific(spec))
    return checks


def _unless_known(
    column: ir.StringValue, known: Sequence[str], fails: ir.BooleanValue
) -> ir.BooleanValue:
    """`fails`, evaluated only where `column` is not one of `known` (which pass).

    The same answer as `fails` whenever every `known` value passes it; DuckDB
    evaluates a CASE branch only on the rows that reach it.
    """
    if not known:
        return fails
    return ibis.cases((column.isin(list(known)), ibis.literal(False)), else_=fails)


def _range_check(spec: TableSpec, col: ColumnSpec) -> Check:
    name = col.name

    def pred(t: ir.Table) -> ir.BooleanValue:
        v = t[name]
        bad = ibis.literal(False)
        if col.lower is not None:
            bad = bad | ((v < col.lower) if col.lower_inclusive else (v <= col.lower))
        if col.upper is not None:
            bad = bad | (v > col.upper)
        return v.notnull() & (bad | v.isnan())

    lo = "" if col.lower is None else ("[" if col.lower_inclusive else "(") + f"{col.lower:g}"
    hi = "" if col.upper is None else f"{col.upper:g}]"
    if col.lower is not None and col.upper is None:
        desc = f"values {'<' if col.lower_inclusive else '<='} {col.lower:g}"
    else:
        desc = f"values outside {lo}, {hi}"
    return Check(spec.name, name, "range", "error", pred, _example_of(spec, name), desc)


def _table_specific(spec: TableSpec) -> list[Check]:
    out: list[Check] = []
    if spec.name == "decisions":
        out.append(
            Check(
                "decisions",
                "decided_at",
                "decided_before_created",
                "error",
                lambda t: t.decided_at.notnull() & (t.decided_at < t.created_at),
                lambda t: ibis.literal("decision_id=").concat(
                    t.decision_id,
                    ibis.literal(", created_at="),
                    _str(t.created_at),
                    ibis.literal(", decided_at="),
                    _str(t.decided_at),
                ),
                "decided_at earlier than created_at",
            )
        )
        out.append(
            Check(
                "decisions",
                "action",
                "decided_without_action",
                "error",
                lambda t: t.decided_at.notnull() & t.action.isnull(),
                _example_of(spec, "action"),
                "decided items (decided_at set) with no action",
            )
        )
        out.append(
            Check(
                "decisions",
                "action",
                "pending_with_action",
                "warning",
                lambda t: t.decided_at.isnull() & t.action.notnull(),
                _example_of(spec, "action"),
                "pending items (decided_at null) that already have an action",
            )
        )
        out.append(
            Check(
                "decisions",
                "policy",
                "policy_action_mismatch",
                "warning",
                lambda t: (
                    t.action.notnull()
                    & ((t.action == "no_action") != (t.policy.fill_null("none") == "none"))
                ),
                lambda t: ibis.literal("decision_id=").concat(
                    t.decision_id,
                    ibis.literal(", action="),
                    t.action.fill_null("<null>"),
                    ibis.literal(", policy="),
                    t.policy.fill_null("<null>"),
                ),
                "policy must be 'none' exactly when action is 'no_action'",
            )
        )
        out.append(
            Check(
                "decisions",
                "moderator_id",
                "human_without_moderator",
                "warning",
                lambda t: (t.routing != "ai_auto") & t.moderator_id.isnull(),
                _example_of(spec, "routing"),
                "human or ai_assisted decisions with no moderator_id",
            )
        )
    if spec.name == "qa_audits":
        out.append(
            Check(
                "qa_audits",
                "qa_policy",
                "policy_action_mismatch",
                "warning",
                lambda t: (t.qa_action == "no_action") != (t.qa_policy == "none"),
                _example_of(spec, "qa_policy"),
                "qa_policy must be 'none' exactly when qa_action is 'no_action'",
            )
        )
    if spec.name == "staffing":
        out.append(
            Check(
                "staffing",
                "productive_hours",
                "productive_above_scheduled",
                "warning",
                lambda t: t.productive_hours > t.scheduled_hours,
                _example_of(spec, "productive_hours"),
                "productive_hours greater than scheduled_hours",
            )
        )
    if spec.name == "escalations":
        out.append(
            Check(
                "escalations",
                "resolved_at",
                "resolved_before_raised",
                "error",
                lambda t: t.resolved_at.notnull() & (t.resolved_at < t.raised_at),
                _example_of(spec, "resolved_at"),
                "resolved_at earlier than raised_at",
            )
        )
    return out


def column_description(text: str) -> str:
    """Collapse whitespace in a message (helper for one-line reports)."""
    return re.sub(r"\s+", " ", text).strip()
