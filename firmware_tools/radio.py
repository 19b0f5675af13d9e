"""Radio helper: list Wi-Fi interfaces, switch one to monitor mode and back, print a hop plan.

    presence-gateway radio list
    presence-gateway radio monitor wlan1
    presence-gateway radio managed wlan1
    presence-gateway radio plan [--channels 1,6,11|all] [--dwell 0.25]

Reads sysfs (/sys/class/net/<if>/type, phy80211) and `iw list` / `iw dev`; changes use `ip` and
`iw` (root or CAP_NET_ADMIN). Pure of argument parsing: the command line is cli/radio.py.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from presence_gateway.core.wifi.radiotap import freq_of
from presence_gateway.drivers.wifi_monitor import (
    ARPHRD_IEEE80211_RADIOTAP,
    CHANNELS_ALL,
    interface_type,
)

SYS_NET = Path("/sys/class/net")
_MODES = {1: "ethernet", 772: "loopback", 801: "802.11 (managed)", 803: "monitor (radiotap)"}


def _run(*cmd: str) -> tuple[int, str]:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False)
    except FileNotFoundError:
        package = "iw" if cmd[0] == "iw" else "iproute2"
        return 127, f"{cmd[0]} is not installed (apt install {package})"
    except subprocess.TimeoutExpired:
        return 124, f"{' '.join(cmd)} timed out"
    return done.returncode, (done.stdout + done.stderr).strip()


def monitor_capable_phys() -> dict[str, bool] | None:
    """phy name -> supports monitor mode, from `iw list`; None when iw is missing."""
    code, out = _run("iw", "list")
    if code == 127:
        return None
    phys: dict[str, bool] = {}
    phy, in_modes = "", False
    for line in out.splitlines():
        m = re.match(r"Wiphy (\S+)", line)
        if m:
            phy, in_modes = m.group(1), False
            phys[phy] = False
        elif "Supported interface modes" in line:
            in_modes = True
        elif in_modes and line.strip().startswith("*"):
            phys[phy] = phys[phy] or line.strip() == "* monitor"
        elif in_modes and not line.startswith("\t\t"):
            in_modes = False
    return phys


def list_interfaces() -> list[tuple[str, str, str, str]]:
    """(interface, phy, mode, monitor capable) for every network interface."""
    phys = monitor_capable_phys()
    rows = []
    for path in sorted(SYS_NET.iterdir()) if SYS_NET.is_dir() else []:
        phy_link = path / "phy80211"
        phy = phy_link.resolve().name if phy_link.exists() else "-"
        kind = interface_type(path.name)
        mode = _MODES.get(kind or -1, f"type {kind}")
        if phy == "-":
            capable = "no (not Wi-Fi)"
        elif phys is None:
            capable = "unknown (iw not installed)"
        else:
            capable = "yes" if phys.get(phy) else "no"
        rows.append((path.name, phy, mode, capable))
    return rows


def set_mode(interface: str, mode: str) -> tuple[int, str]:
    """ip link down; iw set type <mode>; ip link up. Returns (exit code, message)."""
    if interface_type(interface) is None:
        return 1, f"{interface}: no such interface (see `radio list`)"
    if shutil.which("iw") is None:
        return 1, "iw is not installed (apt install iw)"
    for cmd in (("ip", "link", "set", interface, "down"),
                ("iw", "dev", interface, "set", "type", mode),
                ("ip", "link", "set", interface, "up")):
        code, out = _run(*cmd)
        if code:
            hint = " (needs root or CAP_NET_ADMIN)" if "ermission" in out else ""
            return 1, f"{' '.join(cmd)} failed: {out}{hint}"
    now = interface_type(interface)
    if mode == "monitor" and now != ARPHRD_IEEE80211_RADIOTAP:
        return 1, f"{interface}: still link type {now} after switching; the driver refused"
    return 0, f"{interface}: {_MODES.get(now or -1, now)}"


def plan(channels: str, dwell: float) -> list[str]:
    chans = CHANNELS_ALL if channels == "all" else [int(c) for c in channels.split(",") if c]
    lines = [f"{'step':>4}  {'channel':>7}  {'MHz':>5}  {'dwell s':>7}"]
    for i, ch in enumerate(chans):
        lines.append(f"{i:>4}  {ch:>7}  {freq_of(ch) or '?':>5}  {dwell:>7.3f}")
    lines.append(f"cycle {len(chans) * dwell:.2f} s; each channel is heard "
                 f"{100 / max(1, len(chans)):.0f} % of the time")
    return lines
