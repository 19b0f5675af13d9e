"""`presence-gateway doctor`: what retail IT checks before calling for help, in one command.

Each check says ok, warn or FAIL with the one sentence that tells what to do. Checks only
look: nothing is changed, no radio is reconfigured, nothing is published (the broker check
connects, waits for CONNACK and disconnects). Exit 0 when nothing failed.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from pathlib import Path

from presence_gateway.cli.common import Subparsers, add_config
from presence_gateway.core.config import GatewayConfig, load_config
from presence_gateway.core.driver_config import (
    DriverSettings,
    DriverType,
    RecordingSettings,
    WifiMonitorSettings,
    default_ble,
)
from presence_gateway.errors import GatewayError

Result = tuple[str, str, str]  # (status, check, detail)
OK, WARN, FAIL = "ok", "warn", "FAIL"


def register(sub: Subparsers) -> None:
    p = sub.add_parser("doctor", help="check config, storage, broker and radios",
                       description="Check config, offer rules, storage, broker and radios;"
                                   " each check says ok, warn or FAIL and what to do.")
    add_config(p)
    p.set_defaults(func=lambda args: run_doctor(args.config))


def check_storage(cfg: GatewayConfig) -> Result:
    path = Path(cfg.storage.path)
    parent = path.parent if str(path.parent) else Path(".")
    if path.exists():
        mode = path.stat().st_mode & 0o777
        if not os.access(path, os.W_OK):
            return FAIL, "storage", f"{path} is not writable by this user"
        if mode & 0o077:
            return WARN, "storage", f"{path} has mode {mode:o}; expected 600 (chmod 600)"
        return OK, "storage", f"{path} writable, mode 600"
    if not parent.exists():
        return WARN, "storage", f"{parent} does not exist yet (created at start)"
    if not os.access(parent, os.W_OK):
        return FAIL, "storage", f"cannot create {path}: {parent} is not writable"
    return OK, "storage", f"{path} will be created"


def check_broker(cfg: GatewayConfig, timeout: float = 5.0) -> Result:
    m = cfg.mqtt
    where = f"{m.host}:{m.port}"
    try:
        with socket.create_connection((m.host, m.port), timeout=timeout):
            pass
    except socket.gaierror:
        return FAIL, "broker", f"cannot resolve {m.host} (check mqtt.host and DNS)"
    except OSError as exc:
        return FAIL, "broker", f"{where}: {exc.strerror or exc} (broker down or wrong port?)"
    return _mqtt_connect(cfg, timeout)


def _mqtt_connect(cfg: GatewayConfig, timeout: float) -> Result:
    """A real CONNECT (over TLS when configured, with the gateway's certificate if any)."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from presence_gateway.adapters.mqttlink import SocketErrorTrap, explain_oserror, tls_context
    m = cfg.mqtt
    result: list[str] = []
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{m.client_id}-doctor",
                         protocol=mqtt.MQTTv311)
    if m.username:
        client.username_pw_set(m.username, m.password)
    try:
        tls = tls_context(m)
    except GatewayError as exc:
        return FAIL, "broker", str(exc)
    if tls is not None:
        client.tls_set_context(tls)
    # paho reports a failed read only as "connection lost": the trap keeps the OSError, e.g.
    # TLS 1.3's "certificate required" alert, which arrives after connect() returned.
    trap = SocketErrorTrap()
    client.logger = trap
    client.on_connect = lambda c, u, f, rc, p: result.append(str(rc))
    try:
        client.connect(m.host, m.port, keepalive=10)
        deadline = time.monotonic() + timeout
        while not result and trap.caught is None and time.monotonic() < deadline:
            client.loop(0.1)
        client.disconnect()
    except OSError as exc:
        return FAIL, "broker", explain_oserror(exc, m.host, m.port)
    if not result:
        if trap.caught is not None:
            return FAIL, "broker", explain_oserror(trap.caught, m.host, m.port)
        return FAIL, "broker", f"{m.host}:{m.port} accepts TCP but sends no CONNACK"
    if result[0] != "Success":
        return FAIL, "broker", f"{m.host}:{m.port} refused: {result[0]} (credentials? ACL?)"
    return OK, "broker", f"{m.host}:{m.port} answers MQTT{' over TLS' if tls else ''}"


