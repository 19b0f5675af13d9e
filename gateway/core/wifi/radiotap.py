"""Radio headers in front of an 802.11 frame: RadioTap (127), Prism (119), AVS (163), none (105).

`radio_header(data, linktype)` returns `(start, end, rssi, freq, channel)` — the 802.11 frame is
`data[start:end]` (FCS already stripped), rssi in dBm or None, freq in MHz or None, channel
number or None — or a short reason string when the header is unusable.

Invariants:
- Pure and total: every offset is checked against the header length before it is read, so no
  input raises; a bad header gives a reason ("truncated_radiotap", "bad_radiotap_version",
  "bad_fcs", ...), never an exception.
- RadioTap is walked like Linux's `ieee80211_radiotap_iterator`: fields in bit order, each
  aligned to its natural alignment relative to the start of the header; bit 31 chains another
  presence word; bit 29 starts a fresh radiotap namespace (bit numbering restarts, e.g. the
  per-antenna blocks of iwlwifi/ath9k); bit 30 starts a vendor namespace whose data begins with
  OUI, sub-namespace and a skip length and is skipped whole. An unknown radiotap field (its size
  is unknown) ends the walk: fields after it cannot be located, exactly like Linux and tcpdump.
- RSSI is the first dBm_AntSignal walked. Drivers put the combined signal in the first
  namespace and per-antenna values in later ones, so this is the combined value; when only
  per-antenna values exist, the first antenna's is used.
- The walk result depends only on the presence words unless a vendor namespace occurs (its skip
  length is data), so plans are cached by presence words: the common case costs one dict lookup.
- FCS: frames flagged bad-FCS are refused (a corrupted probe would invent a device); when the
  Flags field says an FCS is present it is stripped. The CRC is not recomputed: the kernel
  already checked it and sets the bad-FCS flag (mac80211 passes failed frames only with the
  `fcsfail` monitor flag, and then flags them), and anonymised captures rewrite addresses
  without fixing the FCS, so recomputing would refuse good research data.
"""

from __future__ import annotations

import struct

_U16 = struct.Struct("<H").unpack_from
_U32 = struct.Struct("<I").unpack_from
_I32 = struct.Struct("<i").unpack_from
_AVS = struct.Struct(">IIQQIIIIIIiI").unpack_from  # version .. ssi_noise (56 bytes)

LINKTYPE_IEEE802_11 = 105
LINKTYPE_PRISM = 119
LINKTYPE_RADIOTAP = 127
LINKTYPE_AVS = 163

FLAG_FCS = 0x10
FLAG_BAD_FCS = 0x40

# (alignment, size) of radiotap namespace fields by bit; alignment 0 = unknown size.
# Source: radiotap.org defined fields and Linux net/wireless/radiotap.c (XChannel, bit 18, is the
# FreeBSD/Wireshark definition; bit 28 is the TLV list which has no fixed size).
_FIELDS: tuple[tuple[int, int], ...] = (
    (8, 8),   # 0 TSFT
    (1, 1),   # 1 Flags
    (1, 1),   # 2 Rate
    (2, 4),   # 3 Channel: freq u16, flags u16
    (2, 2),   # 4 FHSS
    (1, 1),   # 5 dBm antenna signal
    (1, 1),   # 6 dBm antenna noise
    (2, 2),   # 7 lock quality
    (2, 2),   # 8 TX attenuation
    (2, 2),   # 9 dB TX attenuation
    (1, 1),   # 10 dBm TX power
    (1, 1),   # 11 antenna
    (1, 1),   # 12 dB antenna signal
    (1, 1),   # 13 dB antenna noise
    (2, 2),   # 14 RX flags
    (2, 2),   # 15 TX flags
    (1, 1),   # 16 RTS retries
    (1, 1),   # 17 data retries
    (4, 8),   # 18 XChannel: flags u32, freq u16, channel u8, maxpower u8
    (1, 3),   # 19 MCS
    (4, 8),   # 20 A-MPDU status
    (2, 12),  # 21 VHT
    (8, 12),  # 22 timestamp
    (2, 12),  # 23 HE
    (2, 12),  # 24 HE-MU
    (2, 6),   # 25 HE-MU-other-user
    (1, 1),   # 26 0-length PSDU
    (2, 4),   # 27 L-SIG
)
_B_FLAGS, _B_CHANNEL, _B_SIGNAL, _B_XCHANNEL = 1, 3, 5, 18
_NS_RADIOTAP, _NS_VENDOR, _EXT = 0x20000000, 0x40000000, 0x80000000

