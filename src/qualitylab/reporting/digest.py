"""The run's digest: what changed since the last run, one screen long.

A scheduled run writes ``digest.md`` and ``digest.html`` in its report date's
folder: the new medium and high alerts (an incident's children folded under
its lead, muted alerts left out), the headline KPIs that turned red since the
market's previous report date, and links. A team can paste the Markdown into
chat or e-mail; ``qualitylab run --notify URL`` POSTs the same content as JSON
to a webhook (:func:`notify`). Text that came from the data is escaped in the
HTML and in the Markdown.
"""

from __future__ import annotations

import html
import json
import re
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

__all__ = ["Digest", "build_digest", "notify", "turned_red"]

#: Severities a digest lists.
DIGEST_SEVERITIES = ("high", "medium")
#: At most this many alerts per market (the rest are counted).
MAX_PER_MARKET = 5

# characters that make markup inside a list item (links, emphasis, code, HTML, tables)
_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|~])")


def _md(text: Any) -> str:
    """Text from the data, inert in Markdown (and in chat tools that render it)."""
    return _MD_SPECIAL.sub(r"\\\1", " ".join(str(text).split()))


def _pct(value: Any) -> str:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return "–"
    if pd.isna(v):
        return "–"
    return f"{100 * v:.1f}%" if abs(v) <= 1.5 else f"{v:,.1f}"


@dataclass(frozen=True)
class Digest:
    """A run's digest in three forms: Markdown, HTML and the webhook's JSON payload."""

    markdown: str
    html: str
    payload: dict[str, Any]

    @property
    def empty(self) -> bool:
        """True when nothing is new: no new alert and no KPI turned red."""
        return not self.payload["new_alerts"] and not self.payload["turned_red"]


def turned_red(history: pd.DataFrame | None, as_of: str) -> pd.DataFrame:
    """Headline KPIs red on ``as_of`` that were not red on the market's previous report date.

    Parameters
    ----------
    history : pandas.DataFrame or None
        ``history.parquet`` rows (``as_of, market, metric, value, status``).
    as_of : str
        The report date.

    Returns
    -------
    pandas.DataFrame
        ``market, metric, value, previous_value, previous_status, previous_as_of``.

    Examples
    --------
    >>> h = pd.DataFrame({"as_of": ["2026-11-21", "2026-11-22"], "market": ["SG", "SG"],
    ...                   "metric": ["accuracy", "accuracy"], "value": [0.93, 0.88],
    ...                   "status": ["green", "red"]})
    >>> turned_red(h, "2026-11-22")[["market", "metric", "previous_status"]].values.tolist()
    [['SG', 'accuracy', 'green']]
    """
    cols = ["market", "metric", "value", "previous_value", "previous_status", "previous_as_of"]
    if history is None or history.empty or "as_of" not in history.columns:
        return pd.DataFrame(columns=cols)
    h = history.assign(as_of=history["as_of"].astype(str))
    now = h[(h["as_of"] == as_of) & (h["status"] == "red")]
    rows = []
    for r in now.itertuples():
        before = h[(h["market"] == r.market) & (h["metric"] == r.metric) & (h["as_of"] < as_of)]
        if before.empty:
            continue  # the market's first report date: nothing to turn from
        prev = before.sort_values("as_of").iloc[-1]
        if prev["status"] != "red":
            rows.append(
                {
                    "market": r.market,
                    "metric": r.metric,
                    "value": r.value,
                    "previous_value": prev["value"],
                    "previous_status": prev["status"],
                    "previous_as_of": prev["as_of"],
                }
            )
    return pd.DataFrame(rows, columns=cols)


#: Alert metrics that are counts, not rates (a volume of 1.2 a day is not 120%).
_COUNT_METRICS = ("volume", "backlog")


def _count(value: Any) -> str:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return "–"
    return "–" if pd.isna(v) else f"{v:,.1f}"


