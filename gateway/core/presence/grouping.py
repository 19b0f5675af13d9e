"""Randomization-aware grouping of Wi-Fi addresses into estimated devices, for counting only.

Phones probe from random, rotating, locally administered addresses: an iPhone may use a new
address for every burst, even for every channel of one burst, so counting addresses overcounts
people many times over. Following Vanhoef et al. (2016) and Martin et al. (2017), addresses are
linked into groups (one group ~ one device) by evidence a rotating address does not hide:

1. the element fingerprint (gateway.core.wifi: ids in order + contents of capability elements,
   never the SSID) must be equal: a device sends the same elements from every address;
2. sequence-number continuity: a new address whose first sequence number follows a quiet
   group's last one (within `seq_window`) continues it (devices that do not reset the counter
   on rotation, e.g. older iOS);
3. the same burst: a group of this fingerprint that was heard less than `burst_s` ago and at a
   similar RSSI (a phone sends a burst of probes on every channel within about a second);
4. the next burst: a quiet group of this fingerprint heard within `max_gap_s`, at a similar
   RSSI (within `rssi_tol_db` of its running mean for the same sensor: RSSI of different
   sensors is not comparable, and a probe heard off its own channel (DS parameter set) is
   attenuated, so it is not compared; heard on its own channel, one sensor's readings on
   different channels are: 2412 and 2462 MHz differ by 0.2 dB of path loss, so a hopping
   radio keeps one mean per sensor, not one per channel with a few readings each); the
   closest in RSSI wins;
5. resume: only when no group of this fingerprint is explained by 2-4, a group that went quiet
   (silent for more than `max_gap_s`, at most `resume_s`) at a similar RSSI is continued: a
   phone that was locked or on a network stops probing for minutes and comes back from a fresh
   random address; without this it would be a new group (counted twice while the old one
   leaves the count, then a new walk-in). The resumed group's silence is still a silence for
   the presence engine (a gap beyond its visit timeout ends the visit there as before).
Otherwise the address starts a new group. Known limit: two phones of the same model and
software that probe at similar signal strength merge into one group (undercount), and a phone
silent for longer than `resume_s` comes back as a new group (overcount across the gap).

Invariants:
- Pure, no clock: time is the observations' `ts`; `estimate(now, window_s)` counts groups heard
  in (now - window_s, now].
- Privacy: input is pseudonymous Observations only; group ids are counters ("grp-1f"), unrelated
  to any address, and meant for counting and visit bookkeeping, never for identification.
- Bounded memory: groups silent for `resume_s` (>= `max_gap_s`) are dropped (swept every
  `sweep_s` of capture time) with their addresses; at most `max_groups` live groups (oldest
  evicted first). A sweep looks only at groups that may be due: a min-heap holds each group
  once under a past `last` (which only grows), so every group silent since before the horizon
  is under it; one found heard again goes back under its new `last`. The old full scan cost
  28 ms per sweep at 100k groups (~1-2 µs per observation at a crowd's rates).
- A globally unique (PUBLIC) address is a device of its own and is never linked, unless
  `trust_address_kind=False` (for captures whose anonymisation randomised the LA bit).
- Observations without a fingerprint (Wi-Fi null data) are each their own group; other radios
  pass through untouched (`observe` returns `obs.device`, nothing is kept).
"""

from __future__ import annotations

import heapq
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass

from presence_gateway.core.model import AddressKind, Observation, Radio
from presence_gateway.core.state import Snapshotted, restored

_SEQ_MOD = 4096
# As many groups as the presence engine keeps units (presence.max_devices' default): a group
# dropped at the cap while its unit still lives comes back from its next address as a new
# group, i.e. a second unit of the same phone. At 50,000 (the old cap) a crowd of 100k phones
# probing from random addresses doubled the units to the engine's cap, and every observation
# then evicted one (35 µs per observation, bench.presence_memory --crowd --wifi).
MAX_GROUPS = 200_000


def _on_channel(obs: Observation) -> bool:
    """Heard on the channel it was sent on (DS parameter set): a probe sent on channel 4 and
    heard on channel 6 is attenuated by the adjacent-channel filter, so its RSSI says nothing
    about distance."""
    ds = obs.fields.get("ds_channel")
    return ds is None or ds == obs.channel


