"""`presence-gateway` command line: run, replay, demo, check-config and the tools.

Exit codes: 0 ok, 1 runtime failure (driver, store, broker), 2 bad config or usage.
Every failure is one readable line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

from presence_gateway import __version__
from presence_gateway.core.config import GatewayConfig, load_config, mqtt_from_url
from presence_gateway.core.driver_config import default_ble
from presence_gateway.errors import ConfigError, GatewayError

log = logging.getLogger("presence_gateway")

# Subcommands whose argument parsing lives with their module: name -> (module, function).
_TOOLS: dict[str, tuple[str, str, str]] = {
    "identities": ("presence_gateway.cli.identities", "main",
                   "manage the consented identity registry"),
    "offers": ("presence_gateway.cli.offers", "main", "check or simulate offer rules"),
    "radio": ("presence_gateway.firmware_tools.radio", "main",
              "Wi-Fi monitor-mode interface helper"),
    "app-token": ("presence_gateway.firmware_tools.app_token", "main",
                  "reference encoder of the app token"),
}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="presence-gateway",
                                description="In-store BLE + Wi-Fi presence gateway.")
    p.add_argument("--version", action="version", version=f"presence-gateway {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the gateway (live radios or replay, per config)")
    _common(run)

    rp = sub.add_parser("replay", help="replay captures through the whole pipeline")
    rp.add_argument("paths", nargs="+", metavar="PATH",
                    help="pcap / pcapng / btsnoop / JSONL recordings")
    _common(rp)
    rp.add_argument("--events-out", metavar="F.jsonl", help="write every event (with topic)")
    rp.add_argument("--observations-out", metavar="F.jsonl", help="write every observation")
    rp.add_argument("--no-mqtt", action="store_true", help="do not publish (no outbox either)")

    cc = sub.add_parser("check-config", help="validate a config file and exit")
    cc.add_argument("file")

    doc = sub.add_parser("doctor", help="check config, storage, broker and radios")
    doc.add_argument("-c", "--config", metavar="FILE", help="YAML config (default: built-ins)")

    mon = sub.add_parser("monitor", help="watch a store's events arrive")
    mon.add_argument("-c", "--config", metavar="FILE", help="YAML config (broker, store)")
    mon.add_argument("--mqtt", metavar="URL", help="mqtt://[user:pass@]host:port")
    mon.add_argument("--gateway", default="+", help="one gateway id (default: all)")
    mon.add_argument("--count", type=int, help="stop after this many events")
    mon.add_argument("--seconds", type=float, help="stop after this long")

    demo = sub.add_parser("demo", help="replay bundled captures into a broker it starts")
    demo.add_argument("--quiet", action="store_true", help="only the summary")
    demo.add_argument("--mqtt", metavar="URL", help="use this broker instead of starting one")

    dec = sub.add_parser("decode", help="decode adverts from JSON lines on stdin")
    dec.add_argument("what", choices=["ble"])

    rec = sub.add_parser("record", help="record live adverts for replay")
    rec.add_argument("what", choices=["ble"])
    rec.add_argument("args", nargs=argparse.REMAINDER)

    for name, (_, _, text) in _TOOLS.items():
        t = sub.add_parser(name, help=text, add_help=False)
        t.add_argument("args", nargs=argparse.REMAINDER)
    return p


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("-c", "--config", metavar="FILE", help="YAML config (default: built-ins)")
    p.add_argument("--mqtt", metavar="URL", help="mqtt://[user:pass@]host:port or mqtts://...")
    p.add_argument("--db", metavar="PATH", help="SQLite file (outbox, registry) to use")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    try:
        return _dispatch(args)
    except GatewayError as exc:
        print(f"presence-gateway: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


def _dispatch(args: argparse.Namespace) -> int:
    cmd = args.command
    if cmd == "check-config":
        cfg = load_config(args.file)
        rules_note = ""
        if cfg.offers.rules_path is not None:  # the rules are part of what starts
            from presence_gateway.runtime.assembly import load_rules
            n = len(load_rules(cfg.offers.rules_path, cfg).rules)
            rules_note = f", {n} offer rule(s)"
        print(f"{args.file}: ok (store {cfg.store_id}, gateway {cfg.gateway_id}, "
              f"{len(cfg.drivers)} driver(s), broker {cfg.mqtt.host}:{cfg.mqtt.port}"
              f"{rules_note})")
        return 0
    if cmd in ("run", "replay"):
        return _run(args)
    if cmd == "doctor":
        from presence_gateway.cli.doctor import run_doctor
        return run_doctor(args.config)
    if cmd == "monitor":
        from presence_gateway.cli.monitor import run_monitor
        cfg = configure(args)
        m = cfg.mqtt
        topic = f"{m.topic_prefix}/v1/{cfg.store_id}/{args.gateway}/#"
        return run_monitor(m.host, m.port, topic, count=args.count, seconds=args.seconds,
                           username=m.username, password=m.password)
    if cmd == "demo":
        from presence_gateway.cli.demo import run_demo
        return run_demo(quiet=args.quiet, mqtt_url=args.mqtt)
    if cmd == "decode":
        from presence_gateway.cli.decode import run_decode_ble
        return run_decode_ble(sys.stdin, sys.stdout)
    if cmd == "record":
        return _tool("presence_gateway.firmware_tools.record_ble", "main", args.args)
    if cmd in _TOOLS:
        module, func, _ = _TOOLS[cmd]
        return _tool(module, func, args.args)
    raise GatewayError(f"unknown command {cmd}")


def _tool(module: str, func: str, argv: list[str]) -> int:
    import importlib
    fn: Callable[[list[str]], int] = getattr(importlib.import_module(module), func)
    return fn(list(argv))


def configure(args: argparse.Namespace) -> GatewayConfig:
    """Config file (or defaults) with the command line's overrides applied."""
    cfg = load_config(getattr(args, "config", None))
    if getattr(args, "mqtt", None):
        try:
            cfg = dataclasses.replace(cfg, mqtt=mqtt_from_url(args.mqtt, cfg.mqtt))
        except ValueError as exc:
            raise ConfigError("--mqtt", "", None, str(exc)) from None
    if getattr(args, "db", None):
        cfg = dataclasses.replace(cfg, storage=dataclasses.replace(cfg.storage, path=args.db))
    paths = getattr(args, "paths", None)
    if paths:
        from presence_gateway.drivers.registry import replay_settings
        cfg = dataclasses.replace(cfg, drivers=replay_settings(paths))
    return cfg


