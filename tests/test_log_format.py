"""--log-format: json lines for shippers, syslog priorities for journald, auto-detected under
systemd (JOURNAL_STREAM names stderr's device:inode)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import orjson

from presence_gateway.cli.logs import JournalFormatter, JsonFormatter

ROOT = Path(__file__).resolve().parents[1]
CAPTURE = ROOT / "gateway" / "data" / "demo" / "ble_boston_take2.pcap"


def record(level: int, msg: str, exc: bool = False) -> logging.LogRecord:
    info = None
    if exc:
        try:
            raise ValueError("boom")
        except ValueError:
            info = sys.exc_info()
    return logging.LogRecord("presence_gateway.x", level, __file__, 1, msg, None, info)


def test_journal_prefixes_every_line_with_its_priority() -> None:
    f = JournalFormatter("%(message)s")
    assert f.format(record(logging.WARNING, "broker down")) == \
        "<4>presence_gateway.x: broker down"
    lines = f.format(record(logging.ERROR, "failed", exc=True)).splitlines()
    assert len(lines) > 2 and all(line.startswith("<3>") for line in lines)
    assert f.format(record(logging.INFO, "hi")).startswith("<6>")
    assert f.format(record(logging.DEBUG, "dbg")).startswith("<7>")


def test_json_is_one_object_per_record() -> None:
    body = orjson.loads(JsonFormatter().format(record(logging.ERROR, "failed", exc=True)))
    assert body["level"] == "error" and body["logger"] == "presence_gateway.x"
    assert body["message"] == "failed" and "ValueError: boom" in body["exception"]
    assert body["time"].endswith("Z") and "T" in body["time"]


def run(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> list[str]:
    err = tmp_path / "stderr"
    with err.open("wb") as f:
        full_env = {**os.environ, **(env or {})}
        if env is not None and env.get("JOURNAL_STREAM") == "stderr":
            st = os.fstat(f.fileno())
            full_env["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
        subprocess.run([sys.executable, "-m", "presence_gateway", *args, "replay", str(CAPTURE),
                        "--no-mqtt", "--db", str(tmp_path / "g.db")], stderr=f, env=full_env,
                       timeout=120, check=True)
    return err.read_text().splitlines()


def test_cli_json_lines(tmp_path: Path) -> None:
    logged = [line for line in run(tmp_path, "--log-format", "json") if line.startswith("{")]
    assert logged and all(orjson.loads(line)["logger"].startswith("presence_gateway")
                          for line in logged)


def test_auto_is_journal_only_when_stderr_is_the_journal(tmp_path: Path) -> None:
    under_systemd = run(tmp_path, env={"JOURNAL_STREAM": "stderr"})
    assert any(line.startswith("<6>presence_gateway") for line in under_systemd)
    elsewhere = run(tmp_path, env={"JOURNAL_STREAM": "1:2"})
    assert not any(line.startswith("<") for line in elsewhere)