class _Group(Snapshotted):
    __slots__ = ("addresses", "dead", "first", "fp", "gid", "key", "last", "linkable", "mean",
                 "more", "seq")

    def __init__(self, gid: str, fp: str | None, ts: float, linkable: bool) -> None:
        self.gid = gid
        self.fp = fp
        self.first = ts
        self.last = ts
        self.seq: int | None = None
        # Running mean RSSI by sensor (the grouper's key; snapshots of older versions hold
        # (sensor, channel) tuples, which match nothing and are relearnt): the first key in
        # two slots, any other in a dict made on demand. Almost every group is heard by one
        # sensor, and a dict per group was ~30 MB of a 100k-phone crowd
        # (bench.presence_memory --wifi).
        self.key: Hashable | None = None
        self.mean = 0.0
        self.more: dict[Hashable, float] | None = None
        self.linkable = linkable
        self.dead = False  # evicted: its addresses start afresh
        # Device keys mapped to it, removed with it: the one key as a str (almost every
        # group: a list each was 8 MB of a 100k-phone crowd), a list from the second.
        self.addresses: str | list[str] | None = None

    def __setstate__(self, state: object) -> None:
        """From a snapshot (core/continuity.py), also one taken before the means moved out
        of a per-group dict (`rssi`): a gateway upgraded mid-day keeps its groups."""
        slots = restored(state)
        old = slots.pop("rssi", None)
        self.key, self.mean, self.more = None, 0.0, None
        super().__setstate__(slots)
        for key, mean in (old or {}).items():
            if self.key is None:
                self.key, self.mean = key, mean
            else:
                self.more = self.more or {}
                self.more[key] = mean

    def add_address(self, device: str) -> None:
        a = self.addresses
        if a is None:
            self.addresses = device
        elif isinstance(a, str):
            self.addresses = [a, device]
        else:
            a.append(device)

    def mean_at(self, key: Hashable) -> float | None:
        if key == self.key:
            return self.mean
        return None if self.more is None else self.more.get(key)

    def heard(self, key: Hashable, rssi: float) -> None:
        if self.key is None or key == self.key:
            self.mean = rssi if self.key is None else self.mean + 0.2 * (rssi - self.mean)
            self.key = key
            return
        if self.more is None:
            self.more = {}
        mean = self.more.get(key)
        self.more[key] = rssi if mean is None else mean + 0.2 * (rssi - mean)


@dataclass(frozen=True, slots=True)
class GrouperStats(Snapshotted):
    """How addresses were linked so far (for benchmarks and the status topic)."""

    addresses: int
    groups: int
    live_groups: int
    by_sequence: int
    by_burst: int
    by_return: int
    by_resume: int


