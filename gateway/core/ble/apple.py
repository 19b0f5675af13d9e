"""Apple manufacturer data (company 0x004C): Continuity type-length-value messages.

Invariants:
- HomeKit (0x06) packs its length into the low 5 bits of the length byte.
- The payload is a sequence of `type, length, value` messages (names as in furiousMAC/continuity);
  type 0x01 (the background "overflow area") has no length byte and takes the 16 bytes after it.
- An iBeacon (type 0x02, length 21) becomes its own `ibeacon` Decoded; the other messages form
  one `apple` Decoded {"messages": [...], "device_class": str | None}. A message whose length
  runs past the payload is kept with "truncated": True and ends the walk (SDR bit errors do this).
- Only non-personal values are exposed: message names, activity/action codes, product models,
  HomeKit categories. Never auth tags, hashes of contacts (AirDrop), IPv4 addresses (AirPlay
  target) or Find My public keys.
- `device_class` is set only where a message states it: Hey Siri's device class, a proximity
  pairing product model, the Find My status byte's device type. Otherwise None.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from presence_gateway.core.ble.beacons import ibeacon_body
from presence_gateway.core.ble.types import Decoded, decoded

NAMES = {
    0x01: "overflow",
    0x02: "ibeacon",
    0x03: "airprint",
    0x05: "airdrop",
    0x06: "homekit",
    0x07: "proximity_pairing",
    0x08: "hey_siri",
    0x09: "airplay_target",
    0x0A: "airplay_source",
    0x0B: "magic_switch",
    0x0C: "handoff",
    0x0D: "tethering_target",
    0x0E: "tethering_source",
    0x0F: "nearby_action",
    0x10: "nearby_info",
    0x12: "findmy",
}

# Nearby Info, low nibble of the first byte (furiousMAC/continuity "action code").
ACTIVITY = {
    0x00: "unknown",
    0x01: "reporting_disabled",
    0x03: "idle",
    0x05: "audio_screen_locked",
    0x07: "screen_on",
    0x09: "screen_on_video",
    0x0A: "watch_on_wrist_unlocked",
    0x0B: "recent_interaction",
    0x0D: "driving",
    0x0E: "call_or_facetime",
}

# Nearby Action, second byte (action type).
ACTIONS = {
    0x01: "apple_tv_setup",
    0x04: "mobile_backup",
    0x05: "watch_setup",
    0x06: "apple_tv_pair",
    0x07: "internet_relay",
    0x08: "wifi_password",
    0x09: "ios_setup",
    0x0A: "repair",
    0x0B: "speaker_setup",
    0x0C: "apple_pay",
    0x0D: "whole_home_audio_setup",
    0x0E: "developer_tools_pairing",
    0x0F: "answered_call",
    0x10: "ended_call",
    0x11: "dd_ping",
    0x12: "dd_pong",
    0x13: "remote_auto_fill",
    0x14: "companion_link_proximity",
    0x15: "remote_management",
    0x16: "remote_auto_fill_pong",
    0x17: "remote_display",
}

# Proximity pairing product models (two bytes as sent), e.g. OpenPods / furiousMAC tables.
MODELS = {
    0x0220: "AirPods",
    0x0F20: "AirPods (2nd generation)",
    0x1320: "AirPods (3rd generation)",
    0x0E20: "AirPods Pro",
    0x1420: "AirPods Pro (2nd generation)",
    0x2420: "AirPods Pro (2nd generation, USB-C)",
    0x0A20: "AirPods Max",
    0x0320: "Powerbeats3",
    0x0B20: "Powerbeats Pro",
    0x0C20: "Beats Solo Pro",
    0x0520: "BeatsX",
    0x0620: "Beats Solo3",
    0x0920: "Beats Studio3",
    0x1020: "Beats Flex",
    0x1120: "Beats Studio Buds",
    0x1220: "Beats Fit Pro",
    0x1620: "Beats Studio Buds+",
    0x1720: "Beats Studio Pro",
}

# Hey Siri device class (two bytes, big-endian).
SIRI_CLASSES = {0x0002: "iphone", 0x0003: "ipad", 0x0009: "mac", 0x000A: "watch"}

# Find My status byte, bits 4-5 (as read by AirGuard and "Who can find my devices?").
FINDMY_CLASSES = ("apple_device", "airtag", "findmy_accessory", "airpods")

_Msg = dict[str, Any]


def _nearby_info(msg: _Msg, body: bytes) -> str | None:
    if body:
        code = body[0] & 0x0F
        msg["action_code"] = code
        msg["activity"] = ACTIVITY.get(code)
    return None


def _nearby_action(msg: _Msg, body: bytes) -> str | None:
    if len(body) >= 2:
        msg["action_type"] = body[1]
        msg["action"] = ACTIONS.get(body[1])
    return None


def _proximity_pairing(msg: _Msg, body: bytes) -> str | None:
    if len(body) < 3:
        return None
    model = body[1] << 8 | body[2]
    msg["model_code"] = model
    name = MODELS.get(model)
    msg["model"] = name
    return "headphones" if name is not None else None


def _findmy(msg: _Msg, body: bytes) -> str | None:
    if not body:
        return None
    msg["status"] = body[0]
    cls = FINDMY_CLASSES[(body[0] >> 4) & 0x03]
    msg["device"] = cls
    return cls


def _hey_siri(msg: _Msg, body: bytes) -> str | None:
    if len(body) < 6:
        return None
    return SIRI_CLASSES.get(body[4] << 8 | body[5])


def _homekit(msg: _Msg, body: bytes) -> str | None:
    if len(body) >= 9:  # status flags, 6-byte device id (not exposed), category
        msg["category"] = body[7] | body[8] << 8
    return None


_DETAIL: dict[int, Callable[[_Msg, bytes], str | None]] = {
    0x10: _nearby_info,
    0x0F: _nearby_action,
    0x07: _proximity_pairing,
    0x12: _findmy,
    0x08: _hey_siri,
    0x06: _homekit,
}


# Name of every type byte, precomputed so the hot loop formats nothing.
_NAME = tuple(NAMES.get(t, f"0x{t:02x}") for t in range(256))


def decode_apple(payload: bytes) -> tuple[Decoded, ...] | str | None:
    """Split Apple manufacturer data into iBeacon and Continuity messages.

    Hot path (an iPhone's Nearby Info, alone or after one other message, is most of what a
    store hears): a lone Nearby Info skips the loop, a message body is sliced only for the
    types that read it, and Nearby Info is decoded inline rather than through the table.
    """
    n = len(payload)
    if not n:
        return None
    if n > 2 and payload[0] == 0x10 and payload[1] == n - 2:  # a lone Nearby Info, no loop
        code = payload[2] & 0x0F
        msg: _Msg = {
            "type": 16,
            "name": "nearby_info",
            "action_code": code,
            "activity": ACTIVITY.get(code),
        }
        return (decoded("apple", {"messages": [msg], "device_class": None}),)
    beacons: list[Decoded] | None = None
    messages: list[_Msg] = []
    device_class: str | None = None
    off = 0
    while off < n:
        t = payload[off]
        if t == 0x01:  # overflow area: no length byte, the 16 bytes after the type (no detail)
            messages.append({"type": 1, "name": "overflow"})
            off += 17
            continue
        if off + 1 >= n:
            messages.append({"type": t, "name": _NAME[t], "truncated": True})
            break
        # HomeKit packs a 3-bit subtype above a 5-bit length (HAP spec, BLE advertisement).
        length = payload[off + 1] & 0x1F if t == 0x06 else payload[off + 1]
        start = off + 2
        off = start + length
        if t == 0x10 and off <= n:  # Nearby Info: the low nibble of its first byte
            if length:
                code = payload[start] & 0x0F
                messages.append(
                    {
                        "type": t,
                        "name": "nearby_info",
                        "action_code": code,
                        "activity": ACTIVITY.get(code),
                    }
                )
            else:
                messages.append({"type": t, "name": "nearby_info"})
            continue
        if t == 0x02 and (length if off <= n else n - start) == 21:
            # An iBeacon (even one whose declared length runs past the payload, as before):
            # its own Decoded, not a Continuity message.
            beacon = ibeacon_body(payload[start : start + 21])
            if isinstance(beacon, Decoded):
                if beacons is None:
                    beacons = []
                beacons.append(beacon)
                continue
        if off > n:
            messages.append({"type": t, "name": _NAME[t], "truncated": True})
            break
        detail = _DETAIL.get(t)
        msg = {"type": t, "name": _NAME[t]}
        messages.append(msg)
        if detail is not None:
            device_class = detail(msg, payload[start:off]) or device_class
    if not messages:
        return tuple(beacons) if beacons else ()
    apple = decoded("apple", {"messages": messages, "device_class": device_class})
    if beacons is None:
        return (apple,)
    beacons.append(apple)
    return tuple(beacons)
