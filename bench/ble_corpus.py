"""The BLE benchmark corpus: raw AD bytes from every BLE source in ../shared/data/captures/ble.

Each source gives its adverts in file order, repeats included (a phone repeats its advert at
~10 Hz; that stream is what the memo sees). `distinct` dedupes by the AD bytes, across sources:
the uncached rows decode each distinct advert once per pass, so no frequent format dominates.

Sources (the project's own readers where there is one, so the bench sees what the gateway sees):
- captures: ice9 PHDR pcaps (256), the nRF Sniffer pcapng (272) and the btsnoop HCI log, through
  drivers.ble_pcap.iter_capture; one advert per advertiser record (AirAdvert.data, scan
  responses on their own as the replay driver decodes them).
- beacontools HCI events: core.ble.air.hci_event_reports, as tests/drivers/test_ble_pcap does.
- AD vectors (bluetooth-data-tools, beacontools parser incl. its negative vectors, AltBeacon):
  the hex as given (bluetooth-data-tools' payloads concatenated, as its notes say).
- Theengs vectors carry fields, not AD bytes: they are written back as AD structures (complete
  name 0x09, 16-bit service UUID list 0x03, service data 0x16, manufacturer data 0xFF). Service
  data without a UUID (9 Xiaomi vectors) has no AD form and is left out of that advert.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from presence_gateway.core.ble.air import AirAdvert, hci_event_reports
from presence_gateway.drivers.ble_pcap import iter_capture

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT / ".." / "shared" / "data" / "captures" / "ble"
LOCAL_VECTORS = ROOT / "tests" / "data" / "ble"  # the permissively licensed vector copies
CAPTURE_DIRS = ("ice9_hackrf_boston", "nrf_sniffer", "btsnoop")


def _ad(t: int, body: bytes) -> bytes:
    return bytes((len(body) + 1, t)) + body if len(body) < 255 else b""


def _hex(text: str | None) -> bytes | None:
    """Vector hex -> bytes; None for placeholders ("xxxx"); an odd last nibble (two H5055
    vectors) is dropped, as a reader of byte pairs does."""
    try:
        return bytes.fromhex(text[: len(text) & ~1]) if text else None
    except ValueError:
        return None


def theengs_ad(v: dict[str, Any]) -> bytes:
    """A Theengs vector's fields as AD structures (name, UUID list, service data, mfr data)."""
    out = b""
    if v.get("name"):
        out += _ad(0x09, v["name"].encode())
    uuid = v.get("service_data_uuid")
    uuid_le = int(uuid, 16).to_bytes(2, "little") if uuid else b""
    src = v.get("data_source")  # section "uuid": which kind of data "data" is
    svc = _hex(v.get("service_data", v["data"] if src == "servicedata" else None))
    mfr = _hex(v.get("manufacturer_data", v["data"] if src == "manufacturerdata" else None))
    if uuid_le and svc is not None:
        out += _ad(0x16, uuid_le + svc)
    elif uuid_le:  # a UUID with manufacturer data: the UUID is advertised as a list
        out += _ad(0x03, uuid_le)
    if mfr is not None and len(mfr) >= 2:
        out += _ad(0xFF, mfr)
    return out


def _vectors(name: str) -> dict[str, Any] | None:
    for folder in (SHARED / "vectors", LOCAL_VECTORS):
        if (folder / name).exists():
            doc: dict[str, Any] = json.loads((folder / name).read_text())
            return doc
    return None


def vector_sources() -> dict[str, list[bytes]]:
    out: dict[str, list[bytes]] = {}
    doc = _vectors("bluetooth_data_tools_gap_vectors.json")
    if doc:
        out["vectors/bluetooth_data_tools_gap"] = [
            bytes.fromhex("".join(v["ad_payloads_hex"])) for v in doc["vectors"]
        ]
    doc = _vectors("beacontools_parser_vectors.json")
    if doc:
        out["vectors/beacontools_parser"] = [bytes.fromhex(v["ad_hex"]) for v in doc["vectors"]] + [
            bytes.fromhex(h) for h in doc.get("negative_vectors", [])
        ]
    doc = _vectors("altbeacon_vectors.json")
    if doc:
        out["vectors/altbeacon"] = [bytes.fromhex(v["ad_hex"]) for v in doc["vectors"]]
    doc = _vectors("beacontools_hci_event_vectors.json")
    if doc:
        out["vectors/beacontools_hci_event"] = [
            r.data
            for v in doc["vectors"]
            for r in hci_event_reports(bytes.fromhex(v["hci_event_hex"])[1:], 0.0)  # no H4 byte
            if isinstance(r, AirAdvert)
        ]
    doc = _vectors("theengs_decoder_ble_vectors.json")
    if doc:
        out["vectors/theengs_decoder_ble"] = [theengs_ad(v) for v in doc["vectors"]]
    return out


def capture_sources() -> dict[str, list[bytes]]:
    out: dict[str, list[bytes]] = {}
    for folder in CAPTURE_DIRS:
        for path in sorted((SHARED / folder).glob("*")):
            if path.suffix == ".json":  # tshark's dissection of a pcap, not a capture
                continue
            ads = [r.data for r in iter_capture(str(path)) if isinstance(r, AirAdvert)]
            out[f"{folder}/{path.name}"] = ads
    return out


def sources() -> dict[str, list[bytes]]:
    """Every source's adverts in file order (repeats kept): captures first, then vectors."""
    return {**capture_sources(), **vector_sources()}


def distinct(per_source: dict[str, list[bytes]]) -> list[bytes]:
    """Each AD content once, in first-seen order."""
    return list(dict.fromkeys(ad for ads in per_source.values() for ad in ads))
