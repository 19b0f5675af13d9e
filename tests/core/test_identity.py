"""Identity registry core: import parsing, the boundary resolver per kind (consent-scoped
linking: test_identity_link.py).

Adverts are built as bytes and decoded by the project's own BLE decoder (gateway.core.ble), so
the hints the resolver sees are exactly the ones the live path produces.
"""

from __future__ import annotations

import pytest

from presence_gateway.core.ble import decode as ble
from presence_gateway.core.identity.importer import parse_import
from presence_gateway.core.identity.index import (
    Entry,
    EntryKind,
    IdentityIndex,
    Invalid,
    parse_material,
)
from presence_gateway.core.identity.resolve import ah, app_token, app_token_window, eid
from presence_gateway.core.model import AddressKind, Radio, Rejection, Sighting
from presence_gateway.core.privacy import Boundary, Pseudonymizer
from presence_gateway.firmware_tools.app_token import ibeacon_ad

SECRET = b"store-secret-0123456789abcdef"
P = Pseudonymizer(SECRET)
H = P.stable_hash
UUID = "2f234454-cf6d-4a0f-adf2-f4911ba9ffa6"
APP_SECRET = bytes(range(32))
IRK = bytes.fromhex("ec0234a357c8ad05341010a60a397d9b")  # Core spec D.7 sample key
EID_KEY = bytes.fromhex("e2c56db5dffb48d2b060d0f5a71096e0")
NS, INST = "8b0ca750e7a74e14bd99", "0a1b2c3d4e5f"
PHONE_MAC = "3c:22:fb:12:34:56"
T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z

CSV = f"""customer_id,kind,value,consent,segments,expires
c-ibeacon,ibeacon,{UUID.upper()}/1/2,analytics personalization offers,tier=gold;store=12,
c-uid,eddystone_uid,{NS}/{INST},personalization,,
c-eid,eddystone_eid,{EID_KEY.hex()}/10,personalization analytics,,
c-irk,irk,{IRK.hex()},personalization,tier=silver,2030-01-01
c-mac,wifi_mac,{PHONE_MAC},personalization analytics,,
c-app,app_token,{APP_SECRET.hex()},personalization offers,,
"""


def load(text: str = CSV, name: str = "customers.csv") -> list[Entry]:
    result = parse_import(text, name, H)
    assert not result.errors, [str(e) for e in result.errors]
    return list(result.entries)


def index(entries: list[Entry] | None = None) -> IdentityIndex:
    return IdentityIndex(H, load() if entries is None else entries, app_uuid=UUID)


def by_customer(ix: IdentityIndex) -> dict[str, str]:
    return {e.customer_id: e.entry_id for e in ix.entries()}


def ble_sightings(ad: bytes, address: bytes, ts: float) -> list[Sighting]:
    advert = ble.parse_ad(ad)
    assert not isinstance(advert, Rejection)
    return ble.to_sightings(ts, address, "random", -60, advert)


def eddystone_ad(frame: bytes) -> bytes:
    return b"\x03\x03\xaa\xfe" + bytes((len(frame) + 3, 0x16, 0xAA, 0xFE)) + frame


def resolve_all(ix: IdentityIndex, sightings: list[Sighting]) -> str | None:
    found = {ix.resolve(s) for s in sightings} - {None}
    assert len(found) <= 1
    return found.pop() if found else None


STATIC = bytes.fromhex("c0de00000001")  # random static: never resolves by address


# -- import parsing -------------------------------------------------------------------------------


def test_csv_import_all_kinds_hashes_ids_and_keeps_only_needed_secrets() -> None:
    entries = load()
    kinds = {e.customer_id: e.kind for e in entries}
    assert kinds == {"c-ibeacon": EntryKind.IBEACON, "c-uid": EntryKind.EDDYSTONE_UID,
                     "c-eid": EntryKind.EDDYSTONE_EID, "c-irk": EntryKind.IRK,
                     "c-mac": EntryKind.WIFI_MAC, "c-app": EntryKind.APP_TOKEN}
    ib = next(e for e in entries if e.kind is EntryKind.IBEACON)
    assert ib.consent == {"analytics", "personalization", "offers"}
    assert dict(ib.segments) == {"tier": "gold", "store": "12"}
    stored = " ".join(e.material for e in entries).lower()
    for raw in (UUID, UUID.replace("-", ""), NS, INST, PHONE_MAC, PHONE_MAC.replace(":", "")):
        assert raw not in stored
    irk = next(e for e in entries if e.kind is EntryKind.IRK)
    assert irk.material == IRK.hex() and irk.expires == 1_893_542_400.0  # end of 2030-01-01
    assert IRK.hex() not in repr(irk)  # never shown


def test_reimport_gives_same_entry_ids() -> None:
    assert [e.entry_id for e in load()] == [e.entry_id for e in load()]


