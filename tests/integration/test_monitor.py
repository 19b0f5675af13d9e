"""`presence-gateway monitor` shows events as a replay publishes them."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from presence_gateway.adapters.mosquitto import LocalBroker

ROOT = Path(__file__).resolve().parents[2]


def test_monitor_prints_events_of_a_replay(tmp_path: Path, local_broker: LocalBroker) -> None:
    mon = subprocess.Popen([sys.executable, "-m", "presence_gateway", "monitor", "--mqtt",
                            local_broker.url, "--count", "5", "--seconds", "30"],
                           cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)  # let it subscribe
    rep = subprocess.run([sys.executable, "-m", "presence_gateway", "replay", "--mqtt",
                          local_broker.url, "--db", str(tmp_path / "g.db"),
                          str(ROOT / "gateway/data/demo/wifi_brno_2023-04-17.pcap")],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert rep.returncode == 0, rep.stderr
    out, err = mon.communicate(timeout=30)
    assert mon.returncode == 0, err
    lines = [ln for ln in out.splitlines() if ln.strip().startswith("#")]
    assert len(lines) >= 5 and "presence." in lines[0]
