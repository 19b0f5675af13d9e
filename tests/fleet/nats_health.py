"""Whether the fleet tests' NATS cluster is whole, read from each node's monitoring port; and,
when a test's consumer falls silent, what JetStream itself says about it.

Why more than `/healthz?js-server-only=true` (the server and its JetStream meta layer): a node
that a test killed, restarted or SIGSTOPped answers that within a second of coming back, while
its replicas of the MQTT streams are still catching up. Every QoS 1 subscription is a
JetStream consumer on `$MQTT_msgs`, replicated on all three nodes, and its leader reads from
its own node's replica: a consumer led from the lagging node delivers nothing until that
replica has caught up (nats-server issues #5679, #6989 report R3 consumers that stay silent
after restarts). The next test's consumers are created right away, so "caught up" is part of
"whole": every `$MQTT_` stream has one leader all nodes agree on, the leader counts every
other node as a current replica, and every node's own copy ends at the same sequence.

The full `/healthz` is not used: it also wants every consumer current, including those of the
partition sessions earlier tests leave behind (persistent by design, so they outlive their
test), which no later test reads.
"""

from __future__ import annotations

import contextlib
import json
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.fleet.servers import NatsNode

# Where NATS 2.9 keeps MQTT state: sessions, QoS 1 messages (one consumer per subscription),
# retained messages.
MQTT_STREAMS = ("$MQTT_sess", "$MQTT_msgs", "$MQTT_rmsgs")


def get_json(port: int, path: str) -> tuple[int, dict[str, Any]]:
    """(HTTP status, body) of a monitoring endpoint; (0, {}) when the node does not answer
    (/healthz answers 503 with a JSON body saying why)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=1) as r:
            return int(r.status), json.loads(r.read())
    except urllib.error.HTTPError as e:
        body: dict[str, Any] = {}
        with contextlib.suppress(ValueError, OSError):
            body = json.loads(e.read())
        return int(e.code), body
    except (OSError, ValueError):
        return 0, {}


def _streams(port: int, consumers: bool = False) -> dict[str, dict[str, Any]]:
    """This node's view of its streams, by name (its own replica's state)."""
    query = "accounts=true&streams=true" + ("&consumers=true&config=true" if consumers else "")
    _, body = get_json(port, f"/jsz?{query}")
    out: dict[str, dict[str, Any]] = {}
    for account in body.get("account_details") or []:
        for stream in account.get("stream_detail") or []:
            out[stream["name"]] = stream
    return out


def problems(nodes: Sequence[NatsNode]) -> list[str]:
    """What keeps the running nodes from being a whole cluster; empty when they are."""
    running = [n for n in nodes if n.running]
    found: list[str] = []
    views: dict[str, dict[str, Any]] = {}  # stream -> node name -> that node's stream detail
    for node in running:
        status, body = get_json(node.http_port, "/healthz?js-server-only=true")
        if status != 200:
            found.append(f"{node.name}: /healthz {body.get('error') or status or 'no answer'}")
            continue
        for name, stream in _streams(node.http_port).items():
            views.setdefault(name, {})[node.name] = stream
    if found:
        return found
    for name in MQTT_STREAMS:
        view = views.get(name, {})
        if missing := [n.name for n in running if n.name not in view]:
            found.append(f"{name}: no replica on {missing}")
            continue
        seen_by = {n: str(s.get("cluster", {}).get("leader") or "none") for n, s in view.items()}
        leader = next(iter(seen_by.values()))
        if set(seen_by.values()) != {leader} or leader not in view:  # none, disputed, or down
            found.append(f"{name}: leader as each node sees it {seen_by}")
            continue
        replicas = {r.get("name"): r for r in view[leader]["cluster"].get("replicas") or []}
        for node in running:
            r = replicas.get(node.name, {})
            if node.name != leader and not (r.get("current") and not r.get("lag")):
                found.append(f"{name}: replica on {node.name} not current"
                             f" (leader {leader}, lag {r.get('lag')})")
        last = {n: int(s.get("state", {}).get("last_seq", 0)) for n, s in view.items()}
        if len(set(last.values())) > 1:
            found.append(f"{name}: last sequence per node {last}")
    return found


def describe(nodes: Sequence[NatsNode], prefix: str) -> str:
    """JetStream's account of the MQTT streams and of the consumers of `prefix`'s QoS 1
    subscriptions as each node reports them (the leader's line is the one to trust), for a
    failure message: a silent consumer with `pending` > 0 and `bound` False has nobody
    listening on its delivery subject; one led from a node whose stream copy ends early is
    led from a lagging replica."""
    lines: list[str] = []
    consumers: dict[str, list[str]] = {}
    for node in nodes:
        if not node.running:
            lines.append(f"{node.name}: down")
            continue
        for name, stream in _streams(node.http_port, consumers=True).items():
            cl, st = stream.get("cluster", {}), stream.get("state", {})
            lines.append(f"{node.name} {name}: leader {cl.get('leader')}, last_seq"
                         f" {st.get('last_seq')}, messages {st.get('messages')}")
            for c in stream.get("consumer_detail") or []:
                filt = str(c.get("config", {}).get("filter_subject", ""))
                if f".{prefix}." not in filt + ".":
                    continue
                ccl = c.get("cluster", {})
                reps = [f"{r.get('name')}{'' if r.get('current') else ' behind'}"
                        for r in ccl.get("replicas") or []]
                view = (f"{node.name}: {filt} leader {ccl.get('leader')} replicas {reps}"
                        f" delivered {c.get('delivered', {}).get('stream_seq')}"
                        f" ack_floor {c.get('ack_floor', {}).get('stream_seq')}"
                        f" pending {c.get('num_pending')} ack_pending"
                        f" {c.get('num_ack_pending')} bound {c.get('push_bound', False)}")
                consumers.setdefault(str(c.get("name")), []).append(view)
    for name, views in sorted(consumers.items()):
        lines.append(f"consumer {name}:")
        lines += [f"  {v}" for v in views]
    return "\n".join(lines)