def test_csv_errors_name_file_line_and_column() -> None:
    text = ("customer_id,kind,value,consent,segments\n"
            f"ok,ibeacon,{UUID}/1/2,offers,\n"
            "bad-kind,beacon,x,offers,\n"
            f"bad-val,ibeacon,{UUID}/1/70000,offers,\n"
            f"bad-scope,irk,{IRK.hex()},marketing,\n"
            f"bad-seg,irk,{IRK[::-1].hex()},offers,tier\n"
            ",wifi_mac,01:00:5e:00:00:01,offers,\n"
            f"dup,ibeacon,{UUID}/1/2,offers,\n")
    errors = [str(e) for e in parse_import(text, "in.csv", H).errors]
    assert errors == [
        "in.csv:3 kind: unknown kind (expected one of: app_token, eddystone_eid, "
        "eddystone_uid, ibeacon, irk, wifi_mac)",
        "in.csv:4 value: major and minor must be integers 0..65535",
        "in.csv:5 consent: unknown scope 'marketing' (expected: analytics, offers, "
        "personalization)",
        "in.csv:6 segments: expected key=value pairs separated by ';', got 'tier'",
        "in.csv:7 customer_id: expected an opaque id of 1..128 printable characters, no spaces",
        "in.csv:7 value: a group (multicast) address is never a device",
        "in.csv:8 value: the same identity is already on line 2",
    ]


def test_csv_header_and_multiline_row_numbers() -> None:
    bad = parse_import("customer_id,kind,value\n", "h.csv", H).errors
    assert [str(e) for e in bad] == [
        "h.csv:1: missing column consent (columns: customer_id, kind, value, consent, "
        "optional segments, id, expires)"]
    text = ('customer_id,kind,value,consent,segments\n'
            f'a,irk,{IRK.hex()},offers,"tier=gold;\nnote=two lines"\n'
            'b,irk,zz,offers,\n')
    assert [str(e) for e in parse_import(text, "m.csv", H).errors] == [
        "m.csv:4 value: expected a 16-byte IRK (hex or base64)"]


def test_json_import_and_errors_with_lines() -> None:
    text = f"""{{"entries": [
  {{"customer_id": "a", "kind": "app_token", "value": "{APP_SECRET.hex()}",
   "consent": ["offers", "personalization"], "segments": {{"tier": "gold", "visits": 3}}}},
  {{"customer_id": "b", "kind": "irk", "value": "{IRK.hex()}", "consent": "analytics",
   "expires": "2026-02-01T10:00:00"}},
  {{"customer_id": "c", "kind": "irk", "value": "{IRK[::-1].hex()}", "consent": "offers",
   "colour": 1}}
]}}"""
    result = parse_import(text, "in.json", H)
    assert [str(e) for e in result.errors] == [
        "in.json:4 expires: the time needs an offset (e.g. Z or +01:00)",
        "in.json:6 colour: unknown key"]
    ok = parse_import(text.replace("T10:00:00", "T10:00:00Z").replace(",\n   \"colour\": 1", ""),
                      "in.json", H)
    assert not ok.errors
    assert dict(ok.entries[0].segments) == {"tier": "gold", "visits": "3"}
    assert ok.entries[1].expires == 1_769_940_000.0


@pytest.mark.parametrize(("kind", "value"), [
    ("ibeacon", "not-a-uuid/1/2"), ("eddystone_uid", "abc/def"), ("eddystone_eid", "00/3"),
    ("eddystone_eid", EID_KEY.hex() + "/16"), ("irk", "0011"), ("wifi_mac", "zz"),
    ("app_token", "00ff"), ("app_token", "nope/" + APP_SECRET.hex()), ("other", "x"),
])
def test_bad_values_are_typed_rejections(kind: str, value: str) -> None:
    assert isinstance(parse_material(kind, value, H), Invalid)


# -- the resolver, kind by kind ----------------------------------------------------------------


def test_ibeacon_and_eddystone_uid_hints_resolve() -> None:
    ix = index()
    ids = by_customer(ix)
    ib = ble_sightings(ibeacon_ad(UUID, 1, 2, -59), STATIC, T0)
    assert resolve_all(ix, ib) == ids["c-ibeacon"]
    assert resolve_all(ix, ble_sightings(ibeacon_ad(UUID, 1, 3, -59), STATIC, T0)) is None
    uid = eddystone_ad(b"\x00\xee" + bytes.fromhex(NS + INST) + b"\x00\x00")
    assert resolve_all(ix, ble_sightings(uid, STATIC, T0)) == ids["c-uid"]


def test_eddystone_eid_current_and_neighbours_only() -> None:
    ix = index()
    target = by_customer(ix)["c-eid"]
    period = 1 << 10

    def at(beacon_t: int, now: float) -> str | None:
        frame = b"\x30\xee" + eid(EID_KEY, 10, beacon_t)
        return resolve_all(ix, ble_sightings(eddystone_ad(frame), STATIC, now))

    now = T0 + 123
    assert at(int(now), now) == target
    assert at(int(now) - period, now) == target  # one period of clock skew
    assert at(int(now) + period, now) == target
    assert at(int(now) - 3 * period, now) is None  # a recording from an hour ago
    assert at(int(now) + 10 * period, now + 10 * period) == target  # table rolls forward