class DeviceGrouper(Snapshotted):
    """observe(obs) -> group id; estimate(now, window_s) -> estimated devices heard."""

    def __init__(self, max_gap_s: float = 300.0, burst_s: float = 1.5, seq_window: int = 64,
                 rssi_tol_db: float = 20.0, trust_address_kind: bool = True,
                 max_groups: int = MAX_GROUPS, sweep_s: float = 10.0,
                 resume_s: float = 1800.0) -> None:
        self.max_gap_s = max_gap_s
        self.resume_s = max(resume_s, max_gap_s)
        self.burst_s = burst_s
        self.seq_window = seq_window
        self.rssi_tol_db = rssi_tol_db
        self.trust_address_kind = trust_address_kind
        self.max_groups = max_groups
        self.sweep_s = sweep_s
        self._by_address: dict[str, _Group] = {}
        # Fingerprint -> its linkable group, or a list of them once there are several (a list
        # per fingerprint was 9 MB of a crowd of 100k phones of 100k kinds).
        self._by_fp: dict[str, _Group | list[_Group]] = {}
        # Live groups by id, oldest first. An OrderedDict: dropped groups leave deleted slots
        # at a plain dict's front that `next(iter(d))` would skip one by one.
        self._groups: OrderedDict[str, _Group] = OrderedDict()
        # (a past `last`, creation number, group): sweep candidates, see the invariants
        self._due: list[tuple[float, int, _Group]] = []
        self._next_id = 0
        self._next_sweep = float("-inf")
        self._addresses = 0
        self._links = [0, 0, 0, 0]  # by sequence, burst, return, resume

    def observe(self, obs: Observation) -> str:
        """The group (estimated device) of this observation's address."""
        if obs.radio is not Radio.WIFI:
            return obs.device
        ts = obs.ts
        if ts >= self._next_sweep:
            self.expire(ts)
        group = self._by_address.get(obs.device)
        if group is None or group.dead:
            group = self._place(obs)
            self._by_address[obs.device] = group
            group.add_address(obs.device)
            self._addresses += 1
        if ts > group.last:
            group.last = ts
        if obs.seq is not None:
            group.seq = obs.seq
        if obs.rssi is not None and _on_channel(obs):  # running mean per sensor
            group.heard(obs.sensor, obs.rssi)
        return group.gid

    def _place(self, obs: Observation) -> _Group:
        fp = obs.fingerprint
        public = self.trust_address_kind and obs.address_kind is AddressKind.PUBLIC
        if fp is not None and not public:
            peers = self._by_fp.get(fp)
            linked = self._link(() if peers is None else (peers,) if isinstance(peers, _Group)
                                else peers, obs)
            if linked is not None:
                return linked
        self._next_id += 1
        group = _Group(f"grp-{self._next_id:x}", fp, obs.ts, fp is not None and not public)
        self._groups[group.gid] = group
        heapq.heappush(self._due, (group.last, self._next_id, group))
        if group.linkable and fp is not None:
            peers = self._by_fp.get(fp)
            if peers is None:
                self._by_fp[fp] = group
            elif isinstance(peers, _Group):
                self._by_fp[fp] = [peers, group]
            else:
                peers.append(group)
        if len(self._groups) > self.max_groups:
            self._drop(next(iter(self._groups.values())))  # O(1): a linked list's head
            if len(self._due) > 2 * len(self._groups) + 1024:
                # Groups dropped at the cap stay in the heap (and alive) until their time
                # comes: at a crowd above the cap that is one per observation, so rebuild it
                # from the live groups now and then (O(1) per drop, amortised).
                self._due = [e for e in self._due if not e[2].dead]
                heapq.heapify(self._due)
        return group

    def _link(self, candidates: list[_Group] | tuple[_Group, ...], obs: Observation,
              ) -> _Group | None:
        ts, seq, key = obs.ts, obs.seq, obs.sensor
        rssi = obs.rssi if _on_channel(obs) else None
        best_seq: tuple[int, _Group] | None = None
        burst: _Group | None = None
        best_return: tuple[float, _Group] | None = None
        best_resume: tuple[float, _Group] | None = None
        for g in candidates:
            gap = ts - g.last
            if gap > self.max_gap_s:
                if gap <= self.resume_s:  # went quiet: a re-randomized phone may resume it
                    mean = g.mean_at(key)
                    near = 0.0 if rssi is None or mean is None else abs(rssi - mean)
                    if near <= self.rssi_tol_db and (best_resume is None or near < best_resume[0]):
                        best_resume = (near, g)
                continue
            if gap < -self.burst_s:
                continue
            if seq is not None and g.seq is not None and gap > 0:
                step = (seq - g.seq) % _SEQ_MOD
                if 0 < step <= self.seq_window and (best_seq is None or step < best_seq[0]):
                    best_seq = (step, g)
            mean = g.mean_at(key)
            near = 0.0 if rssi is None or mean is None else abs(rssi - mean)
            if near > self.rssi_tol_db:
                continue
            if gap <= self.burst_s:
                if burst is None or g.last > burst.last:
                    burst = g
            elif best_return is None or near < best_return[0]:
                best_return = (near, g)
        if best_seq is not None:
            self._links[0] += 1
            return best_seq[1]
        if burst is not None:
            self._links[1] += 1
            return burst
        if best_return is not None:
            self._links[2] += 1
            return best_return[1]
        if best_resume is not None:
            self._links[3] += 1
            return best_resume[1]
        return None

    def estimate(self, now: float, window_s: float) -> int:
        """Estimated devices heard in (now - window_s, now]; window_s <= resume_s is exact
        with respect to the groups (older groups may already be swept)."""
        since = now - window_s
        return sum(1 for g in self._groups.values() if since < g.last and g.first <= now)

    def expire(self, now: float) -> None:
        """Drop groups silent for more than resume_s, and their addresses."""
        self._next_sweep = now + self.sweep_s
        horizon = now - self.resume_s
        due = self._due
        dead: list[_Group] = []
        while due and due[0][0] < horizon:
            _, n, g = heapq.heappop(due)
            if g.dead:
                continue  # dropped at max_groups meanwhile
            if g.last < horizon:
                dead.append(g)
            else:
                heapq.heappush(due, (g.last, n, g))  # heard since: due again later
        for g in dead:
            self._drop(g)

    def __setstate__(self, state: object) -> None:
        # A snapshot (core/continuity.py) of an older version has no heap: build it.
        attrs = restored(state)
        super().__setstate__(attrs)
        if "_due" not in attrs:
            self._groups = OrderedDict(self._groups)
            self._due = [(g.last, i, g) for i, g in enumerate(self._groups.values())]
            heapq.heapify(self._due)

    def _drop(self, group: _Group) -> None:
        group.dead = True
        self._groups.pop(group.gid, None)
        by_address = self._by_address
        addresses = group.addresses
        for a in (() if addresses is None else (addresses,) if isinstance(addresses, str)
                  else addresses):  # O(its addresses), not a rebuild of the whole map
            if by_address.get(a) is group:
                del by_address[a]
        if group.fp is not None and group.linkable:
            peers = self._by_fp.get(group.fp)
            if peers is group:
                del self._by_fp[group.fp]
            elif isinstance(peers, list) and group in peers:
                peers.remove(group)
                if len(peers) == 1:
                    self._by_fp[group.fp] = peers[0]
                elif not peers:
                    del self._by_fp[group.fp]

    @property
    def stats(self) -> GrouperStats:
        return GrouperStats(self._addresses, self._next_id, len(self._groups), *self._links)
