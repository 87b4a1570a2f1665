""":func:`generate`: validate the arguments, plan, draw market by market, write the files."""

from __future__ import annotations

import csv
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from qualitylab.data.params import Parameters, load_parameters
from qualitylab.demodata.generate.decisions import decisions_chunk, standalone_escalations
from qualitylab.demodata.generate.model import (
    DEFAULT_END_DATE,
    QUEUES,
    SCALES,
    YOUNG_QUEUE,
    YOUNG_QUEUE_DAYS,
    Effects,
    Market,
    Scale,
    ScaleSpec,
    build_market,
)
from qualitylab.demodata.generate.planted import (
    INCIDENT_COLUMNS,
    Findability,
    incident_findability,
    incident_views,
    plan_incidents,
)
from qualitylab.demodata.generate.tables import (
    calibration_table,
    events_table,
    launch_roster,
    red_team_table,
    staffing_table,
    vendor_reported_table,
)
from qualitylab.errors import ParameterError


# ---------------------------------------------------------------------------
# Public result
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class DemoSummary:
    """What :func:`generate` wrote.

    Attributes
    ----------
    path : Path
        The output folder.
    markets : tuple of str
        Markets generated.
    start_date, end_date : date
        First and last market-local date of the period.
    rows : Mapping[str, int]
        Rows written per table (``decisions``, ``qa_audits``, ...).
    incidents : int
        Rows of ``incidents.csv``.
    seconds : float
        Wall time of the generation.
    """

    path: Path
    markets: tuple[str, ...]
    start_date: date
    end_date: date
    rows: Mapping[str, int] = field(hash=False)
    incidents: int
    seconds: float

    @property
    def n_decisions(self) -> int:
        """Rows of the ``decisions`` table."""
        return self.rows["decisions"]


def _validate(
    markets: Sequence[str] | None, days: int, scale: str, seed: int, params: Parameters
) -> tuple[ScaleSpec, tuple[str, ...]]:
    if scale not in SCALES:
        raise ParameterError(
            f"scale must be one of {', '.join(SCALES)}, got {scale!r}", key="scale"
        )
    if isinstance(days, bool) or not isinstance(days, int) or days < 1:
        raise ParameterError(f"days must be an integer >= 1, got {days!r}", key="days")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ParameterError(f"seed must be an integer >= 0, got {seed!r}", key="seed")
    spec = SCALES[scale]
    if markets is None:
        codes = spec.markets
    else:
        if isinstance(markets, str):
            markets = [m for m in markets.split(",") if m.strip()]
        codes = tuple(dict.fromkeys(m.strip().upper() for m in markets))
        if not codes:
            raise ParameterError("markets must name at least one market, got none", key="markets")
    for code in codes:
        params.market(code)  # raises ParameterError naming the missing file
    return spec, codes


# ---------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------
def _fmt(x: float, digits: int) -> str:
    """A number for ``incidents.csv``: rounded, empty when undefined."""
    return "" if not math.isfinite(x) else f"{x:.{digits}f}"


def _write(table: pa.Table, path: Path) -> None:
    pq.write_table(table, path, compression="zstd")


def _with_ids(table: pa.Table, column: str, prefix: str, sort_keys: list[str]) -> pa.Table:
    table = table.sort_by([(k, "ascending") for k in sort_keys])
    ids = np.char.add(prefix, np.char.zfill(np.arange(1, table.num_rows + 1).astype(str), 8))
    i = table.schema.get_field_index(column)
    return table.set_column(i, column, pa.array(ids, pa.string()))


