"""The pure core of a running gateway, wired around what the identity runtime loaded.

Invariants: pure wiring, no I/O; every piece is built once and handed over by constructor.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from presence_gateway.core.config import GatewayConfig
from presence_gateway.core.envelope import Envelope, Topics
from presence_gateway.core.identity.link import Linker
from presence_gateway.core.offers.engine import OfferEngine
from presence_gateway.core.offers.rules import RuleSet, dwell_marks
from presence_gateway.core.pipeline import Pipeline
from presence_gateway.core.presence.hopping import ChannelPlan
from presence_gateway.core.presence.sessions import PresenceEngine
from presence_gateway.core.privacy import Boundary, Pseudonymizer
from presence_gateway.core.visit_gate import VisitGate
from presence_gateway.runtime.identity import IdentityRuntime


@dataclass(frozen=True, slots=True)
class Core:
    """The pure part of a running gateway."""

    pseudonymizer: Pseudonymizer
    boundary: Boundary
    engine: PresenceEngine
    linker: Linker
    offers: OfferEngine | None
    topics: Topics
    envelope: Envelope
    pipeline: Pipeline


def build_core(cfg: GatewayConfig, identity: IdentityRuntime, pseudonymizer: Pseudonymizer, *,
               rules: RuleSet, next_seq: int, started: float | None,
               plan: ChannelPlan | None = None) -> Core:
    """Pure wiring of the core around the identity runtime's index, linker and opt-out list.
    `started` is the wall-clock start of a live run (None in capture time); `plan` the live
    Wi-Fi radio's channel plan (None: the engine learns it from the frames' channels)."""
    boundary = Boundary(pseudonymizer, resolver=identity.index.resolve, opt_out=identity.opt_out)
    # Offer dwell conditions are checked at dwell marks (confirmed by a sighting): add theirs.
    presence = dataclasses.replace(
        cfg.presence, dwell_marks_s=dwell_marks(rules, cfg.presence.dwell_marks_s))
    engine = PresenceEngine(presence, gateway_id=cfg.gateway_id, store_id=cfg.store_id,
                            plan=plan)
    offers = None
    if rules.rules or cfg.offers.rules_path:
        offers = OfferEngine(rules, timezone=cfg.timezone, store_id=cfg.store_id,
                             context=identity.context, links=identity.linker.link_for)
    topics = Topics(cfg.mqtt.topic_prefix, cfg.store_id, cfg.gateway_id,
                    layout=cfg.mqtt.topic_layout, partitions=cfg.mqtt.partitions)
    envelope = Envelope(topics=topics, qos=cfg.mqtt.qos, next_seq=next_seq,
                        source=f"urn:presence-gateway:{cfg.store_id}:{cfg.gateway_id}")
    gate = VisitGate(engine) if cfg.visit_events == "visitors" else None
    pipeline = Pipeline(engine=engine, envelope=envelope, gateway_id=cfg.gateway_id,
                        stats_interval_s=cfg.presence.stats_interval_s, linker=identity.linker,
                        offers=offers, started=started, gate=gate)
    return Core(pseudonymizer, boundary, engine, identity.linker, offers, topics, envelope,
                pipeline)


def pseudonymizer_for(cfg: GatewayConfig) -> Pseudonymizer:
    p = cfg.privacy
    return Pseudonymizer(p.secret, p.rotation_s, p.rotation_offset_s)
