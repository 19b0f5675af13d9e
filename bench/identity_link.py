"""Identity linking cost through the boundary resolver (IdentityIndex) and the Linker.

Run: `python -m bench.identity_link`. CPU µs per sighting (process time) for each path a
sighting can take, with a registry of 10k IRKs + 10k app installs + 10k beacons + 10k MACs:
- a NEW resolvable private address (one AES block per IRK: the cost the RPA design imposes),
  then the same address again (LRU cache);
- the common case: a non-resolvable / static BLE address without beacon hints;
- an iBeacon hint (registered / not; first time hashes, repeats hit the cache) and an app token;
- a Wi-Fi probe from a public address (stable-hash lookup, cached per address);
- Linker.observe + decorate per observation of a linked visit.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

from presence_gateway.core.events import VisitStarted, ZoneDwell
from presence_gateway.core.identity.index import (
    Entry,
    EntryKind,
    IdentityIndex,
    entry_id_for,
    parse_material,
)
from presence_gateway.core.identity.link import Linker
from presence_gateway.core.identity.resolve import ah, app_token, app_token_window
from presence_gateway.core.model import AddressKind, Observation, Radio, Sighting
from presence_gateway.core.privacy import Pseudonymizer

N = 10_000
UUID = "2f234454-cf6d-4a0f-adf2-f4911ba9ffa6"
NOW = 1_767_225_600.0
HASH = Pseudonymizer(b"bench-secret-0123456789abcdef").stable_hash
ALL = frozenset({"analytics", "personalization", "offers"})


def _entry(kind: EntryKind, value: str, i: int) -> Entry:
    material = parse_material(kind.value, value, HASH)
    assert isinstance(material, str)
    return Entry(entry_id_for(kind.value, material, HASH), f"c{i}", kind, material, ALL)


def _registry(rng: random.Random) -> tuple[list[Entry], list[bytes], list[bytes]]:
    irks = [rng.randbytes(16) for _ in range(N)]
    apps = [rng.randbytes(32) for _ in range(N)]
    entries = [_entry(EntryKind.IRK, k.hex(), i) for i, k in enumerate(irks)]
    entries += [_entry(EntryKind.APP_TOKEN, s.hex(), i) for i, s in enumerate(apps)]
    entries += [_entry(EntryKind.IBEACON, f"{UUID}/1/{i}", i) for i in range(N)]
    entries += [_entry(EntryKind.WIFI_MAC, bytes((0x3C, 0, 0, *i.to_bytes(3, "big"))).hex(), i)
                for i in range(N)]
    return entries, irks, apps


def _rpa(rng: random.Random, irk: bytes | None) -> bytes:
    prand = bytes([0x40 | rng.randrange(64), rng.randrange(256), rng.randrange(256)])
    return prand + (ah(irk, prand) if irk else rng.randbytes(3))


def _per(fn: Callable[[], object], n: int) -> float:
    t = time.process_time()
    for _ in range(n):
        fn()
    return (time.process_time() - t) / n * 1e6


def _each(resolve: Callable[[Sighting], object], items: list[Sighting]) -> float:
    t = time.process_time()
    for s in items:
        resolve(s)
    return (time.process_time() - t) / len(items) * 1e6


def _ble(address: bytes, kind: AddressKind, hints: tuple[str, ...] = ()) -> Sighting:
    return Sighting(NOW, Radio.BLE, address, kind, -60, None, "ibeacon" if hints else "apple",
                    identity_hints=hints)


def main() -> None:
    rng = random.Random(6)
    entries, irks, apps = _registry(rng)
    t = time.process_time()
    ix = IdentityIndex(HASH, entries, app_uuid=UUID)
    rows: list[tuple[str, float]] = [("build index, 40k entries (ms)",
                                      (time.process_time() - t) * 1e3)]
    t = time.process_time()
    ix.resolve(_ble(b"\x10" * 6, AddressKind.RANDOM, (f"ibeacon:{UUID}/0/0",)))
    rows.append(("app token tables, 10k installs x 3 windows (ms)",
                 (time.process_time() - t) * 1e3))
    r = ix.resolve
    strangers = [_ble(_rpa(rng, None), AddressKind.RESOLVABLE) for _ in range(300)]
    rows.append(("new RPA, no match, 10k IRKs", _each(r, strangers)))
    members = [_ble(_rpa(rng, rng.choice(irks)), AddressKind.RESOLVABLE) for _ in range(300)]
    rows.append(("new RPA, match (avg position), 10k IRKs", _each(r, members)))
    rows.append(("same RPA again (cache)", _each(r, strangers * 20)))
    anon = [_ble(rng.randbytes(6), AddressKind.RANDOM) for _ in range(10_000)]
    rows.append(("non-resolvable BLE, no hints (common case)", _each(r, anon)))
    beacons = [_ble(b"\x11" * 6, AddressKind.RANDOM, (f"ibeacon:{UUID}/1/{i}",))
               for i in range(2000)]
    rows.append(("iBeacon hint, first time (hash)", _each(r, beacons)))
    rows.append(("iBeacon hint, repeat (cache)", _each(r, beacons * 5)))
    w = app_token_window(NOW)
    tokens = [_ble(b"\x12" * 6, AddressKind.RANDOM,
                   ("ibeacon:{}/{}/{}".format(UUID, *app_token(s, w)),)) for s in apps[:2000]]
    rows.append(("app token iBeacon, 10k installs", _each(r, tokens)))
    wifi = [Sighting(NOW, Radio.WIFI, bytes((0x3C, 0, 0, *i.to_bytes(3, "big"))),
                     AddressKind.PUBLIC, -50, 6, "probe_request") for i in range(5000)]
    rows.append(("Wi-Fi public address, first time (hash)", _each(r, wifi)))
    rows.append(("Wi-Fi public address, repeat (cache)", _each(r, wifi * 4)))
    rows.append(("Linker observe + decorate, linked visit", _linker(ix)))
    print(f"{'case':<52} {'CPU µs':>10}")
    for name, value in rows:
        print(f"{name:<52} {value:>10.2f}")


def _linker(ix: IdentityIndex) -> float:
    lk = Linker(ix.get)
    entry = ix.entries()[0].entry_id
    obs = Observation(NOW, Radio.BLE, "dev", AddressKind.RESOLVABLE, -60, None, "apple",
                      identity=entry)
    lk.observe(obs)
    lk.decorate([VisitStarted(time=NOW, visit_id="v", device="dev", radio="ble", first_seen=NOW,
                              observations=1, rssi=-60.0)])
    dwell = [ZoneDwell(time=NOW, visit_id="v", device="dev", zone="z", dwell_s=60.0)]
    n = 100_000

    def step() -> None:
        lk.observe(obs)
        lk.decorate([])

    base = _per(step, n)
    return base + _per(lambda: lk.decorate(dwell), n // 100) / 100  # an event every 100 obs


if __name__ == "__main__":
    main()