def generate(
    out: str | Path,
    *,
    markets: Sequence[str] | None = None,
    days: int = 90,
    scale: Scale = "demo",
    seed: int = 42,
    end_date: date | None = None,
    progress: Callable[[str], None] | None = None,
    parameters: Parameters | None = None,
    young_market: str | None = None,
    young_days: int = 14,
    incidents: bool = True,
) -> DemoSummary:
    """Write a synthetic qualitylab dataset with planted incidents.

    Parameters
    ----------
    out : str or Path
        Output folder; created if missing. Existing ``decisions/part-*.parquet``
        files and the tables below are replaced.
    markets : sequence of str, optional
        Market codes (each needs ``parameters/markets/<CODE>.yaml``). Defaults by
        scale: ``small`` SG, ID, TH; ``demo`` and ``large`` all ten markets.
    days : int, default 90
        Length of the period in days, ending on ``end_date`` (inclusive). The
        incidents sit in the last four weeks; 56 days or more leave a 28-day
        baseline before them.
    scale : {"small", "demo", "large"}, default "demo"
        About 50k, 1M or 10M+ decisions over 90 days in the default markets.
    seed : int, default 42
        Same arguments and seed give byte-identical files.
    end_date : date, optional
        Last market-local date of the period; default :data:`DEFAULT_END_DATE`.
    progress : callable, optional
        Called with one line of text per step.
    parameters : Parameters, optional
        Loaded parameters; found with :func:`~qualitylab.params.load_parameters`
        when omitted.
    young_market : str, optional
        A market that started recently (added to ``markets`` if not among
        them): it has only the last ``young_days`` days of data, its
        :data:`YOUNG_QUEUE` queue goes live :data:`YOUNG_QUEUE_DAYS` days
        before the end (first decisions on ``end_date - 4``), and no incident
        is planted in it. Its other tables start with its data; ``events``
        records the go-live (kind ``queue_launch``).
    young_days : int, default 14
        Days of history of ``young_market``, from 6 up to ``days``.
    incidents : bool, default True
        Plant the incidents; ``False`` gives clean data (``incidents.csv``
        then has only its header).

    Returns
    -------
    DemoSummary
        Output folder, rows per table, incident count and wall time.

    Raises
    ------
    ParameterError
        For an unknown scale or market, ``days < 1``, or ``young_days`` outside
        6..``days``.

    Notes
    -----
    Tables written: ``decisions/`` (Parquet parts), ``qa_audits``, ``staffing``,
    ``calibration``, ``vendor_reported``, ``events``, ``escalations``,
    ``red_team`` (one Parquet file each) and ``incidents.csv`` (columns
    :data:`INCIDENT_COLUMNS`, market-local ISO dates; ``findable`` follows the
    design rule of the module docstring, not a scan). Partner-reported
    ``volume`` counts every decision in the partner's queues that week,
    ``sla_compliance`` the share decided within the queue SLA (pending items
    past the SLA count as misses) and ``accuracy`` the share of its human
    decisions that match the latent truth. When the launch market of
    :data:`DEMO_LAUNCH` is generated, ``staffing`` also holds the launch's
    roster, dated after the period (its go-live week).

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     s = generate(tmp, markets=["SG"], days=30, scale="small")
    >>> s.n_decisions > 2000, s.rows["qa_audits"] > 0
    (True, True)
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     s = generate(tmp, markets=["SG"], days=30, scale="small", young_market="MY")
    ...     import pandas as pd
    ...     dec = pd.read_parquet(f"{tmp}/decisions", columns=["market", "created_at"])
    >>> s.markets, str(dec[dec.market == "MY"].created_at.min().tz_convert("Asia/Kuala_Lumpur").date())
    (('SG', 'MY'), '2026-11-09')
    """
    t0 = time.perf_counter()
    params = parameters if parameters is not None else load_parameters()
    spec, codes = _validate(markets, days, scale, seed, params)
    young = None
    if young_market is not None:
        young = young_market.strip().upper()
        params.market(young)  # raises ParameterError naming the missing file
        if (
            isinstance(young_days, bool)
            or not isinstance(young_days, int)
            or not YOUNG_QUEUE_DAYS < young_days <= days
        ):
            raise ParameterError(
                f"young_days must be an integer from {YOUNG_QUEUE_DAYS + 1} to days ({days}), "
                f"got {young_days!r}",
                key="young_days",
            )
        codes = codes if young in codes else (*codes, young)
    end = end_date or DEFAULT_END_DATE
    start = end - timedelta(days=days - 1)
    say = progress or (lambda _msg: None)
    out = Path(out)
    part_dir = out / "decisions"
    part_dir.mkdir(parents=True, exist_ok=True)
    for old in sorted(part_dir.glob("part-*.parquet")):
        old.unlink()

    planted = tuple(c for c in codes if c != young) if incidents else ()
    incidents_, effects = plan_incidents(planted, params, days, start)
    effects = {c: effects.get(c, Effects()) for c in codes}
    regress = tuple(e.ai_recall_drop[1] for e in effects.values() if e.ai_recall_drop)
    chunk = spec.chunk_days or days
    rows = dict.fromkeys(
        (
            "decisions",
            "qa_audits",
            "staffing",
            "calibration",
            "vendor_reported",
            "events",
            "escalations",
            "red_team",
        ),
        0,
    )
    plans: list[Market] = []
    findability: dict[int, Findability] = {}
    qa_parts: list[pa.Table] = []
    esc_parts: list[pa.Table] = []
    other: dict[str, list[pa.Table]] = {
        k: [] for k in ("staffing", "calibration", "vendor_reported", "red_team")
    }
    part = 0
    for code in codes:
        if code == young:
            m_start, m_days = end - timedelta(days=young_days - 1), young_days
            live = (QUEUES.index(YOUNG_QUEUE), young_days - YOUNG_QUEUE_DAYS)
        else:
            m_start, m_days, live = start, days, None
        m = build_market(code, params, spec, m_start, m_days, seed, effects[code], regress, live)
        mine = [(i, inc) for i, inc in enumerate(incidents_) if inc.market == code]
        m.views = incident_views(m, mine)
        for ci, d0 in enumerate(range(0, m_days, chunk)):
            d1 = min(d0 + chunk, m_days)
            res = decisions_chunk(m, d0, d1, seed, ci)
            _write(res.decisions, part_dir / f"part-{part:05d}.parquet")
            part += 1
            rows["decisions"] += res.decisions.num_rows
            qa_parts.append(res.qa)
            esc_parts.append(res.escalations)
            say(
                f"{code} {m_start + timedelta(days=d0)}..{m_start + timedelta(days=d1 - 1)}: "
                f"{res.decisions.num_rows:,} decisions"
            )
            del res
        esc_parts.append(standalone_escalations(m, seed, m.next_seq))
        other["staffing"].append(staffing_table(m, seed))
        if (roster := launch_roster(m)) is not None:
            other["staffing"].append(roster)
        other["vendor_reported"].append(vendor_reported_table(m, seed))
        other["calibration"].append(calibration_table(m, seed))
        other["red_team"].append(red_team_table(m, spec, seed))
        findability.update(incident_findability(m, mine, spec))
        m.vstats = m.human_items = np.zeros(0)
        m.views = []
        plans.append(m)

    tables = {
        "qa_audits": _with_ids(
            pa.concat_tables(qa_parts),
            "audit_id",
            "audit-",
            ["audited_at", "decision_id", "qa_source"],
        ),
        "escalations": _with_ids(
            pa.concat_tables(esc_parts), "escalation_id", "esc-", ["raised_at", "market", "reason"]
        ),
        "staffing": pa.concat_tables(other["staffing"]).sort_by(
            [(k, "ascending") for k in ("date", "market", "vendor", "site", "queue")]
        ),
        "vendor_reported": pa.concat_tables(other["vendor_reported"]).sort_by(
            [(k, "ascending") for k in ("week_start", "market", "vendor", "metric")]
        ),
        "calibration": pa.concat_tables(other["calibration"]).sort_by(
            [(k, "ascending") for k in ("held_at", "market", "case_id", "rater_group", "rater_id")]
        ),
        "red_team": pa.concat_tables(other["red_team"]).sort_by(
            [("created_at", "ascending"), ("item_id", "ascending")]
        ),
        "events": events_table(plans),
    }
    for name, table in tables.items():
        _write(table, out / f"{name}.parquet")
        rows[name] = table.num_rows
        say(f"{name}: {table.num_rows:,} rows")

    with (out / "incidents.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(INCIDENT_COLUMNS)
        for i, inc in enumerate(incidents_):
            f = findability[i]
            writer.writerow(
                [
                    inc.market,
                    inc.metric,
                    inc.dimension,
                    inc.segment,
                    (start + timedelta(days=inc.start)).isoformat(),
                    (start + timedelta(days=inc.end)).isoformat(),
                    inc.direction,
                    inc.description,
                    _fmt(f.expected_n, 1),
                    _fmt(f.planted_change, 4),
                    _fmt(f.detectable_change, 4),
                    f.findable,
                    f.series,
                ]
            )
    say(f"incidents.csv: {len(incidents_)} incidents")
    return DemoSummary(
        path=out,
        markets=codes,
        start_date=start,
        end_date=end,
        rows=rows,
        incidents=len(incidents_),
        seconds=round(time.perf_counter() - t0, 3),
    )