def _run(args: argparse.Namespace) -> int:
    from presence_gateway.drivers.registry import create
    from presence_gateway.runtime.service import RunOptions, Service, run_with_signals

    cfg = configure(args)
    replay = args.command == "replay" or (
        bool(cfg.drivers) and all(d.type.is_recording for d in cfg.drivers))
    if not cfg.drivers:
        # Built-in default: scan BLE on the first adapter, which every Pi has. Wi-Fi needs an
        # interface in monitor mode, which only the config can name.
        log.info("no drivers configured: scanning BLE on hci0 (configure `drivers` to change)")
        cfg = dataclasses.replace(cfg, drivers=(default_ble(),))
    drivers = [create(d) for d in cfg.drivers]
    with contextlib.ExitStack() as stack:
        events_out = _open_out(stack, getattr(args, "events_out", None))
        obs_out = _open_out(stack, getattr(args, "observations_out", None))
        if not getattr(args, "no_mqtt", False):
            Path(cfg.storage.path).parent.mkdir(parents=True, exist_ok=True)
        opts = RunOptions(replay=replay, mqtt=not getattr(args, "no_mqtt", False),
                          events_out=events_out, observations_out=obs_out)
        service = Service(cfg, drivers, opts)
        summary = asyncio.run(run_with_signals(service))
    _print_summary(summary)
    return 1 if summary.driver_errors and summary.observations == 0 else 0


def _open_out(stack: contextlib.ExitStack, path: str | None) -> IO[bytes] | None:
    if path is None:
        return None
    try:
        return stack.enter_context(Path(path).open("wb"))
    except OSError as exc:
        raise GatewayError(f"cannot write {path}: {exc.strerror}") from None


def _print_summary(s: Any) -> None:
    print(f"observations: {s.observations}  events: {s.events}  published: {s.published}  "
          f"acked: {s.acked}  outbox left: {s.outbox_depth}  queue drops: {s.queue_drops}",
          file=sys.stderr)
    for t, n in s.events_by_type.items():
        print(f"  {t}: {n}", file=sys.stderr)
    if s.rejects:
        print("  rejected: " + ", ".join(f"{k}={v}" for k, v in sorted(s.rejects.items())),
              file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
