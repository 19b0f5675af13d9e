"""A real headless Chromium driven over the DevTools protocol (websocket via aiohttp).

No Selenium or Playwright download: Debian's `chromium` binary and a few protocol calls —
navigate, evaluate JavaScript in the page, wait for a condition, take a screenshot. The
browser runs with a fresh profile, no network beyond loopback, and is killed at the end.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import os
import shutil
import signal
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

from presence_gateway.adapters.mosquitto import free_port

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-extensions", "--disable-dev-shm-usage", "--hide-scrollbars",
         "--window-size=1280,1600", "--proxy-server=direct://", "--proxy-bypass-list=*")


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


class Page:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self._ids = itertools.count(1)

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        n = next(self._ids)
        await self.ws.send_json({"id": n, "method": method, "params": params})
        while True:
            msg = await self.ws.receive_json(timeout=30)
            if msg.get("id") == n:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                result: dict[str, Any] = msg.get("result", {})
                return result

    async def goto(self, url: str) -> None:
        await self.call("Page.navigate", url=url)
        await self.wait("document.readyState === 'complete'")

    async def js(self, expression: str) -> Any:
        r = await self.call("Runtime.evaluate", expression=expression, returnByValue=True,
                            awaitPromise=True)
        if "exceptionDetails" in r:
            raise RuntimeError(f"{expression}: {r['exceptionDetails']}")
        return r.get("result", {}).get("value")

    async def wait(self, condition: str, within_s: float = 15.0) -> Any:
        deadline = time.monotonic() + within_s
        while True:
            with contextlib.suppress(RuntimeError):
                value = await self.js(condition)
                if value:
                    return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for: {condition}")
            await asyncio.sleep(0.1)

    async def screenshot(self, path: Path) -> None:
        r = await self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        png = base64.b64decode(r["data"])
        await asyncio.to_thread(_save, path, png)


def _save(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


@contextlib.asynccontextmanager
async def browser() -> AsyncIterator[Page]:
    exe = chromium()
    assert exe is not None
    port = free_port()
    # Chromium's helper processes may still write the profile for a moment after the kill.
    with tempfile.TemporaryDirectory(prefix="pg-chromium-", ignore_cleanup_errors=True) as profile:
        proc = await asyncio.create_subprocess_exec(
            exe, *FLAGS, f"--user-data-dir={profile}", f"--remote-debugging-port={port}",
            "about:blank", stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
            start_new_session=True)
        try:
            async with aiohttp.ClientSession(trust_env=False) as http:
                targets: list[dict[str, Any]] = []
                for _ in range(200):
                    with contextlib.suppress(aiohttp.ClientError):
                        async with http.get(f"http://127.0.0.1:{port}/json/list") as resp:
                            targets = [t for t in await resp.json() if t["type"] == "page"]
                        if targets:
                            break
                    await asyncio.sleep(0.1)
                assert targets, "chromium did not open its DevTools port"
                async with http.ws_connect(targets[0]["webSocketDebuggerUrl"],
                                           max_msg_size=0) as ws:
                    page = Page(ws)
                    await page.call("Page.enable")
                    yield page
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # the browser and all its helpers
            await proc.wait()
