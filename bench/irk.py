"""IRK resolution cost: a NEW resolvable address against 10k IRKs, and a cached repeat.

Run: `python -m bench.irk`. Prints µs per address; the miss (no key matches) is the worst and
the common case in a store: every phone that is not opted in costs one AES block per key.
"""

from __future__ import annotations

import random
import time

from presence_gateway.core.identity.resolve import (
    AppTokenResolver,
    IrkResolver,
    ah,
    app_token,
    app_token_window,
)


def _rpa(rng: random.Random, irk: bytes | None) -> bytes:
    prand = bytes([0x40 | rng.randrange(64), rng.randrange(256), rng.randrange(256)])
    return prand + (ah(irk, prand) if irk else rng.randbytes(3))


def main() -> None:
    rng = random.Random(1)
    rows: list[tuple[str, float]] = []
    for n in (1_000, 10_000):
        keys = {f"k{i}": rng.randbytes(16) for i in range(n)}
        r = IrkResolver(keys, cache_size=1 << 20)
        fresh = [_rpa(rng, None) for _ in range(200)]
        t = time.perf_counter()
        for a in fresh:
            r.resolve(a)
        rows.append((f"new address, no match, {n} IRKs", (time.perf_counter() - t) / 200))
        ids = list(keys)
        hits = [_rpa(rng, keys[rng.choice(ids)]) for _ in range(200)]
        t = time.perf_counter()
        for a in hits:
            r.resolve(a)
        rows.append((f"new address, match (avg position), {n} IRKs",
                     (time.perf_counter() - t) / 200))
        t = time.perf_counter()
        for _ in range(50):
            for a in fresh:
                r.resolve(a)
        rows.append((f"cached address, {n} IRKs", (time.perf_counter() - t) / 10_000))
    tok = AppTokenResolver()
    secrets = [rng.randbytes(32) for _ in range(10_000)]
    uuid = "2f234454-cf6d-4a0f-adf2-f4911ba9ffa6"
    for i, s in enumerate(secrets):
        tok.register(f"i{i}", s, uuid)
    now = 1_767_225_600.0
    t = time.perf_counter()
    tok.resolve(uuid, 0, 0, now)
    rows.append(("app token precompute, 10k installs x 3 windows", time.perf_counter() - t))
    probe = app_token(secrets[5], app_token_window(now))
    t = time.perf_counter()
    for _ in range(100_000):
        tok.resolve(uuid, *probe, now=now)
    rows.append(("app token lookup", (time.perf_counter() - t) / 100_000))
    print(f"{'case':<50} {'µs':>12}")
    for name, sec in rows:
        print(f"{name:<50} {sec * 1e6:>12.2f}")


if __name__ == "__main__":
    main()
