"""Cost of an unchanged BLE advert repeated at 10 Hz, from the driver's sink onwards.

1,000 beacons each advertise the same iBeacon payload 10 times a second for 100 s (1M
adverts, decoded once through the real decoder and its memo). Measures the channel's
`offer` (throttle + privacy boundary + queue) per advert with the throttle on (1 s) and off.

    python -m bench.throttle
"""

from __future__ import annotations

import sys
import time

from presence_gateway.core.ble.decode import Advert, parse_ad, to_sightings
from presence_gateway.core.model import Sighting
from presence_gateway.core.privacy import Boundary, Pseudonymizer
from presence_gateway.core.throttle import AdvertThrottle
from presence_gateway.runtime.channel import ObservationChannel

AD = bytes.fromhex("0201061aff4c000215e2c56db5dffb48d2b060d0f5a71096e000010002c5")


def adverts(devices: int = 1000, seconds: int = 100) -> list[Sighting]:
    advert = parse_ad(AD)
    assert isinstance(advert, Advert)
    out: list[Sighting] = []
    for tick in range(seconds * 10):
        for d in range(devices):
            addr = (0xC0_0000_0000 | d).to_bytes(6, "big")
            out.extend(to_sightings(1.7e9 + tick / 10 + d / 1e5, addr, "random", -60 - d % 7,
                                    advert))
    return out


def measure(items: list[Sighting], interval: float) -> tuple[float, int]:
    ch = ObservationChannel(Boundary(Pseudonymizer(b"k" * 32)), maxsize=len(items) + 1,
                            throttle=AdvertThrottle(interval))
    cpu0 = time.process_time()
    for s in items:
        ch.offer(s)
    return (time.process_time() - cpu0) / len(items) * 1e6, ch.depth


def main() -> int:
    items = adverts()
    print(f"{len(items):,} adverts (1,000 beacons x 10 Hz x 100 s)", file=sys.stderr)
    print("| throttle | µs per advert (throttle + boundary + queue) | observations queued |")
    print("|---|---|---|")
    for interval in (0.0, 1.0):
        us, queued = measure(items, interval)
        print(f"| {'off' if interval == 0 else f'{interval:g} s'} | {us:.2f} | {queued:,} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
