"""Scripted store visits with known truth, for the identity and offers end-to-end tests.

Everything is built from the public formats with the project's reference encoders, never by
calling the gateway's own decoders: app tokens with `firmware_tools/app_token.py`, resolvable
private addresses with `core/identity/resolve.py` `ah` (Core spec), Eddystone-EID with
`core/identity/resolve.py` `eid`, Wi-Fi probe requests with scapy (RadioTap + 802.11 bytes).

Cast (customer ids are distinctive so a scan can look for them):
    alice  app_token       personalization analytics offers   tier=gold     (BLE, app token)
    bob    ibeacon         analytics                          tier=gold     (no link may leave)
    carol  irk             (none)                             tier=gold     (never matches)
    dan    wifi_mac        personalization                                  (Wi-Fi probes)
    erin   irk             personalization analytics                        (BLE RPA)
    frank  eddystone_eid   personalization offers             tier=silver   (BLE EID frames)
    grace  ibeacon         personalization analytics offers   tier=gold     (device opted out)
plus one anonymous phone. Grace's phone address is on the opt-out list: it must vanish at the
boundary, so she must never be linked although her beacon is registered with full consent.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from presence_gateway.core.identity.resolve import ah, app_token, app_token_window, eid
from presence_gateway.firmware_tools.app_token import ibeacon_payload

ROOT = Path(__file__).resolve().parents[2]
SECRET = "e2e-privacy-secret-0123456789abcdef"
SYNC_KEY = "e2e-identity-sync-key-0123456789"
COMMAND_KEY = "e2e-offers-command-key-012345678"
ENV = {"PG_SECRET": SECRET, "PG_SYNC_KEY": SYNC_KEY, "PG_COMMAND_KEY": COMMAND_KEY}
APP_UUID = "8c0e9f2a-4b1d-4c4e-9a57-0d3f1c2b5e6a"
BEACON_UUID = "e20a39f4-73f5-4bc4-a12f-17d1ad07a961"
TZ = "Europe/Berlin"
# Monday 2025-06-02 10:00 Europe/Berlin = 08:00 UTC (rotation periods start at 04:00 UTC).
T0 = 1748851200.0
DAY = 86400.0


@dataclass(frozen=True, slots=True)
class Person:
    customer: str
    kind: str
    value: str          # the import `value`
    consent: str
    segments: str
    address: str        # what the phone sends on air (display order)
    address_type: str   # BLE TxAdd, or "wifi"


ALICE_SECRET = "a1" * 16 + "0f" * 16
CAROL_IRK = "5a" * 8 + "c3" * 8
ERIN_IRK = "ec0234a357c8ad05341010a60a397d9b"
FRANK_EID_KEY = "0123456789abcdeffedcba9876543210"
DAN_MAC = "3c:22:fb:12:34:56"


def rpa(irk_hex: str, prand: bytes) -> str:
    """A resolvable private address: prand (top bits 0b01) || ah(irk, prand), MSB first."""
    assert prand[0] & 0xC0 == 0x40
    addr = prand + ah(bytes.fromhex(irk_hex), prand)
    return ":".join(f"{b:02x}" for b in addr)


PEOPLE = {
    "alice": Person("cust-alice-4f7a", "app_token", ALICE_SECRET,
                    "personalization analytics offers", "tier=gold", "c4:01:02:03:04:a1",
                    "random"),
    "bob": Person("cust-bob-91c2", "ibeacon", f"{BEACON_UUID}/7/9", "analytics", "tier=gold",
                  "c4:01:02:03:04:b2", "random"),
    "carol": Person("cust-carol-55d0", "irk", CAROL_IRK, "", "tier=gold",
                    rpa(CAROL_IRK, b"\x52\x33\x44"), "random"),
    "dan": Person("cust-dan-0b3e", "wifi_mac", DAN_MAC, "personalization", "", DAN_MAC,
                  "wifi"),
    "erin": Person("cust-erin-7d21", "irk", ERIN_IRK, "personalization analytics", "",
                   rpa(ERIN_IRK, b"\x4e\x11\x22"), "random"),
    "frank": Person("cust-frank-c6a9", "eddystone_eid", f"{FRANK_EID_KEY}/10",
                    "personalization offers", "tier=silver", "c4:01:02:03:04:f6", "random"),
    "grace": Person("cust-grace-e813", "ibeacon", f"{BEACON_UUID}/7/10",
                    "personalization analytics offers", "tier=gold", "c4:01:02:03:04:d7",
                    "random"),
}
ANON_ADDRESS = "c4:01:02:03:04:99"
OPTED_OUT = PEOPLE["grace"].address


def identities_csv(names: Iterable[str] = PEOPLE) -> str:
    rows = ["customer_id,kind,value,consent,segments"]
    rows += [f"{p.customer},{p.kind},{p.value},{p.consent},{p.segments}"
             for p in (PEOPLE[n] for n in names)]
    return "\n".join(rows) + "\n"


def ibeacon_hex(uuid: str, major: int, minor: int) -> str:
    return ibeacon_payload(uuid, major, minor, -59).hex()


def ble_advert(name: str, ts: float, rssi: int = -55) -> dict[str, object]:
    """One JSONL recording line (docs/ble_recording.md) for a BLE person at time ts."""
    p = PEOPLE[name] if name != "anon" else None
    line: dict[str, object] = {"ts": ts, "address": p.address if p else ANON_ADDRESS,
                               "address_type": "random", "rssi": rssi, "channel": 37}
    if p is None:
        line["manufacturer_data"] = {"76": "1005031c2d8e1b"}  # Apple Nearby Info: anonymous
    elif p.kind == "app_token":
        major, minor = app_token(bytes.fromhex(p.value), app_token_window(ts))
        line["manufacturer_data"] = {"76": ibeacon_hex(APP_UUID, major, minor)}
    elif p.kind == "ibeacon":
        uuid, fixed_major, fixed_minor = p.value.split("/")
        line["manufacturer_data"] = {"76": ibeacon_hex(uuid, int(fixed_major), int(fixed_minor))}
    elif p.kind == "eddystone_eid":
        key, k = p.value.split("/")
        line["service_data"] = {"feaa": "30e7" + eid(bytes.fromhex(key), int(k), int(ts)).hex()}
    elif p.kind == "irk":
        line["manufacturer_data"] = {"76": "1005031c2d8e1b"}  # the RPA alone identifies
    return line


def ble_recording(names: Iterable[str], start: float, minutes: float, step: float = 5.0,
                  rssi: int = -55) -> str:
    lines = []
    names = list(names)
    t = 0.0
    while t < minutes * 60:
        for i, n in enumerate(names):
            lines.append(ble_advert(n, start + t + i * 0.1, rssi))
        t += step
    return "".join(json.dumps(x) + "\n" for x in lines)


def wifi_probes(path: Path, address: str, start: float, minutes: float, step: float = 5.0,
                ssid: bytes = b"") -> None:
    """A pcap (RadioTap, linktype 127) of probe requests from `address`, built with scapy."""
    from scapy.layers.dot11 import Dot11, Dot11Elt, Dot11ProbeReq, RadioTap
    from scapy.utils import PcapWriter

    rates = bytes([0x02, 0x04, 0x0B, 0x16, 0x0C, 0x12, 0x18, 0x24])
    with PcapWriter(str(path), linktype=127, sync=True) as w:
        t, seq = 0.0, 100
        while t < minutes * 60:
            frame = (RadioTap(present="Channel+dBm_AntSignal", ChannelFrequency=2437,
                              ChannelFlags="2GHz+CCK", dBm_AntSignal=-50)
                     / Dot11(type=0, subtype=4, addr1="ff:ff:ff:ff:ff:ff", addr2=address,
                             addr3="ff:ff:ff:ff:ff:ff", SC=seq << 4)
                     / Dot11ProbeReq() / Dot11Elt(ID=0, info=ssid) / Dot11Elt(ID=1, info=rates))
            frame.time = start + t
            w.write(frame)
            t += step
            seq = (seq + 1) & 0xFFF


def gateway_yaml(path: Path, *, db: Path, broker_url: str | None = None,
                 rules: Path | None = None, drivers: str = "", extra: str = "") -> Path:
    text = (f"store: {{id: s1, timezone: {TZ}}}\ngateway: {{id: gw1}}\n"
            f"storage: {{path: '{db}', batch_interval: 50ms}}\n"
            f"privacy: {{secret: env:PG_SECRET, retention_days: 30}}\n"
            f"identity:\n  sync_key: env:PG_SYNC_KEY\n  app_token: {{uuid: {APP_UUID}}}\n")
    if broker_url:
        text += f"mqtt: {{url: '{broker_url}'}}\n"
    if rules is not None:
        text += f"offers: {{rules: '{rules}', command_key: env:PG_COMMAND_KEY}}\n"
    path.write_text(text + drivers + extra)
    return path


def env() -> dict[str, str]:
    return {**os.environ, **ENV, "PYTHONPATH": str(ROOT)}
