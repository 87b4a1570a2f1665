"""Parameters: defaults plus market overrides, validated with file and key named."""

from __future__ import annotations

import pytest

from qualitylab import ParameterError
from qualitylab.params import load_parameters

TEN = {"SG", "ID", "TH", "VN", "PH", "MY", "JP", "KR", "TW", "AU"}


def test_ten_markets_load():
    params = load_parameters()
    assert set(params.codes) == TEN
    jp = params.market("JP")
    assert jp.timezone == "Asia/Tokyo"
    assert jp.sla_seconds["live_stream"] == 240  # market override
    assert jp.sla_seconds["appeal"] == 86400  # inherited default
    assert jp.targets["accuracy"] == 0.96
    assert params.market("SG").targets["accuracy"] == 0.95


def test_parameters_are_frozen():
    params = load_parameters()
    with pytest.raises(Exception, match="frozen"):
        params.market("SG").timezone = "UTC"  # type: ignore[misc]


def test_unknown_market_names_file():
    with pytest.raises(ParameterError, match=r"'NZ' has no parameters file .*NZ\.yaml"):
        load_parameters().market("NZ")


def _write(folder, code, text):
    (folder / "markets" / f"{code}.yaml").write_text(text)


def test_bad_timezone(params_copy):
    _write(params_copy, "SG", "name: Singapore\ntimezone: Asia/Singapur\n")
    with pytest.raises(ParameterError) as err:
        load_parameters(params_copy)
    assert "SG.yaml" in str(err.value) and "'timezone'" in str(err.value)
    assert "Asia/Singapur" in str(err.value)
    assert err.value.key == "timezone"


def test_unknown_key(params_copy):
    _write(params_copy, "TH", "name: Thailand\ntimezone: Asia/Bangkok\naccuracy_targt: 0.9\n")
    with pytest.raises(ParameterError, match=r"TH\.yaml: key 'accuracy_targt': unknown key"):
        load_parameters(params_copy)


def test_unknown_key_in_defaults(params_copy):
    text = (params_copy / "defaults.yaml").read_text() + "\nmin_sample: 5\n"
    (params_copy / "defaults.yaml").write_text(text)
    with pytest.raises(ParameterError, match=r"defaults\.yaml: key 'min_sample': unknown key"):
        load_parameters(params_copy)


def test_wrong_type(params_copy):
    _write(params_copy, "ID", "name: Indonesia\ntimezone: Asia/Jakarta\nmin_n: lots\n")
    with pytest.raises(ParameterError, match=r"ID\.yaml: key 'min_n'.*'lots'"):
        load_parameters(params_copy)


def test_bad_market_code_in_file_name(params_copy):
    _write(params_copy, "sgp", "name: Singapore\ntimezone: Asia/Singapore\n")
    with pytest.raises(ParameterError, match=r"sgp\.yaml: market code 'sgp'"):
        load_parameters(params_copy)


def test_missing_required_key(params_copy):
    _write(params_copy, "VN", "name: Vietnam\n")
    with pytest.raises(ParameterError, match=r"VN\.yaml: key 'timezone': required key is missing"):
        load_parameters(params_copy)


def test_bad_alert_sensitivity(params_copy):
    _write(params_copy, "MY", "name: M\ntimezone: Asia/Kuala_Lumpur\nalert_sensitivity: extreme\n")
    with pytest.raises(ParameterError, match=r"MY\.yaml: key 'alert_sensitivity'.*extreme"):
        load_parameters(params_copy)


def test_rate_target_out_of_range(params_copy):
    _write(params_copy, "KR", "name: K\ntimezone: Asia/Seoul\naccuracy_target: 95\n")
    with pytest.raises(ParameterError, match=r"KR\.yaml: key 'targets.accuracy'"):
        load_parameters(params_copy)


def test_invalid_yaml(params_copy):
    _write(params_copy, "PH", "name: [unclosed\n")
    with pytest.raises(ParameterError, match=r"PH\.yaml: not valid YAML"):
        load_parameters(params_copy)


def test_bad_language_code(params_copy):
    _write(params_copy, "TW", "name: Taiwan\ntimezone: Asia/Taipei\nlanguages: [zh-TW]\n")
    with pytest.raises(ParameterError, match=r"TW\.yaml: key 'languages'.*ISO 639-1.*zh-TW"):
        load_parameters(params_copy)


def test_missing_parameters_folder(tmp_path):
    with pytest.raises(ParameterError, match="no defaults.yaml"):
        load_parameters(tmp_path)


def test_planning_handle_times(params_copy):
    th = load_parameters().market("TH")
    assert th.aht_seconds == {
        "live_stream": 60,
        "live_comment": 15,
        "live_report": 120,
        "appeal": 300,
    }
    _write(params_copy, "TH", "name: T\ntimezone: Asia/Bangkok\naht_seconds: {live_report: 150}\n")
    th = load_parameters(params_copy).market("TH")
    assert th.aht_seconds["live_report"] == 150  # market override
    assert th.aht_seconds["live_comment"] == 15  # inherited default


@pytest.mark.parametrize("value", ["0", "-5", ".nan"])
def test_bad_handle_time_names_file_and_key(params_copy, value):
    _write(
        params_copy, "TH", f"name: T\ntimezone: Asia/Bangkok\naht_seconds: {{appeal: {value}}}\n"
    )
    with pytest.raises(ParameterError, match=r"TH\.yaml: key 'aht_seconds'.*'appeal'.*> 0") as err:
        load_parameters(params_copy)
    assert err.value.key == "aht_seconds"
    text = (
        (params_copy / "defaults.yaml").read_text().replace("live_comment: 15", "live_comment: 0")
    )
    (params_copy / "markets" / "TH.yaml").unlink()
    (params_copy / "defaults.yaml").write_text(text)
    with pytest.raises(ParameterError, match=r"defaults\.yaml: key 'aht_seconds'.*'live_comment'"):
        load_parameters(params_copy)


def test_market_local_date():
    import pandas as pd

    tz = load_parameters().market("AU").tz
    # 2026-01-05 14:30 UTC is already 6 January in Sydney (UTC+11 in summer).
    assert pd.Timestamp("2026-01-05 14:30", tz="UTC").tz_convert(tz).date().isoformat() == (
        "2026-01-06"
    )


def test_detectable_drop_defaults_and_market_override(params_copy):
    sg = load_parameters().market("SG")
    assert sg.detectable_drop["accuracy"] == 0.05
    assert sg.detectable_drop["ai_recall"] == 0.10
    _write(
        params_copy,
        "TH",
        "name: T\ntimezone: Asia/Bangkok\ndetectable_drop: {accuracy: 0.08}\n",
    )
    th = load_parameters(params_copy).market("TH")
    assert th.detectable_drop["accuracy"] == 0.08  # market override
    assert th.detectable_drop["over_enforcement_rate"] == 0.05  # inherited default


@pytest.mark.parametrize("value", ["0", "1.5", ".nan"])
def test_bad_detectable_drop_names_file_and_key(params_copy, value):
    _write(
        params_copy,
        "TH",
        f"name: T\ntimezone: Asia/Bangkok\ndetectable_drop: {{accuracy: {value}}}\n",
    )
    with pytest.raises(
        ParameterError, match=r"TH\.yaml: key 'detectable_drop'.*'accuracy'.*\(0, 1\)"
    ):
        load_parameters(params_copy)
