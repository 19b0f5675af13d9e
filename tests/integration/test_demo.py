"""`presence-gateway demo` end to end (its own Mosquitto, the bundled captures), then its
dashboard over the demo's events: what `make demo` shows a new user."""

from __future__ import annotations

import http.cookiejar
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import orjson
import pytest

from presence_gateway.adapters.mosquitto import find_mosquitto, free_port


@pytest.mark.skipif(find_mosquitto() is None, reason="mosquitto not installed")
def test_demo_then_its_dashboard(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "presence_gateway", "demo", "--quiet",
                             "--dashboard", f"127.0.0.1:{port}"], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    try:
        assert proc.stderr is not None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith("dashboard on http://"):
                break
        text = "".join(lines)
        assert "every published event was received" in text, text
        assert f"--listen 127.0.0.1:{port}" in text and "log in as admin" in text
        password = (tmp_path / "var" / "demo" / "dashboard.pw").read_text().strip()
        jar = http.cookiejar.CookieJar()
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                             urllib.request.HTTPCookieProcessor(jar))
        base = f"http://127.0.0.1:{port}"
        form = urllib.parse.urlencode({"username": "admin", "password": password}).encode()
        opener.open(base + "/login", data=form, timeout=10).read()
        stores = orjson.loads(opener.open(base + "/api/stores", timeout=10).read())
        assert [s["store"] for s in stores] == ["demo-store"]
        health = orjson.loads(opener.open(base + "/api/health", timeout=10).read())
        assert health and health[0]["last_sequence"] > 0
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            rc = proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = proc.wait()
    assert rc == 0
