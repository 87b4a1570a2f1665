"""A live demo: replay demo decisions as if they were happening now.

``qualitylab demo-stream --out DIR --market M [--speed 60] [--surge HH:MM]``
generates a clean demo dataset for one market (:func:`qualitylab.demo.generate`,
no planted incidents), shifts it by a whole number of weeks so that its
weekday and time of day line up with the start (the wall clock by default),
writes the history before the start at once, and then writes the decisions
created since the last part as a new Parquet part every few seconds, at
``speed`` simulated seconds per wall second. ``qualitylab watch --data DIR``
reads the folder while it grows.

Replay semantics
    A decision is written when it is *created*, with the ``decided_at`` it will
    have: the watch's definitions count an item as open while ``decided_at``
    is empty *or later than now*, so a row whose decision lies in the future
    is an open item until the clock reaches it. Items the demo left pending at
    its end get the queue's median response time, and escalations it left
    open their severity's median resolution time.

Readers never see half a part
    Each part is written under a hidden temporary name (``.part-….parquet.tmp``,
    which a reader globbing ``*.parquet`` skips) and renamed into place with
    :func:`os.replace`, atomic on POSIX: readers and the writer never block each
    other, and a part is either absent or complete.

The surge
    ``surge="HH:MM"`` (market-local) multiplies the arrivals of every queue by
    :data:`SURGE_FACTOR` for :data:`SURGE_MINUTES` simulated minutes from the
    first such time at or after the start: each item created in the window is
    copied ``SURGE_FACTOR - 1`` times (new ids, created within a minute of the
    original). The moderators do not triple: the copies routed to people wait
    in line, served first-in first-out at the queue's normal pace in the
    window (its original items per second), so the backlog grows by about the
    normal arrival rate during the surge and drains over the following hour.
    Copies routed ``ai_auto`` keep their original response time.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from qualitylab.errors import ParameterError

__all__ = [
    "SURGE_FACTOR",
    "SURGE_MINUTES",
    "Replay",
    "demo_stream",
    "plant_surge",
    "prepare_replay",
    "surge_start",
    "write_history",
    "write_part",
    "write_until",
]

#: Arrivals are multiplied by this during a surge.
SURGE_FACTOR = 3
#: Simulated minutes a surge lasts.
SURGE_MINUTES = 30
_TABLES = ("staffing", "escalations", "events")
_HUMAN = ("human", "ai_assisted")


@dataclass(frozen=True)
class Replay:
    """A market's demo decisions, shifted to the replay's clock.

    Attributes
    ----------
    market : str
    start : pandas.Timestamp
        Simulated start (UTC): decisions created up to it are the history.
    end : pandas.Timestamp
        Last ``created_at`` of the replay: the stream stops there.
    decisions : pandas.DataFrame
        Every decision (the contract's columns), sorted by ``created_at``.
    tables : dict
        ``staffing``, ``escalations``, ``events`` shifted the same way.
    surge : tuple of Timestamp, optional
        Start and end of the planted surge.
    schema : pyarrow.Schema
        The decisions' Parquet schema (every part is written with it).
    """

    market: str
    start: pd.Timestamp
    end: pd.Timestamp
    decisions: pd.DataFrame
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    surge: tuple[pd.Timestamp, pd.Timestamp] | None = None
    schema: Any = None


def surge_start(start: pd.Timestamp, hhmm: str, timezone: str) -> pd.Timestamp:
    """The first market-local ``HH:MM`` at or after ``start`` (UTC).

    Examples
    --------
    >>> str(surge_start(pd.Timestamp("2026-12-06 07:00Z"), "18:30", "Asia/Singapore"))
    '2026-12-06 10:30:00+00:00'
    >>> str(surge_start(pd.Timestamp("2026-12-06 11:00Z"), "18:30", "Asia/Singapore"))
    '2026-12-07 10:30:00+00:00'
    """
    try:
        hh, mm = (int(x) for x in str(hhmm).split(":"))
        if not (0 <= hh < 24 and 0 <= mm < 60):
            raise ValueError
    except ValueError:
        raise ParameterError(f"surge must be a time HH:MM; got {hhmm!r}", key="surge") from None
    local = start.tz_convert(timezone)
    at = local.normalize() + pd.Timedelta(hours=hh, minutes=mm)
    if at < local:
        at += pd.Timedelta(days=1)
    return at.tz_convert("UTC")


def plant_surge(
    decisions: pd.DataFrame,
    start: pd.Timestamp,
    *,
    factor: int = SURGE_FACTOR,
    minutes: float = SURGE_MINUTES,
    seed: int = 0,
) -> pd.DataFrame:
    """``decisions`` with a surge: arrivals x ``factor`` in ``[start, start + minutes)``.

    Pure. See the module docstring for how the extra items are decided.

    Returns
    -------
    pandas.DataFrame
        The input rows plus the copies (ids ``<id>-sN``), sorted by ``created_at``.

    Examples
    --------
    >>> t0 = pd.Timestamp("2026-12-06 10:00Z")
    >>> d = pd.DataFrame({"decision_id": ["a", "b"], "queue": ["live_stream"] * 2,
    ...     "routing": ["human"] * 2, "created_at": [t0, t0 + pd.Timedelta(minutes=40)],
    ...     "decided_at": [t0 + pd.Timedelta(minutes=2), t0 + pd.Timedelta(minutes=42)]})
    >>> sorted(plant_surge(d, t0)["decision_id"])
    ['a', 'a-s1', 'a-s2', 'b']
    """
    if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
        raise ParameterError(f"surge factor must be an integer >= 1; got {factor!r}", key="factor")
    end = start + pd.Timedelta(minutes=minutes)
    inside = (decisions["created_at"] >= start) & (decisions["created_at"] < end)
    base = decisions[inside]
    if not len(base) or factor == 1:
        return decisions.sort_values("created_at", kind="stable").reset_index(drop=True)
    rng = np.random.default_rng(seed)
    copies = []
    for k in range(1, factor):
        c = base.copy()
        c["decision_id"] = c["decision_id"].astype(str) + f"-s{k}"
        jitter = pd.to_timedelta(np.round(rng.uniform(0, 60e6, len(c))).astype("int64"), unit="us")
        c["created_at"] = (c["created_at"] + jitter).clip(upper=end - pd.Timedelta(microseconds=1))
        copies.append(c)
    extra = pd.concat(copies).sort_values("created_at", kind="stable")
    response = extra["decided_at"] - extra["created_at"]
    queued = extra["routing"].isin(_HUMAN).to_numpy()
    decided = extra["decided_at"].copy()
    window = (end - start).total_seconds()
    for queue, pos in extra.reset_index(drop=True).groupby("queue").indices.items():
        pos = pos[queued[pos]]
        if not len(pos):
            continue
        rate = int((base["queue"] == queue).sum()) / window  # normal items per second
        wait_us = np.round(np.arange(1, len(pos) + 1) / rate * 1e6).astype("int64")
        slots = pd.Series(start + pd.to_timedelta(wait_us, unit="us"), index=decided.index[pos])
        own = extra["created_at"].iloc[pos] + response.iloc[pos]
        decided.iloc[pos] = own.where(own >= slots, slots).astype(decided.dtype)
    extra["decided_at"] = decided.to_numpy()
    out = pd.concat([decisions, extra], ignore_index=True)
    for col in ("created_at", "decided_at"):
        out[col] = out[col].dt.floor("us")
    return out.sort_values("created_at", kind="stable").reset_index(drop=True)


def prepare_replay(
    market: str,
    *,
    start: datetime | str | pd.Timestamp | None = None,
    surge: str | None = None,
    scale: str = "large",
    days: int = 35,
    seed: int = 42,
    parameters: Any = None,
) -> Replay:
    """Generate a market's clean demo data and shift it to start at ``start``.

    Parameters
    ----------
    market : str
    start : datetime, ISO str or Timestamp, optional
        The simulated start (UTC); the wall clock by default.
    surge : str, optional
        Market-local ``HH:MM`` of a surge (:func:`plant_surge`).
    scale : {"small", "demo", "large"}, default "large"
        Demo scale (``large``: about one item a minute in a busy queue).
    days : int, default 35
        Days of demo data: about 21 before the start (the forecast needs 14)
        and 6 to 13 after it.
    seed : int, default 42

    Returns
    -------
    Replay

    Examples
    --------
    >>> r = prepare_replay("SG", start="2026-12-06 08:00Z", scale="small", days=28)
    >>> bool((r.decisions["created_at"] <= r.start).any()), r.end > r.start
    (True, True)
    """
    from qualitylab.data.params import load_parameters
    from qualitylab.demodata.generate import generate

    params = parameters or load_parameters()
    if market not in params.codes:
        raise ParameterError(
            f"unknown market {market!r} (known: {', '.join(sorted(params.codes))})", key="market"
        )
    if days < 21:
        raise ParameterError(f"days must be >= 21; got {days!r}", key="days")
    tz = params.market(market).timezone
    t0 = pd.Timestamp.now(tz="UTC") if start is None else pd.Timestamp(start)
    t0 = (t0.tz_localize("UTC") if t0.tzinfo is None else t0.tz_convert("UTC")).floor("s")
    import pyarrow.parquet as pq

    with tempfile.TemporaryDirectory(prefix="ql-demo-stream-") as tmp:
        summary = generate(
            tmp, scale=scale, markets=[market], days=days, seed=seed, incidents=False,
            parameters=params,
        )  # fmt: skip
        table = pq.read_table(Path(tmp) / "decisions")
        schema = table.schema
        dec = table.to_pandas()
        tables = {
            n: pd.read_parquet(Path(tmp) / f"{n}.parquet")
            for n in _TABLES
            if (Path(tmp) / f"{n}.parquet").is_file()
        }
    dec = dec[dec["market"] == market]
    # whole weeks back from the start, landing 6 to 13 days before the data's end
    last = pd.Timestamp(summary.end_date, tz=tz) + pd.Timedelta(days=1)
    weeks = int(np.ceil(((t0 - last).total_seconds() / 86400 + 6) / 7))
    shift = pd.Timedelta(days=7 * weeks)
    pending = dec["decided_at"].isna()
    if pending.any():
        med = (dec["decided_at"] - dec["created_at"]).groupby(dec["queue"]).median()
        dec.loc[pending, "decided_at"] = dec.loc[pending, "created_at"] + dec.loc[
            pending, "queue"
        ].map(med).fillna(pd.Timedelta(minutes=5))
    dec = dec.assign(created_at=dec["created_at"] + shift, decided_at=dec["decided_at"] + shift)
    dec["decision_id"] = "live-" + dec["decision_id"].astype(str)
    window = None
    if surge:
        s0 = surge_start(t0, surge, tz)
        dec = plant_surge(dec, s0, seed=seed)
        window = (s0, s0 + pd.Timedelta(minutes=SURGE_MINUTES))
    dec = dec.sort_values("created_at", kind="stable").reset_index(drop=True)
    shifted = {}
    for name, frame in tables.items():
        f = frame.copy()
        if "market" in f.columns:
            f = f[f["market"].isin([market, "*"])]
        for col in ("date", "raised_at", "resolved_at", "effective_at", "created_at"):
            if col in f.columns:
                f[col] = (
                    f[col] + shift if col != "date" else (pd.to_datetime(f[col]) + shift).dt.date
                )
        if name == "escalations":
            late = f["resolved_at"].isna()  # still open at the demo's end: resolve them
            med = (f["resolved_at"] - f["raised_at"]).groupby(f["severity"]).median()
            f.loc[late, "resolved_at"] = f.loc[late, "raised_at"] + f.loc[late, "severity"].map(
                med
            ).fillna(pd.Timedelta(hours=1))
            f["escalation_id"] = "live-" + f["escalation_id"].astype(str)
            if "decision_id" in f.columns:
                f["decision_id"] = ("live-" + f["decision_id"].astype(str)).where(
                    f["decision_id"].notna()
                )
        shifted[name] = f.reset_index(drop=True)
    return Replay(market, t0, dec["created_at"].max(), dec, shifted, window, schema)


def write_part(folder: str | os.PathLike[str], frame: pd.DataFrame, name: str, schema: Any) -> Path:
    """Write ``frame`` as ``folder/name`` atomically: a hidden temporary file, then rename.

    Examples
    --------
    >>> import tempfile, pyarrow as pa
    >>> f = pd.DataFrame({"x": [1, 2]})
    >>> write_part(tempfile.mkdtemp(), f, "part-1.parquet", pa.schema([("x", pa.int64())])).name
    'part-1.parquet'
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / name
    tmp = folder / f".{name}.{os.getpid()}.tmp"
    table = pa.Table.from_pandas(frame, schema=schema, preserve_index=False)
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()
    return target


def write_history(out: str | os.PathLike[str], replay: Replay) -> int:
    """Write the tables and the decisions created up to the start; return that count.

    Raises
    ------
    ParameterError
        When ``out`` already holds decisions (use an empty folder).
    """
    out = Path(out)
    parts = out / "decisions"
    if parts.exists() and any(parts.glob("*.parquet")):
        raise ParameterError(
            f"{parts} already holds decisions: give demo-stream an empty folder", key="out"
        )
    out.mkdir(parents=True, exist_ok=True)
    for name, frame in replay.tables.items():
        import pyarrow as pa

        write_part(
            out, frame, f"{name}.parquet", pa.Schema.from_pandas(frame, preserve_index=False)
        )
    hist = replay.decisions[replay.decisions["created_at"] <= replay.start]
    write_part(parts, hist, "part-000000-history.parquet", replay.schema)
    return len(hist)


def write_until(
    out: str | os.PathLike[str],
    replay: Replay,
    since: pd.Timestamp,
    until: pd.Timestamp,
    seq: int,
) -> int:
    """Write the decisions created in ``(since, until]`` as part number ``seq``; return the count.

    Nothing is written when there are none.
    """
    d = replay.decisions
    new = d[(d["created_at"] > since) & (d["created_at"] <= until)]
    if len(new):
        write_part(Path(out) / "decisions", new, f"part-{seq:06d}.parquet", replay.schema)
    return len(new)


def demo_stream(
    out: str | os.PathLike[str],
    market: str,
    *,
    speed: float = 60.0,
    surge: str | None = None,
    every: float = 5.0,
    start: datetime | str | pd.Timestamp | None = None,
    duration: float | None = None,
    scale: str = "large",
    days: int = 35,
    seed: int = 42,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    progress: Callable[[str], None] | None = None,
) -> int:
    """Replay a market's demo decisions into ``out``, a new part every ``every`` seconds.

    Parameters
    ----------
    out : str or path
        An empty (or new) folder.
    market : str
    speed : float, default 60
        Simulated seconds per wall second.
    surge : str, optional
        Market-local ``HH:MM`` of a surge.
    every : float, default 5
        Wall seconds between parts.
    start : optional
        Simulated start (UTC); the wall clock by default.
    duration : float, optional
        Stop after this many simulated seconds; by default at the end of the
        demo data (or Ctrl-C).
    scale, days, seed
        As in :func:`prepare_replay`.
    clock, sleep : callables
        Injected for tests (a fake clock replays without waiting).
    progress : callable, optional
        Called with one line per part.

    Returns
    -------
    int
        Parts written after the history.
    """
    if not speed > 0:
        raise ParameterError(f"speed must be > 0; got {speed!r}", key="speed")
    if not every > 0:
        raise ParameterError(f"every must be > 0; got {every!r}", key="every")
    replay = prepare_replay(market, start=start, surge=surge, scale=scale, days=days, seed=seed)
    n = write_history(out, replay)
    say = progress or (lambda _m: None)
    say(
        f"demo-stream {market}: {n} decisions of history up to {replay.start:%Y-%m-%d %H:%M} UTC"
        f" in {out}; then a part every {every:g} s at x{speed:g}"
        + (f"; surge {replay.surge[0]:%H:%M}-{replay.surge[1]:%H:%M} UTC" if replay.surge else "")
    )
    stop = (
        replay.end
        if duration is None
        else min(replay.end, replay.start + pd.Timedelta(seconds=duration))
    )
    wall0 = clock()
    since, seq = replay.start, 0
    while since < stop:
        sleep(max(0.0, wall0 + (seq + 1) * every - clock()))
        now = min(stop, replay.start + pd.Timedelta(seconds=(clock() - wall0) * speed))
        seq += 1
        k = write_until(out, replay, since, now, seq)
        say(f"{now:%Y-%m-%d %H:%M:%S} UTC  part {seq:06d}  {k} decisions")
        since = now
    return seq


def main_print(msg: str) -> None:
    """Print a progress line, flushed (for a terminal or a log)."""
    print(msg, file=sys.stdout, flush=True)
