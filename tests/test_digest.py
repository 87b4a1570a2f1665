"""The run's digest and the webhook: what changed, escaped, and never failing a run."""

from __future__ import annotations

import http.server
import json
import threading

import pandas as pd
import pytest

from qualitylab.digest import build_digest, notify, turned_red

HOSTILE = "<script>alert('x')</script> **bold** [link](http://evil)"


def _alerts() -> pd.DataFrame:
    base = {
        "market": "SG",
        "dimension": "policy",
        "direction": "up",
        "start_date": "2026-11-16",
        "end_date": "2026-11-22",
        "observed": 0.2,
        "expected": 0.1,
    }
    rows = [
        {
            **base,
            "alert_id": "SG-a",
            "status": "new",
            "metric": "ai_recall",
            "segment": "all",
            "dimension": "market",
            "direction": "down",
            "severity": "high",
            "incident_id": "SG-a",
            "incident_role": "lead",
        },
        {
            **base,
            "alert_id": "SG-b",
            "status": "new",
            "metric": "override_rate",
            "segment": "hate",
            "severity": "medium",
            "incident_id": "SG-a",
            "incident_role": "child",
        },
        {
            **base,
            "alert_id": "SG-c",
            "status": "new",
            "metric": "override_rate",
            "segment": "spam",
            "severity": "high",
            "incident_id": "SG-a",
            "incident_role": "child",
        },
        {
            **base,
            "alert_id": "SG-d",
            "status": "muted",
            "metric": "accuracy",
            "segment": "x",
            "severity": "high",
            "incident_id": "SG-d",
            "incident_role": "lead",
        },
        {
            **base,
            "alert_id": "SG-e",
            "status": "ongoing",
            "metric": "accuracy",
            "segment": "y",
            "severity": "high",
            "incident_id": "SG-e",
            "incident_role": "lead",
        },
        {
            **base,
            "alert_id": "SG-f",
            "status": "new",
            "metric": "volume",
            "segment": HOSTILE,
            "severity": "low",
            "incident_id": "SG-f",
            "incident_role": "lead",
        },
        {
            **base,
            "alert_id": "ID-g",
            "market": "ID",
            "status": "new",
            "metric": "sla_compliance",
            "segment": HOSTILE,
            "severity": "medium",
            "incident_id": "ID-g",
            "incident_role": "lead",
        },
    ]
    return pd.DataFrame(rows)


def test_digest_lists_new_medium_and_high_incident_leads_only():
    history = pd.DataFrame(
        {
            "as_of": ["2026-11-15", "2026-11-22", "2026-11-15", "2026-11-22", "2026-11-22"],
            "market": ["SG", "SG", "ID", "ID", "TH"],
            "metric": ["accuracy", "accuracy", "ai_recall", "ai_recall", "accuracy"],
            "value": [0.93, 0.88, 0.70, 0.69, 0.80],
            "status": ["amber", "red", "red", "red", "red"],
        }
    )
    red = turned_red(history, "2026-11-22")
    # ID was red already; TH has no earlier report date to turn from
    assert red[["market", "metric"]].values.tolist() == [["SG", "accuracy"]]
    d = build_digest(
        "2026-11-22",
        _alerts(),
        red,
        run_id="r1",
        findings={"SG-a": "language ms explains 80% of the drop"},
        markets=["SG", "ID", "TH", "VN"],
    )
    ids = [a["alert_id"] for a in d.payload["new_alerts"]]
    assert ids == ["ID-g", "SG-a"]  # children, muted, ongoing and low alerts are not listed
    assert "(+2 related alerts folded)" in d.markdown
    assert "language ms explains 80% of the drop" in d.html
    assert d.payload["new_alerts"][1]["finding"].startswith("language ms")
    assert d.payload["quiet_markets"] == ["TH", "VN"]  # TH is red, but was never anything else
    assert "SG accuracy: 88.0% (was 93.0%, amber on 2026-11-15)" in d.html
    assert not d.empty
    # hostile text from the data stays inert in both forms
    assert "<script>" not in d.html and "&lt;script&gt;" in d.html
    assert "[link](http://evil)" not in d.markdown and "\\[link\\]" in d.markdown
    assert len(d.markdown.splitlines()) < 30  # one screen


def test_digest_with_nothing_new_says_so():
    d = build_digest("2026-11-22", pd.DataFrame(), turned_red(None, "2026-11-22"), markets=["SG"])
    assert d.empty and "No new medium or high alerts." in d.markdown
    assert "Nothing new in SG." in d.markdown


class _Hook(http.server.BaseHTTPRequestHandler):
    received: list[dict] = []
    code = 200

    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append(json.loads(body))
        self.send_response(type(self).code)
        self.end_headers()

    def log_message(self, *args):  # quiet
        pass


@pytest.fixture
def hook():
    _Hook.received = []
    _Hook.code = 200
    server = http.server.HTTPServer(("127.0.0.1", 0), _Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_notify_posts_the_digest_as_json(hook):
    d = build_digest("2026-11-22", _alerts(), turned_red(None, "2026-11-22"), run_id="r1")
    url = f"http://127.0.0.1:{hook.server_port}/hooks/T000/SECRET"
    assert notify(url, d) is None
    (got,) = _Hook.received
    assert got["as_of"] == "2026-11-22" and got["run_id"] == "r1"
    assert [a["alert_id"] for a in got["new_alerts"]] == ["ID-g", "SG-a"]
    assert got["text"] == d.payload["text"]
    _Hook.code = 500
    warning = notify(url, d)
    assert warning == f"could not notify http://127.0.0.1:{hook.server_port}: HTTP 500"
    assert "SECRET" not in warning


def test_notify_to_a_server_that_is_down_is_a_warning():
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    d = build_digest("2026-11-22", pd.DataFrame(), turned_red(None, "2026-11-22"))
    warning = notify(f"http://127.0.0.1:{port}/x?token=SECRET", d, timeout=2)
    assert warning.startswith(f"could not notify http://127.0.0.1:{port}: ")
    assert "SECRET" not in warning
    assert notify("not a url", d).startswith("could not notify")


def test_digest_shows_response_times_as_durations():
    a = pd.DataFrame(
        {
            "alert_id": ["ID-1"],
            "status": ["new"],
            "market": ["ID"],
            "metric": ["response_p99"],
            "dimension": ["policy"],
            "segment": ["none"],
            "direction": ["up"],
            "severity": ["medium"],
            "start_date": ["2026-11-20"],
            "end_date": ["2026-11-22"],
            "observed": [42536.3],
            "expected": [1500.0],
        }
    )
    d = build_digest("2026-11-22", a, turned_red(None, "2026-11-22"))
    assert "25.0 min → 11.8 h" in d.markdown and "25.0 min → 11.8 h" in d.html


def test_digest_shows_a_small_volume_as_a_count_not_a_percentage():
    a = pd.DataFrame(
        {
            "alert_id": ["MY-1"],
            "status": ["new"],
            "market": ["MY"],
            "metric": ["volume"],
            "dimension": ["queue"],
            "segment": ["appeals"],
            "direction": ["up"],
            "severity": ["high"],
            "start_date": ["2026-11-20"],
            "end_date": ["2026-11-22"],
            "observed": [1.4],
            "expected": [0.5],
        }
    )
    d = build_digest("2026-11-22", a, turned_red(None, "2026-11-22"))
    assert "0.5 → 1.4" in d.markdown and "%" not in d.markdown.splitlines()[2]