def check_driver(d: DriverSettings) -> Result:
    name = f"driver {d.name}"
    if isinstance(d, RecordingSettings):
        missing = [p for p in d.paths if not Path(p).is_file()]
        if missing:
            return FAIL, name, f"missing capture file(s): {', '.join(missing)}"
        return OK, name, f"{len(d.paths)} recording(s) readable"
    if isinstance(d, WifiMonitorSettings):
        iface = d.interface
        type_file = Path(f"/sys/class/net/{iface}/type")
        if not type_file.exists():
            return FAIL, name, f"interface {iface} not found (presence-gateway radio list)"
        if type_file.read_text().strip() != "803":
            return FAIL, name, (f"{iface} is not in monitor mode "
                                f"(presence-gateway radio monitor {iface})")
        return OK, name, f"{iface} is in monitor mode (RadioTap)"
    if d.type is DriverType.BLE_BLEAK:
        if not Path("/run/dbus/system_bus_socket").exists():
            return FAIL, name, "no system D-Bus: is this a full OS with bluetoothd running?"
        adapters = sorted(p.name for p in Path("/sys/class/bluetooth").glob("hci*")) \
            if Path("/sys/class/bluetooth").exists() else []
        if not adapters:
            return FAIL, name, "no Bluetooth adapter (hciconfig -a; rfkill unblock bluetooth)"
        return OK, name, f"adapters: {', '.join(adapters)}"
    return OK, name, d.type.value


def check_build(cfg: GatewayConfig) -> Result:
    """Build the whole gateway (rules, identity, core, writer) the way `run` does, on a
    scratch database so nothing is changed; what would fail at start fails here."""
    import asyncio
    import dataclasses
    import tempfile

    from presence_gateway.runtime.assembly import Mode, RunOptions, open_runtime

    async def build(path: str) -> str:
        scratch = dataclasses.replace(cfg, storage=dataclasses.replace(cfg.storage, path=path))
        async with open_runtime(scratch, RunOptions(mode=Mode.LIVE, publish=False),
                                drivers=()) as rt:
            n = len(rt.rules.rules)
            return f"the gateway builds ({n} offer rule(s), {len(cfg.presence.zones)} zone(s))"

    with tempfile.TemporaryDirectory(prefix="presence-gateway-doctor-") as tmp:
        path = Path(tmp) / "gateway.db"
        path.touch(mode=0o600)  # an empty file is a new SQLite database
        try:
            return OK, "build", asyncio.run(build(str(path)))
        except GatewayError as exc:
            return FAIL, "build", str(exc)


def check_code() -> Result:
    """Which build runs: a fleet installs the compiled wheel (gateway/build.py), which takes
    about three quarters of the pure-Python CPU per observation on a real day and stays flat
    at a crowd (docs/performance.md); pure Python is for development and tests."""
    from presence_gateway.build import describe

    what = describe()
    if what.startswith("compiled"):
        return OK, "code", what
    return WARN, "code", (f"{what}: about 1.3x the CPU per observation of the compiled wheel;"
                          " for a fleet, build it once per architecture (make wheel,"
                          " firmware_tools/INSTALL.md)")


def run_doctor(config: str | None, out: Callable[[str], None] = print) -> int:
    try:
        cfg = load_config(config)
    except GatewayError as exc:
        out(f"FAIL  config     {exc}")
        return 2
    results: list[Result] = [(OK, "config", f"{cfg.source}: store {cfg.store_id}, "
                                              f"gateway {cfg.gateway_id}")]
    if cfg.privacy.secret_source == "random":
        results.append((WARN, "privacy", "privacy.secret is random: device keys change at every"
                                         " restart and the identity registry cannot be used"))
    results.append(check_build(cfg))
    results.append(check_code())
    results.append(check_storage(cfg))
    results.append(check_broker(cfg))
    results.extend(check_driver(d) for d in cfg.drivers or (default_ble(),))
    for status, check, detail in results:
        out(f"{status:<5} {check:<10} {detail}")
    return 1 if any(r[0] == FAIL for r in results) else 0

