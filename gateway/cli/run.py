"""`presence-gateway run` and `presence-gateway replay`: the gateway itself.

    run [-c FILE] [--mqtt URL] [--db PATH]
        live radios (or, when the config lists only recordings, a replay of them)
    replay PATH... [-c FILE] [--mqtt URL] [--db PATH] [--events-out F] [--observations-out F]
           [--no-mqtt]
        the whole pipeline over captures in capture time; with --no-mqtt the same events are
        computed (identity, opt-out and caps from the database included) but not published

Exit codes: 0 ok (live: stopped by SIGTERM/SIGINT, whatever the radios did); 1 when a
recording could not be read whole (what could be read is still processed and published), or
when a replay that publishes left messages undelivered in the outbox; 2 bad config or usage.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import sys
from pathlib import Path

from presence_gateway.cli.common import Subparsers, add_gateway_options, configure, open_out
from presence_gateway.runtime.assembly import Mode, RunOptions
from presence_gateway.runtime.gctune import tune_for_service
from presence_gateway.runtime.service import RunSummary, Service, run_with_signals


def register(sub: Subparsers) -> None:
    r = sub.add_parser("run", help="run the gateway (live radios, or replay per config)",
                       description="Run the gateway until SIGINT/SIGTERM (live radios), or to"
                                   " the end of the recordings the config lists.")
    add_gateway_options(r)
    r.set_defaults(func=run_command)
    rp = sub.add_parser("replay", help="replay captures through the whole pipeline",
                        description="Replay recordings through the whole pipeline in capture"
                                    " time; several files are merged by time.")
    rp.add_argument("paths", nargs="+", metavar="PATH",
                    help="pcap / pcapng / btsnoop / JSONL recordings")
    add_gateway_options(rp)
    rp.add_argument("--events-out", metavar="F.jsonl", help="write every event (with topic)")
    rp.add_argument("--observations-out", metavar="F.jsonl", help="write every observation")
    rp.add_argument("--no-mqtt", action="store_true",
                    help="compute the same events but do not publish them")
    rp.set_defaults(func=run_command)


def run_command(args: argparse.Namespace) -> int:
    from presence_gateway.drivers.registry import replay_settings

    cfg = configure(args)
    if args.command == "replay":
        cfg = dataclasses.replace(cfg, drivers=replay_settings(args.paths))
    recordings = bool(cfg.drivers) and all(d.type.is_recording for d in cfg.drivers)
    mode = Mode.REPLAY if args.command == "replay" or recordings else Mode.LIVE
    publish = not getattr(args, "no_mqtt", False)
    with contextlib.ExitStack() as stack:
        options = RunOptions(
            mode=mode, publish=publish,
            events_out=open_out(stack, getattr(args, "events_out", None)),
            observations_out=open_out(stack, getattr(args, "observations_out", None)))
        if publish:
            Path(cfg.storage.path).parent.mkdir(parents=True, exist_ok=True)
        tune_for_service()
        summary = asyncio.run(run_with_signals(Service(cfg, options)))
    print_summary(summary, published=publish)
    # A recording that could not be read whole (missing, damaged, cut off) fails the replay,
    # after what could be read was processed; live drivers retry until SIGTERM, and a stop
    # asked for is a clean exit (a missing radio is reported, not a failed service).
    if mode is not Mode.LIVE and summary.driver_errors:
        return 1
    return 0 if summary.delivered else 1


def print_summary(s: RunSummary, *, published: bool = True) -> None:
    delivery = (f"published: {s.published}  acked: {s.acked}  outbox left: {s.outbox_depth}"
                if published else "not published (--no-mqtt)")
    print(f"observations: {s.observations} (+{s.throttled} repeats throttled)  events: "
          f"{s.events}  {delivery}  queue drops: {s.queue_drops}", file=sys.stderr)
    for t, n in s.events_by_type.items():
        print(f"  {t}: {n}", file=sys.stderr)
    if s.rejects:
        print("  rejected: " + ", ".join(f"{k}={v}" for k, v in sorted(s.rejects.items())),
              file=sys.stderr)
    for sensor, plan in s.wifi_plans.items():  # what a hopping radio was counted as
        print(f"  {wifi_plan_line(sensor, plan)}", file=sys.stderr)
    for sensor, place in s.wifi_placement.items():  # what the RSSI was read as
        print(f"  {placement_line(sensor, place)}", file=sys.stderr)
    for err in s.driver_errors:
        print(f"  {err}", file=sys.stderr)
    for err in s.task_errors:
        print(f"  internal error (logged): {err}", file=sys.stderr)


def placement_line(sensor: str, place: dict[str, object]) -> str:
    """One Wi-Fi sensor's placement as the count used it, in words."""
    off, source = place.get("offset_db"), place.get("source")
    level = f"{off:+.0f} dB" if isinstance(off, float) and off else "0 dB"
    if source == "configured":
        how = f"offset {level} from the walk test"
    elif source == "learnt":
        how = f"offset {level} learnt from its readings"
    elif place.get("cautious"):
        how = ("not learnt yet (no busy half hour heard): weak devices count for "
               "walk_in.min_time only")
    else:
        how = "learning (0 dB until two busy windows are in)"
    return f"wifi placement ({sensor}): {how}"


def wifi_plan_line(sensor: str, plan: dict[str, object]) -> str:
    """One hopping sensor's plan as the count corrected for it, in words."""
    channels = plan.get("channels")
    chans = ",".join(str(c) for c in channels) if isinstance(channels, list) else "?"
    dwell = plan.get("dwell_s")
    how = "read from the frames" if plan.get("learnt") else "as configured"
    return (f"wifi plan {how} ({'every sensor' if sensor == '*' else sensor}): channels "
            f"{chans}, dwell " + (f"{dwell * 1000:.0f} ms" if isinstance(dwell, float)
                                  else "not known yet")
            + f", phone sweeps caught {plan.get('sweep_catch')}")
