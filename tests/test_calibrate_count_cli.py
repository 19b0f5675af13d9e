"""`presence-gateway calibrate-count`: fit people_per_device from true counts.

The pure fit (core/presence/count_calibration.py) on traces with a known answer, the truth CSV
reader, and the command end to end on the Brno lab day 2023-02-16 with the lab's own occupancy
as the truth (read as bench/presence_accuracy.py reads it: the CSV row of each frame index),
written in local store time (Europe/Prague) so the config's `store.timezone` is used.
"""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml

from bench.presence_accuracy import occupancy, records
from presence_gateway.cli.main import main as cli
from presence_gateway.core.presence.count_calibration import (
    Pair,
    fit,
    lad_factor,
    mae,
    pairs,
    parse_truth,
)
from presence_gateway.errors import ConfigError, ConfigErrors

BRNO = (Path(__file__).resolve().parents[2] / "shared" / "data" / "captures" / "wifi"
        / "brno_sc6-61" / "position_1_sc6-61_2023-02-16")


def test_truth_rows_in_rfc3339_or_local_store_time() -> None:
    text = ("time,count\n"
            "2023-02-16T10:06:00Z,15\n"
            "2023-02-16T11:07:00+01:00,14\n"
            "2023-02-16 11:08:30,4\n")  # no offset: Prague local (CET, UTC+1)
    rows = parse_truth(text, "t.csv", "Europe/Prague")
    base = dt.datetime(2023, 2, 16, 10, 6, tzinfo=dt.UTC).timestamp()
    assert rows == [(base, 15.0), (base + 60, 14.0), (base + 150, 4.0)]


def test_every_bad_truth_row_is_reported_with_its_line() -> None:
    with pytest.raises(ConfigErrors) as exc:
        parse_truth("time,count\nyesterday,3\n2023-02-16T10:00:00Z,-1\n2023-02-16T10:01:00Z,x\n",
                    "t.csv", "UTC")
    assert [(e.key, e.line) for e in exc.value.errors] == [("time", 2), ("count", 3),
                                                           ("count", 4)]
    with pytest.raises(ConfigError, match="columns time and count"):
        parse_truth("when,people\n", "t.csv", "UTC")


def test_footfall_is_compared_with_the_truth_of_its_interval() -> None:
    # the event at 120 s describes [60, 120): the truth rows at 60 and 90 s, averaged
    truth = [(30.0, 9.0), (60.0, 4.0), (90.0, 6.0)]
    got = pairs([(60.0, 60.0, 7.2), (120.0, 60.0, 4.0), (180.0, 60.0, 1.0)], truth, 0.8)
    assert got == [Pair(60.0, 9.0, 7.2, 9.0), Pair(120.0, 5.0, 4.0, 5.0)]


def test_the_fit_is_the_factor_with_the_least_absolute_error() -> None:
    # 1.25 people per device, plus an arrival the count missed (truth 16, 2 devices seen):
    # least squares would be pulled up by it, the L1 fit is not
    ps = [Pair(float(i), d, d * 0.8, d * 1.25) for i, d in enumerate((4.0, 8.0, 12.0, 16.0))]
    ps.append(Pair(9.0, 2.0, 1.6, 16.0))
    assert lad_factor(ps) == 1.25
    least_squares = sum(p.devices * p.truth for p in ps) / sum(p.devices ** 2 for p in ps)
    assert least_squares > 1.3
    f = fit(ps, 0.8)
    assert f is not None and f.factor == 1.25
    assert f.mae_after == pytest.approx((16 - 2 * 1.25) / 5) and f.mae_after < f.mae_before
    # brute force: no factor on a 0.01 grid does better
    assert min(mae(ps, k / 100) for k in range(1, 300)) == pytest.approx(f.mae_after)
    # nothing to fit on: no interval with a device
    assert fit([Pair(0.0, 0.0, 0.0, 3.0)], 0.8) is None


def _truth_csv(path: Path, scale: float) -> None:
    """The lab's occupancy per frame, in Prague local time without an offset."""
    occ = occupancy(Path(f"{BRNO}_ver-99.csv"))
    prague = ZoneInfo("Europe/Prague")
    lines = ["time,count"]
    for i, (ts, _, _) in enumerate(records(Path(f"{BRNO}_anonymized.pcap"))):
        if occ[i] is not None:
            local = dt.datetime.fromtimestamp(ts, prague).replace(tzinfo=None)
            lines.append(f"{local.isoformat()},{occ[i] * scale:g}")  # type: ignore[operator]
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.skipif(not Path(f"{BRNO}_anonymized.pcap").exists(),
                    reason="shared Brno captures not present")
def test_calibrate_count_on_a_brno_day(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                       ) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text("store: {id: lab, timezone: Europe/Prague}\ngateway: {id: gw1}\n")
    capture = f"{BRNO}_anonymized.pcap"
    factors = {}
    for scale in (1.0, 1.5):  # the same day in a store with 1.5 x the people per device
        truth = tmp_path / f"truth-{scale}.csv"
        _truth_csv(truth, scale)
        assert cli(["calibrate-count", "--truth", str(truth), capture, "-c", str(config)]) == 0
        out, err = capsys.readouterr()
        snippet = yaml.safe_load(out)
        factors[scale] = snippet["presence"]["footfall"]["people_per_device"]
        before, after = (float(x) for x in err.rsplit("MAE ", 1)[1].split(" people")[0]
                         .split(" -> "))
        assert after <= before
        assert "intervals compared" in err and "least absolute deviations" in err
    # the lab's own figure (0.8 by default, fitted on all days) and 1.5 times it
    assert 0.75 <= factors[1.0] <= 0.85
    assert math.isclose(factors[1.5], 1.5 * factors[1.0], abs_tol=0.03)


def test_no_overlap_between_truth_and_captures_is_an_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = Path(__file__).resolve().parent / "data" / "wifi"
    truth = tmp_path / "truth.csv"
    truth.write_text("time,count\n2020-01-01T00:00:00Z,3\n")
    assert cli(["calibrate-count", "--truth", str(truth),
                str(data / "position_1_sc6-61_2023-04-17_anonymized.pcap")]) == 1
    assert "nothing to fit" in capsys.readouterr().err