# A plan: (need, flags_off, channel_off, signal_off, xchannel_off, cacheable); -1 = absent.
Plan = tuple[int, int, int, int, int, bool]
_PLANS: dict[int | bytes, Plan] = {}
_PLAN_LIMIT = 1024  # distinct presence layouts seen; adapters use a handful


def _freq_table() -> dict[int, int]:
    table = {2484: 14, 5935: 2}
    for ch in range(1, 14):
        table[2407 + 5 * ch] = ch
    for ch in range(182, 197):  # 4.9 GHz public safety band (Japan)
        table[4000 + 5 * ch] = ch
    for ch in range(32, 178):
        table[5000 + 5 * ch] = ch
    for ch in range(1, 234):
        table[5950 + 5 * ch] = ch
    return table


FREQ_TO_CHANNEL: dict[int, int] = _freq_table()


def channel_of(freq: int) -> int | None:
    """802.11 channel number of a centre frequency in MHz (2.4, 4.9, 5 and 6 GHz bands)."""
    return FREQ_TO_CHANNEL.get(freq)


def freq_of(channel: int) -> int | None:
    """Centre frequency of a channel number; 1-14 -> 2.4 GHz, 32-177 -> 5 GHz (6 GHz channel
    numbers overlap both, so they are not guessed)."""
    if channel == 14:
        return 2484
    if 1 <= channel <= 13:
        return 2407 + 5 * channel
    if 32 <= channel <= 177:
        return 5000 + 5 * channel
    return None


def _walk_fields(
    data: bytes, off: int, hlen: int, word: int, base: int, found: list[int]
) -> tuple[int, str]:
    """Walk the radiotap-namespace fields of one presence word -> (new offset, status):
    "ok", "truncated" (a field runs past the header) or "unknown" (a field of unknown size
    stops the walk; the offset is where it would start)."""
    bits = word & 0x1FFFFFFF
    bit = 0
    while bits:
        if bits & 1:
            idx = base + bit
            if idx >= len(_FIELDS):
                return off, "unknown"
            align, size = _FIELDS[idx]
            off = (off + align - 1) & -align
            if off + size > hlen:
                return off, "truncated"
            if idx == _B_FLAGS and found[0] < 0:
                found[0] = off
            elif idx == _B_CHANNEL and found[1] < 0:
                found[1] = off
            elif idx == _B_SIGNAL and found[2] < 0:
                found[2] = off
            elif idx == _B_XCHANNEL and found[3] < 0:
                found[3] = off
            off += size
        bits >>= 1
        bit += 1
    return off, "ok"


def walk(data: bytes, hlen: int) -> Plan | str:
    """Locate Flags, Channel, dBm_AntSignal and XChannel in a RadioTap header of length hlen."""
    words: list[int] = []
    pos = 4
    while True:
        if pos + 4 > hlen:
            return "truncated_radiotap"
        word = _U32(data, pos)[0]
        words.append(word)
        pos += 4
        if not word & _EXT:
            break
    found = [-1, -1, -1, -1]
    off, base, vendor, cacheable = pos, 0, False, True
    for word in words:
        if word & _NS_RADIOTAP and word & _NS_VENDOR:
            return "bad_radiotap_namespace"
        if not vendor:
            off, status = _walk_fields(data, off, hlen, word, base, found)
            if status == "truncated":
                return "truncated_radiotap"
            if status == "unknown":  # nothing after a field of unknown size can be located
                break
        if word & _NS_VENDOR:
            off = (off + 1) & -2
            if off + 6 > hlen:
                return "truncated_radiotap"
            off += 6 + _U16(data, off + 4)[0]
            if off > hlen:
                return "truncated_radiotap"
            vendor, base, cacheable = True, 0, False
        elif word & _NS_RADIOTAP:
            vendor, base = False, 0
        else:
            base += 32
    return (off, found[0], found[1], found[2], found[3], cacheable)


