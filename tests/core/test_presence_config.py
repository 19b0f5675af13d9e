"""The presence section: zones, defaults, and errors that name file, key and line."""

from __future__ import annotations

import pytest

from presence_gateway.core.presence import config as presence_config
from presence_gateway.core.yamlread import Reader, load_yaml
from presence_gateway.errors import ConfigError, ConfigErrors


def read(text: str) -> presence_config.PresenceSettings:
    data, lines = load_yaml(text, "gw.yaml")
    r = Reader("gw.yaml", data, lines)
    s = presence_config.read(r, "presence")
    r.check()
    return s


def test_defaults_give_one_store_zone() -> None:
    s = read("")
    assert [z.name for z in s.zones] == ["store"]
    assert s.visit_timeout_s == 300.0 and s.dwell_marks_s == (60.0, 300.0, 900.0)


def test_zones_and_sections_are_read() -> None:
    s = read("presence:\n  zones:\n    - name: door\n      sensors: [s1]\n"
             "      enter_rssi: -60\n      min_confirm: 5s\n"
             "  dwell_marks: [30s, 2m]\n  footfall: {interval: 30s, people_per_device: 1.2}\n")
    (z,) = s.zones
    assert (z.name, z.sensors, z.enter_rssi, z.leave_rssi, z.min_confirm_s) == (
        "door", ("s1",), -60.0, -66.0, 5.0)
    assert s.dwell_marks_s == (30.0, 120.0) and s.people_per_device == 1.2


def test_leave_above_enter_is_an_error_with_line() -> None:
    text = "presence:\n  zones:\n    - name: door\n      enter_rssi: -70\n      leave_rssi: -60\n"
    with pytest.raises(ConfigError) as exc:
        read(text)
    assert "gw.yaml:5 presence.zones[0].leave_rssi" in str(exc.value)


def test_unknown_key_and_bad_marks_are_both_reported() -> None:
    with pytest.raises(ConfigErrors) as exc:
        read("presence:\n  walk_in: {min_tme: 5m}\n  dwell_marks: [5m, 1m]\n")
    text = str(exc.value)
    assert "presence.walk_in.min_tme" in text and "presence.dwell_marks" in text


def test_fixture_and_smoothing_keys() -> None:
    assert (read("").fixture_public_max_presence_s, read("").footfall_smoothing_s) == (
        4 * 3600.0, 0.0)
    s = read("presence:\n  fixtures: {public_address_max_presence: 45m}\n"
             "  footfall: {smoothing: 5m}\n")
    assert (s.fixture_public_max_presence_s, s.footfall_smoothing_s) == (2700.0, 300.0)