def _duration(value: Any) -> str:
    """Seconds as minutes or hours (response and resolution times)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        return "–"
    if pd.isna(v):
        return "–"
    return f"{v / 3600:.1f} h" if v >= 3600 else f"{v / 60:.1f} min"


def _alert_line(a: Mapping[str, Any], finding: str) -> tuple[str, str]:
    """One alert as a Markdown and an HTML list item."""
    where = "market" if a.get("dimension") == "market" else f"{a['dimension']} {a['segment']}"
    metric = str(a.get("metric", ""))
    if metric.startswith(("response_", "resolution_")):
        show = _duration
    elif metric in _COUNT_METRICS:
        show = _count
    else:
        show = _pct
    change = f"{show(a.get('expected'))} → {show(a.get('observed'))}"
    window = f"{str(a.get('start_date'))[:10]} to {str(a.get('end_date'))[:10]}"
    folded = int(a.get("children", 0) or 0)
    more = f" (+{folded} related alert{'s' if folded != 1 else ''} folded)" if folded else ""
    md = (
        f"- **{_md(a['severity'])}** {_md(a['metric'])} {_md(a['direction'])} in {_md(where)}: "
        f"{change}, {_md(window)}{more} `{str(a['alert_id']).replace('`', '')}`"
        + (f"  \n  {_md(finding)}" if finding else "")
    )
    e = html.escape
    li = (
        f"<li><strong>{e(str(a['severity']))}</strong> {e(str(a['metric']))} "
        f"{e(str(a['direction']))} in {e(where)}: {e(change)}, {e(window)}{e(more)} "
        f"<code>{e(str(a['alert_id']))}</code>"
        + (f"<br><small>{e(finding)}</small>" if finding else "")
        + "</li>"
    )
    return md, li


def build_digest(
    as_of: str,
    alerts: pd.DataFrame,
    red: pd.DataFrame,
    *,
    run_id: str = "",
    findings: Mapping[str, str] | None = None,
    hub: str = "index.html",
    markets: Sequence[str] = (),
) -> Digest:
    """The digest of a run.

    Parameters
    ----------
    as_of : str
        The report date.
    alerts : pandas.DataFrame
        This run's store rows (:mod:`qualitylab.alertstore`): ``alert_id,
        status, market, metric, dimension, segment, direction, severity,
        start_date, end_date, observed, expected`` and, when grouped,
        ``incident_id, incident_role``. Only ``new`` medium and high incident
        leads are listed; their children are counted under them.
    red : pandas.DataFrame
        :func:`turned_red`.
    run_id : str
    findings : mapping, optional
        ``alert_id`` → one sentence from its deep dive.
    hub : str
        Link to the hub page.
    markets : sequence of str
        The run's markets (a market with nothing new is named as quiet).

    Returns
    -------
    Digest

    Examples
    --------
    >>> a = pd.DataFrame({"alert_id": ["SG-1"], "status": ["new"], "market": ["SG"],
    ...     "metric": ["ai_recall"], "dimension": ["language"], "segment": ["ms"],
    ...     "direction": ["down"], "severity": ["high"], "start_date": ["2026-11-16"],
    ...     "end_date": ["2026-11-22"], "observed": [0.62], "expected": [0.81]})
    >>> d = build_digest("2026-11-22", a, turned_red(None, "2026-11-22"), markets=["SG", "ID"])
    >>> print(d.markdown.splitlines()[2])
    - **high** ai\\_recall down in language ms: 81.0% → 62.0%, 2026-11-16 to 2026-11-22 `SG-1`
    >>> d.payload["quiet_markets"]
    ['ID']
    """
    findings = dict(findings or {})
    frame = alerts.copy() if alerts is not None else pd.DataFrame()
    need = {"alert_id", "status", "market", "severity"}
    if frame.empty or not need <= set(frame.columns):
        frame = pd.DataFrame(columns=sorted(need))
    role = frame["incident_role"] if "incident_role" in frame.columns else None
    if role is not None and "incident_id" in frame.columns:
        children = frame[role.eq("child")].groupby("incident_id").size()
        frame = frame[~role.eq("child")].assign(
            children=lambda f: f["incident_id"].map(children).fillna(0).astype(int)
        )
    new = frame[(frame["status"] == "new") & frame["severity"].isin(DIGEST_SEVERITIES)]
    order = {s: i for i, s in enumerate(DIGEST_SEVERITIES)}
    new = new.assign(_o=new["severity"].map(order)).sort_values(["market", "_o"], kind="stable")
    md = [f"# qualitylab {_md(as_of)}: what changed", ""]
    body_html: list[str] = []
    payload_alerts = []
    for market, group in new.groupby("market", sort=True):
        items = [_alert_line(a, findings.get(str(a["alert_id"]), "")) for _, a in group.iterrows()]
        shown = items[:MAX_PER_MARKET]
        more = len(items) - len(shown)
        md.extend(m for m, _ in shown)
        if more:
            md.append(f"- …and {more} more new alert(s) in {_md(market)}")
        body_html.append(
            f"<h3>{html.escape(str(market))}</h3><ul>{''.join(li for _, li in shown)}"
            + (f"<li>…and {more} more</li>" if more else "")
            + "</ul>"
        )
        for _, a in group.iterrows():
            payload_alerts.append(
                {
                    k: (None if pd.isna(a.get(k)) else str(a.get(k)))
                    for k in (
                        "alert_id",
                        "market",
                        "metric",
                        "dimension",
                        "segment",
                        "direction",
                        "severity",
                        "start_date",
                        "end_date",
                        "observed",
                        "expected",
                    )
                }
                | {"finding": findings.get(str(a["alert_id"]), "")}
            )
    if new.empty:
        md.append("No new medium or high alerts.")
        body_html.append("<p>No new medium or high alerts.</p>")
    red_md, red_li = [], []
    for r in red.itertuples():
        text = f"{r.market} {r.metric}: {_pct(r.value)} (was {_pct(r.previous_value)}, {r.previous_status} on {r.previous_as_of})"
        red_md.append(f"- {_md(text)}")
        red_li.append(f"<li>{html.escape(text)}</li>")
    md.extend(["", "## KPIs that turned red", *(red_md or ["None."])])
    quiet = sorted(set(markets) - set(new["market"]) - set(red["market"]))
    if quiet:
        md.extend(["", f"Nothing new in {_md(', '.join(quiet))}."])
    md.extend(["", f"Hub: {hub}" + (f" · run {_md(run_id)}" if run_id else "")])
    page = (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>qualitylab digest {html.escape(as_of)}</title></head>"
        '<body style="font-family: Helvetica, Arial, sans-serif; max-width: 50em">'
        f"<h1>qualitylab {html.escape(as_of)}: what changed</h1>"
        "<h2>New alerts</h2>"
        + "".join(body_html)
        + "<h2>KPIs that turned red</h2>"
        + (f"<ul>{''.join(red_li)}</ul>" if red_li else "<p>None.</p>")
        + (f"<p>Nothing new in {html.escape(', '.join(quiet))}.</p>" if quiet else "")
        + f'<p><a href="{html.escape(hub)}">hub</a></p></body></html>'
    )
    payload = {
        "as_of": as_of,
        "run_id": run_id,
        "new_alerts": payload_alerts,
        "turned_red": json.loads(red.to_json(orient="records", date_format="iso")),
        "quiet_markets": quiet,
        "hub": hub,
        "text": "\n".join(md),
    }
    return Digest("\n".join(md) + "\n", page, payload)


def notify(url: str, digest: Digest, *, timeout: float = 10.0) -> str | None:
    """POST the digest as JSON to a webhook; return a warning instead of raising.

    A network failure, a refused connection or an HTTP error never fails the
    run: the caller shows the returned one-line warning.

    Examples
    --------
    >>> d = Digest("", "", {"as_of": "2026-11-22", "new_alerts": [], "turned_red": []})
    >>> notify("http://127.0.0.1:9/hook", d, timeout=1).startswith("could not notify")
    True
    """
    where = _host(url)
    body = json.dumps(digest.payload, default=str).encode("utf-8")
    try:
        req = urllib.request.Request(
            url, data=body, method="POST", headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - user's URL
            if resp.status >= 300:
                return f"could not notify {where}: HTTP {resp.status}"
    except urllib.error.HTTPError as exc:
        return f"could not notify {where}: HTTP {exc.code}"
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return f"could not notify {where}: {reason}"
    return None


def _host(url: str) -> str:
    """A webhook's scheme, host and port only: its path often holds a secret token."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        return f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    except ValueError:
        return "the webhook"