def radiotap(data: bytes) -> tuple[int, int, int | None, int | None, int | None] | str:
    """RadioTap (link type 127) -> (start, end, rssi, freq, channel) or a reason."""
    n = len(data)
    if n < 8:
        return "truncated_radiotap"
    if data[0] != 0:
        return "bad_radiotap_version"
    hlen = data[2] | (data[3] << 8)
    if hlen < 8 or hlen > n:
        return "truncated_radiotap"
    present = _U32(data, 4)[0]
    key: int | bytes = present
    if present & _EXT:
        pos = 8
        while pos + 4 <= hlen and data[pos - 1] & 0x80:
            pos += 4
        key = data[4:pos]
    plan = _PLANS.get(key)
    if plan is None:
        walked = walk(data, hlen)
        if isinstance(walked, str):
            return walked
        plan = walked
        if plan[5] and len(_PLANS) < _PLAN_LIMIT:
            _PLANS[key] = plan
    need, fo, co, so, xo, _ = plan
    if need > hlen:
        return "truncated_radiotap"
    end = n
    if fo >= 0:
        flags = data[fo]
        if flags & FLAG_BAD_FCS:
            return "bad_fcs"
        if flags & FLAG_FCS:
            end = n - 4
            if end < hlen:
                return "truncated_80211"
    freq: int | None = None
    if co >= 0:
        freq = _U16(data, co)[0] or None
    elif xo >= 0:
        freq = _U16(data, xo + 4)[0] or None
    rssi: int | None = None
    if so >= 0:
        rssi = data[so]
        if rssi > 127:
            rssi -= 256
    return (hlen, end, rssi, freq, FREQ_TO_CHANNEL.get(freq) if freq else None)


def _prism(data: bytes) -> tuple[int, int, int | None, int | None, int | None] | str:
    """Prism (wlan-ng) header: 144 bytes of (did, status, len, u32 data) items, host order
    (little-endian on every platform we run on). status 0 means the value is supplied."""
    n = len(data)
    if n >= 4 and data[0:4] == b"\x80\x21\x10\x01":  # AVS behind a Prism link type (libpcap)
        return _avs(data)
    if n < 144:
        return "truncated_prism"
    hlen = _U32(data, 4)[0]
    if hlen < 144 or hlen > n:
        return "truncated_prism"
    channel = _U32(data, 56)[0] if _U16(data, 52)[0] == 0 else None
    rssi = _I32(data, 92)[0] if _U16(data, 88)[0] == 0 else None
    if rssi is not None and not -128 <= rssi <= 127:
        rssi = None
    if channel is not None:
        freq = freq_of(channel)
        channel = channel if freq is not None else None
    else:
        freq = None
    return (hlen, n, rssi, freq, channel)


def _avs(data: bytes) -> tuple[int, int, int | None, int | None, int | None] | str:
    """AVS capture header v2: big-endian, length in its second word; ssi_type 2 = dBm."""
    n = len(data)
    if n < 64:
        return "truncated_avs"
    version, hlen, _, _, _, channel, _, _, _, ssi_type, ssi_signal = _AVS(data)[:11]
    if version >> 8 != 0x802110 or hlen < 64 or hlen > n:
        return "bad_avs_header"
    rssi = ssi_signal if ssi_type == 2 and -128 <= ssi_signal <= 127 else None
    freq = freq_of(channel)
    return (hlen, n, rssi, freq, channel if freq is not None else None)


def radio_header(
    data: bytes, linktype: int
) -> tuple[int, int, int | None, int | None, int | None] | str:
    """(start, end, rssi, freq, channel) of the 802.11 frame behind the radio header, or a
    reason. The FCS-length bits of a pcap link type (e.g. 0x3000007F) are masked off."""
    lt = linktype & 0xFFFF
    if lt == LINKTYPE_RADIOTAP:
        return radiotap(data)
    if lt == LINKTYPE_IEEE802_11:
        return (0, len(data), None, None, None)
    if lt == LINKTYPE_PRISM:
        return _prism(data)
    if lt == LINKTYPE_AVS:
        return _avs(data)
    return "unsupported_linktype"
