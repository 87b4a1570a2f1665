"""Arrow schemas of the tables the generator writes."""

from __future__ import annotations

import pyarrow as pa

# ---------------------------------------------------------------------------
# Schemas
# ---------------------------------------------------------------------------
_TS = pa.timestamp("us", tz="UTC")
_S = pa.string()
DECISIONS_SCHEMA = pa.schema(
    [
        pa.field("decision_id", _S, nullable=False),
        pa.field("created_at", _TS, nullable=False),
        pa.field("decided_at", _TS),
        pa.field("market", _S, nullable=False),
        pa.field("vendor", _S, nullable=False),
        pa.field("site", _S, nullable=False),
        pa.field("queue", _S, nullable=False),
        pa.field("language", _S, nullable=False),
        pa.field("moderator_id", _S),
        pa.field("routing", _S, nullable=False),
        pa.field("action", _S),
        pa.field("policy", _S),
        pa.field("ai_model", _S),
        pa.field("ai_score", pa.float64()),
        pa.field("ai_policy", _S),
    ]
)
QA_SCHEMA = pa.schema(
    [
        pa.field("audit_id", _S),
        pa.field("decision_id", _S),
        pa.field("audited_at", _TS),
        pa.field("qa_source", _S),
        pa.field("auditor_id", _S),
        pa.field("qa_action", _S),
        pa.field("qa_policy", _S),
        pa.field("sample_weight", pa.float64()),
    ]
)
STAFFING_SCHEMA = pa.schema(
    [
        ("date", pa.date32()),
        ("market", _S),
        ("vendor", _S),
        ("site", _S),
        ("queue", _S),
        ("scheduled_hours", pa.float64()),
        ("productive_hours", pa.float64()),
    ]
)
CALIBRATION_SCHEMA = pa.schema(
    [
        ("session_id", _S),
        ("held_at", _TS),
        ("market", _S),
        ("case_id", _S),
        ("rater_id", _S),
        ("rater_group", _S),
        ("label", _S),
        ("expected_label", _S),
    ]
)
VENDOR_REPORTED_SCHEMA = pa.schema(
    [
        ("week_start", pa.date32()),
        ("market", _S),
        ("vendor", _S),
        ("metric", _S),
        ("value", pa.float64()),
    ]
)
EVENTS_SCHEMA = pa.schema(
    [("effective_at", _TS), ("market", _S), ("kind", _S), ("policy", _S), ("description", _S)]
)
ESCALATIONS_SCHEMA = pa.schema(
    [
        ("escalation_id", _S),
        ("decision_id", _S),
        ("raised_at", _TS),
        ("resolved_at", _TS),
        ("market", _S),
        ("vendor", _S),
        ("queue", _S),
        ("tier", _S),
        ("severity", _S),
        ("reason", _S),
    ]
)
RED_TEAM_SCHEMA = pa.schema(
    [
        ("item_id", _S),
        ("created_at", _TS),
        ("market", _S),
        ("language", _S),
        ("policy", _S),
        ("attack", _S),
        ("ai_model", _S),
        ("ai_score", pa.float64()),
    ]
)
