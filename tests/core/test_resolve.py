"""IRK (Core spec ah), Eddystone-EID and rotating app token resolution, on published vectors."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

import pytest

from presence_gateway.cli.main import main as cli
from presence_gateway.core.identity.resolve import (
    AppTokenResolver,
    IrkResolver,
    ah,
    app_token,
    app_token_window,
    eid,
    eid_from_temporary_key,
    eid_temporary_key,
    is_resolvable,
    parse_irk,
)

# Bluetooth Core spec Vol 3 Part H Appendix D.7 ("ah random address hash functions").
SPEC_IRK = bytes.fromhex("ec0234a357c8ad05341010a60a397d9b")
SPEC_PRAND = bytes.fromhex("708194")
SPEC_HASH = bytes.fromhex("0dfbaa")
SPEC_RPA = SPEC_PRAND + SPEC_HASH  # display order 70:81:94:0d:fb:aa


def test_ah_spec_sample() -> None:
    assert ah(SPEC_IRK, SPEC_PRAND) == SPEC_HASH
    assert ah(SPEC_IRK[::-1], SPEC_PRAND) != SPEC_HASH  # the order matters


@pytest.mark.parametrize("text", [
    "ec0234a357c8ad05341010a60a397d9b",
    "EC:02:34:A3:57:C8:AD:05:34:10:10:A6:0A:39:7D:9B",
    "0xec0234a357c8ad05341010a60a397d9b",
    "ec 02 34 a3 57 c8 ad 05 34 10 10 a6 0a 39 7d 9b",
])
def test_parse_irk_msb_first_hex(text: str) -> None:
    assert parse_irk(text) == SPEC_IRK


def test_parse_irk_reversed_forms() -> None:
    lsb = SPEC_IRK[::-1]
    assert parse_irk(lsb.hex(), order="lsb") == SPEC_IRK
    assert parse_irk(":".join(f"{b:02x}" for b in lsb), order="lsb") == SPEC_IRK
    # iOS Keychain / Home Assistant: base64 of the key as SMP carries it (LSB first).
    assert parse_irk(base64.b64encode(lsb).decode()) == SPEC_IRK
    assert parse_irk("irk:" + base64.b64encode(lsb).decode()) == SPEC_IRK
    assert parse_irk(base64.b64encode(SPEC_IRK).decode(), order="msb") == SPEC_IRK
    # Android bt_config.conf LE_KEY_PID: irk (LSB first) + address type + address.
    pid = lsb + b"\x00" + bytes.fromhex("112233445566")
    assert parse_irk(pid.hex()) == SPEC_IRK
    for text in (base64.b64encode(lsb).decode(), lsb.hex()):
        irk = parse_irk(text, order="lsb")
        assert irk is not None and ah(irk, SPEC_PRAND) == SPEC_HASH


@pytest.mark.parametrize("text", ["", "zz", "ec0234", "ec0234a357c8ad05341010a60a397d9b00",
                                  "not base64!!", base64.b64encode(b"short").decode()])
def test_parse_irk_rejects(text: str) -> None:
    assert parse_irk(text) is None


def test_resolver_spec_address_and_kinds() -> None:
    r = IrkResolver({"alice": SPEC_IRK})
    assert is_resolvable(SPEC_RPA)
    assert r.resolve(SPEC_RPA) == "alice"
    assert r.resolve(SPEC_PRAND + b"\x0d\xfb\xab") is None  # one bit off in the hash
    static = bytes([SPEC_RPA[0] | 0xC0]) + SPEC_RPA[1:]
    assert r.resolve(static) is None and not is_resolvable(static)
    assert r.resolve(b"\x70\x81") is None
    assert "ec02" not in repr(r)


def _rpa_for(irk: bytes, seed: int) -> bytes:
    prand = bytes([0x40 | (seed & 0x3F), (seed >> 6) & 0xFF, (seed >> 14) & 0xFF])
    return prand + ah(irk, prand)


def test_resolver_10k_keys() -> None:
    rng = __import__("random").Random(7)
    keys = {f"id{i}": rng.randbytes(16) for i in range(10_000)}
    r = IrkResolver(keys)
    for i in (0, 1, 4_999, 9_999):
        addr = _rpa_for(keys[f"id{i}"], i * 31 + 5)
        assert r.resolve(addr) == f"id{i}"
    unknown = [_rpa_for(rng.randbytes(16), s) for s in range(5)]
    assert [r.resolve(a) for a in unknown] == [None] * 5
    assert r.misses == 9 and r.hits == 0


def test_resolver_cache_and_key_changes() -> None:
    other = os.urandom(16)
    r = IrkResolver({"alice": SPEC_IRK}, cache_size=2)
    bob_addr = _rpa_for(other, 99)
    assert r.resolve(SPEC_RPA) == "alice"
    assert r.resolve(SPEC_RPA) == "alice"
    assert (r.hits, r.misses) == (1, 1)
    assert r.resolve(bob_addr) is None  # cached miss
    r.add("bob", other)  # a new key must invalidate cached misses
    assert r.resolve(bob_addr) == "bob"
    r.remove(["alice"])  # and a removed key its cached hits
    assert r.resolve(SPEC_RPA) is None
    assert len(r) == 1
    # Bounded LRU of two: cache now holds [bob_addr?, SPEC_RPA]; fill it and watch evictions.
    third = _rpa_for(other, 7)
    r.resolve(SPEC_RPA)
    r.resolve(third)  # cache: [SPEC_RPA, third]
    misses = r.misses
    r.resolve(SPEC_RPA)  # hit, now most recent: [third, SPEC_RPA]
    assert r.misses == misses
    r.resolve(bob_addr)  # miss, evicts `third`: [SPEC_RPA, bob_addr]
    r.resolve(third)  # computed again
    assert r.misses == misses + 2
    with pytest.raises(ValueError):
        r.add("bad", b"short")


# Eddystone-EID. The spec (google/eddystone eddystone-eid/eid-computation.md) defines the two AES
# steps but prints no numbers; these vectors are published by independent implementations.
@pytest.mark.parametrize(("ik", "k", "t", "want"), [
    # RadiusNetworks/ephemeral_calc spec/encryptor_spec.rb (beacon time 0, and 2000 s later).
    ("0102030405060708090A111213141516", 10, 0, "a9b76a71c5f89290"),
    ("0102030405060708090A111213141516", 10, 2000, "4144413e45fefa58"),
    # A Python EID resolver's unit test (ECDH-derived identity key, scaler 0, counter 0).
    ("7c91330e61dfea4606b5b3ecb4457d76", 0, 0, "436bfe57d5a09505"),
])
def test_eid_published_vectors(ik: str, k: int, t: int, want: str) -> None:
    assert eid(bytes.fromhex(ik), k, t).hex() == want


def test_eid_second_step_vector_and_rotation() -> None:
    # An Eddystone scanner's test: temporary key -> EID at time 1518080946, exponent 12.
    tk = bytes.fromhex("b7c2d909d27d22df8343271162480210")
    assert eid_from_temporary_key(tk, 12, 1518080946).hex() == "7dd8169dae94258c"
    ik = bytes.fromhex("0102030405060708090A111213141516")
    # Same quantum -> same EID; the temporary key changes only every 65536 s.
    assert eid(ik, 10, 1024) == eid(ik, 10, 2047) != eid(ik, 10, 2048)
    assert eid_temporary_key(ik, 0) == eid_temporary_key(ik, 65535) != eid_temporary_key(ik, 65536)
    with pytest.raises(ValueError):
        eid(ik, 16, 0)


# --- rotating app token -------------------------------------------------------------------
UUID = "2f234454-cf6d-4a0f-adf2-f4911ba9ffa6"
SECRET = bytes.fromhex("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f")
NOW = 1_767_225_600.0  # 2026-01-01T00:00:00Z, a window boundary for 300 s


def test_app_token_derivation_is_the_documented_one() -> None:
    w = app_token_window(NOW + 299)
    assert w == int(NOW) // 300
    msg = b"presence-gateway/app-token/v1" + w.to_bytes(8, "big")
    d = hmac.new(SECRET, msg, hashlib.sha256).digest()
    assert app_token(SECRET, w) == (int.from_bytes(d[0:2], "big"), int.from_bytes(d[2:4], "big"))
    assert app_token(SECRET, w) != app_token(SECRET, w + 1)


def test_app_token_resolver_tolerance_and_strangers() -> None:
    r = AppTokenResolver()
    r.register("install-1", SECRET, UUID.upper())
    r.register("install-2", os.urandom(32), UUID)
    w = app_token_window(NOW)
    for dw in (-1, 0, 1):
        assert r.resolve(UUID, *app_token(SECRET, w + dw), now=NOW) == "install-1"
    assert r.resolve(UUID, *app_token(SECRET, w - 2), now=NOW) is None  # replayed, too old
    assert r.resolve(UUID, *app_token(SECRET, w + 2), now=NOW) is None
    assert r.resolve(UUID, *app_token(os.urandom(32), w), now=NOW) is None  # unregistered
    other_uuid = "00000000-0000-0000-0000-000000000001"
    assert r.resolve(other_uuid, *app_token(SECRET, w), now=NOW) is None
    # Time moves on: the token of w is still good one window later, not two.
    assert r.resolve(UUID, *app_token(SECRET, w), now=NOW + 300) == "install-1"
    assert r.resolve(UUID, *app_token(SECRET, w), now=NOW + 600) is None
    r.unregister("install-1")
    assert r.resolve(UUID, *app_token(SECRET, w), now=NOW) is None


def test_app_token_shared_token_is_ambiguous() -> None:
    r = AppTokenResolver()
    r.register("a", SECRET, UUID)
    r.register("b", SECRET, UUID)  # a copied secret: both installs claim the same token
    assert r.resolve(UUID, *app_token(SECRET, app_token_window(NOW)), now=NOW) is None


def test_app_token_cli(capsys: pytest.CaptureFixture[str]) -> None:
    # `presence-gateway app-token` could not run at all before the command tree was one parser
    rc = cli(["app-token", "--secret", SECRET.hex(), "--uuid", UUID, "--at", str(NOW)])
    assert rc == 0
    out = dict(line.split(" ", 1) for line in capsys.readouterr().out.splitlines())
    major, minor = app_token(SECRET, app_token_window(NOW))
    assert (int(out["major"]), int(out["minor"])) == (major, minor)
    ad = bytes.fromhex(out["ad"])
    assert ad[:3] == b"\x02\x01\x06" and ad[3:9] == bytes.fromhex("1aff4c000215")
    assert ad[9:25] == bytes.fromhex(UUID.replace("-", ""))
    assert ad[25:29] == major.to_bytes(2, "big") + minor.to_bytes(2, "big")
    assert ad[29] == (-59 & 0xFF) and len(ad) == 30
    assert f'"76":"{ad[7:].hex()}"' in out["jsonl"]
    assert SECRET.hex() not in capsys.readouterr().out
    assert cli(["app-token", "--secret", "00", "--uuid", UUID]) == 2
    assert "--secret: must be at least 16 bytes" in capsys.readouterr().err
    assert cli(["app-token", "--help"]) == 0