def rpa(irk: bytes, prand_tail: bytes = b"\x81\x94") -> bytes:
    prand = bytes((0x40 | 0x30,)) + prand_tail  # top bits 01: resolvable
    return prand + ah(irk, prand)


def test_irk_resolves_resolvable_addresses_only() -> None:
    ix = index()
    target = by_customer(ix)["c-irk"]
    address = rpa(IRK)
    s = Sighting(T0, Radio.BLE, address, AddressKind.RESOLVABLE, -60, None, "apple")
    assert ix.resolve(s) == target
    other = rpa(bytes(16))
    assert ix.resolve(Sighting(T0, Radio.BLE, other, AddressKind.RESOLVABLE, -60, None,
                               "apple")) is None
    assert ix.resolve(Sighting(T0, Radio.BLE, address, AddressKind.STATIC, -60, None,
                               "apple")) is None


def test_wifi_mac_only_for_wifi_public_addresses() -> None:
    ix = index()
    target = by_customer(ix)["c-mac"]
    mac = bytes.fromhex(PHONE_MAC.replace(":", ""))

    def s(radio: Radio, kind: AddressKind) -> Sighting:
        return Sighting(T0, radio, mac, kind, -50, 6, "probe_request")

    assert ix.resolve(s(Radio.WIFI, AddressKind.PUBLIC)) == target
    assert ix.resolve(s(Radio.WIFI, AddressKind.RANDOM)) is None
    assert ix.resolve(s(Radio.BLE, AddressKind.PUBLIC)) is None
    # A registered stable private address (locally administered) matches random-kind frames.
    priv = load("customer_id,kind,value,consent\np,wifi_mac,da:a1:19:00:00:01,analytics\n")
    ix2 = IdentityIndex(H, priv)
    frame = Sighting(T0, Radio.WIFI, bytes.fromhex("daa119000001"), AddressKind.RANDOM,
                     -50, 6, "probe_request")
    assert ix2.resolve(frame) == priv[0].entry_id


def test_app_token_window_tolerance_and_unregistered_secret() -> None:
    ix = index()
    target = by_customer(ix)["c-app"]
    now = T0 + 42
    w = app_token_window(now)

    def advert(secret: bytes, window: int) -> str | None:
        major, minor = app_token(secret, window)
        return resolve_all(ix, ble_sightings(ibeacon_ad(UUID, major, minor, -59), STATIC, now))

    assert advert(APP_SECRET, w) == target
    assert advert(APP_SECRET, w - 1) == target
    assert advert(APP_SECRET, w + 1) == target
    assert advert(APP_SECRET, w - 2) is None  # replayed from beyond the tolerance
    assert advert(bytes(32), w) is None  # a secret nobody registered


def test_expired_or_unconsented_entries_never_match() -> None:
    text = (f"customer_id,kind,value,consent,expires\n"
            f"old,irk,{IRK.hex()},personalization,2025-12-31\n"
            f"none,irk,{bytes(range(16)).hex()},,\n")
    ix = IdentityIndex(H, load(text))
    old = Sighting(T0 - 10, Radio.BLE, rpa(IRK), AddressKind.RESOLVABLE, -60, None, "x")
    assert ix.resolve(old) is not None  # still live ten seconds before the expiry
    assert ix.resolve(Sighting(T0, Radio.BLE, rpa(IRK), AddressKind.RESOLVABLE, -60, None,
                               "x")) is None
    assert ix.resolve(Sighting(T0, Radio.BLE, rpa(bytes(range(16))), AddressKind.RESOLVABLE,
                               -60, None, "x")) is None


def test_app_token_without_uuid_is_reported_unusable() -> None:
    entries = load(f"customer_id,kind,value,consent\na,app_token,{APP_SECRET.hex()},offers\n")
    ix = IdentityIndex(H, entries)
    assert ix.unusable == [entries[0].entry_id]


# -- boundary: daily key rotation with a stable identity ------------------------------------


def test_same_device_unrelated_keys_on_two_days_but_same_identity() -> None:
    ix = index()
    boundary = Boundary(Pseudonymizer(SECRET, offset_s=0.0), resolver=ix)
    address = rpa(IRK)
    day1 = boundary.admit(Sighting(T0 + 3600, Radio.BLE, address, AddressKind.RESOLVABLE,
                                   -60, None, "apple"))
    day2 = boundary.admit(Sighting(T0 + 86400 + 3600, Radio.BLE, address,
                                   AddressKind.RESOLVABLE, -60, None, "apple"))
    assert day1 is not None and day2 is not None
    assert day1.device != day2.device
    # unrelated: no shared prefix/suffix beyond chance, not derivable from each other's bits
    assert sum(a == b for a, b in zip(day1.device, day2.device, strict=True)) < 8
    assert day1.identity == day2.identity == by_customer(ix)["c-irk"]
    # the same day, same key
    again = boundary.admit(Sighting(T0 + 7200, Radio.BLE, address, AddressKind.RESOLVABLE,
                                    -60, None, "apple"))
    assert again is not None and again.device == day1.device
