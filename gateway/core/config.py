"""Gateway config: YAML -> frozen dataclasses, validated whole; errors name file, key and line.

Invariants:
- `load_config` either returns a complete `GatewayConfig` or raises ConfigError/ConfigErrors
  listing every problem found; nothing is started from a half-valid file.
- Unknown keys are errors (a typo must not silently fall back to a default).
- Secrets (MQTT password, privacy secret) are resolved from the environment or a file named in
  the config, never written in it; `privacy.secret: random` keeps a per-process secret in RAM.
- Sections owned by later stages (presence, identity, offers) are read by their own modules'
  `read(...)` functions through the same Reader, so every error has the same shape.
"""

from __future__ import annotations

import os
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

from presence_gateway.core import dashboard_config
from presence_gateway.core.driver_config import DriverSettings, read_drivers
from presence_gateway.core.ha_discovery import DiscoverySettings
from presence_gateway.core.identity import config as identity_config
from presence_gateway.core.offers import rules
from presence_gateway.core.presence import config as presence_config
from presence_gateway.core.throttle import WIFI_BURST_S
from presence_gateway.core.visit_gate import MODES as VISIT_MODES
from presence_gateway.core.yamlread import Reader, load_yaml, read_secret
from presence_gateway.errors import ConfigError

_ID = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"
_TOP = frozenset({"store", "gateway", "drivers", "mqtt", "storage", "privacy", "presence",
                  "identity", "offers", "queue", "logging", "http", "home_assistant",
                  "dashboard", "events"})


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One broker node of `mqtt.servers`."""

    host: str
    port: int
    tls: bool = False


@dataclass(frozen=True, slots=True)
class MqttSettings:
    host: str = "127.0.0.1"
    port: int = 1883
    tls: bool = False
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    client_id: str = ""
    qos: int = 1
    topic_prefix: str = "presence"
    keepalive: int = 30
    protocol: str = "auto"  # "auto" (v5, fall back to 3.1.1), "5" or "3.1.1"
    max_inflight: int = 20
    # Nodes of one cluster, tried in turn on failure (`mqtt.servers`); empty: host/port only.
    servers: tuple[Endpoint, ...] = ()
    # "v1": one topic per event type (the store-broker default); "v2": one events topic per
    # gateway under a store partition, for clustered brokers and ordered central consumers
    # (docs/fleet.md). `partitions` must be the same for the whole fleet.
    topic_layout: str = "v1"
    partitions: int = 16

    def endpoints(self) -> tuple[Endpoint, ...]:
        return self.servers or (Endpoint(self.host, self.port, self.tls),)


@dataclass(frozen=True, slots=True)
class StorageSettings:
    path: str = "var/presence-gateway.db"
    outbox_max_rows: int = 1_000_000
    outbox_max_age_s: float = 7 * 86400.0
    batch_max: int = 1000
    batch_interval_s: float = 1.0
    max_bytes: int = 1 << 30                 # live bytes of the database file at most
    min_free_bytes: int = 64 << 20           # never grow the file into the device's last bytes
    keep_delivered_s: float = 86400.0        # delivered events kept for `events.resend`
    keep_delivered_bytes: int = 64 << 20     # ... and at most this many bytes of them


@dataclass(frozen=True, slots=True)
class PrivacySettings:
    secret_source: str = "random"
    secret: bytes = field(default=b"", repr=False)
    rotation_s: float = 86400.0
    rotation_offset_s: float = 4 * 3600.0  # rotate at 04:00 UTC by default, when shops are shut
    retention_days: int = 30


@dataclass(frozen=True, slots=True)
class HttpSettings:
    """`http.listen: HOST:PORT`: /metrics and /healthz; off (None) by default."""
    listen: tuple[str, int] | None = None


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    source: str
    store_id: str
    gateway_id: str
    timezone: str
    drivers: tuple[DriverSettings, ...]
    mqtt: MqttSettings
    storage: StorageSettings
    privacy: PrivacySettings
    presence: presence_config.PresenceSettings
    identity: identity_config.IdentitySettings = field(
        default_factory=identity_config.IdentitySettings)
    offers: rules.OfferSettings = field(default_factory=rules.OfferSettings)
    queue_max: int = 10000
    ble_repeat_interval_s: float = 1.0
    wifi_repeat_interval_s: float = WIFI_BURST_S
    # Which visits are published: "all", or "visitors" (passers-by only in footfall counts;
    # core/visit_gate.py)
    visit_events: str = "all"
    http: HttpSettings = field(default_factory=HttpSettings)
    home_assistant: DiscoverySettings = field(default_factory=DiscoverySettings)
    dashboard: dashboard_config.DashboardSettings = field(
        default_factory=dashboard_config.DashboardSettings)


def load_config(path: str | None, *, env: dict[str, str] | None = None) -> GatewayConfig:
    """Read and validate a config file; `None` gives the built-in defaults."""
    if path is None:
        return parse_config("", "<defaults>", env=env)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(path, "", None, f"cannot read file: {exc.strerror}") from None
    return parse_config(text, path, env=env)


def parse_config(text: str, filename: str, *, env: dict[str, str] | None = None) -> GatewayConfig:
    env = dict(os.environ) if env is None else env
    data, lines = load_yaml(text, filename)
    in_file = filename != "<defaults>"
    r = Reader(Path(filename).name if in_file else filename, data, lines,
               base_dir=str(Path(filename).absolute().parent) if in_file else None)
    if data is not None and not isinstance(data, dict):
        r.error("", "the top level must be a mapping of sections")
        r.check()
    r.known_keys("", _TOP)
    for section in ("store", "gateway", "mqtt", "storage", "privacy", "queue", "events"):
        r.mapping(section)
    r.known_keys("store", {"id", "timezone"})
    r.known_keys("gateway", {"id"})
    store_id = r.str_("store.id", "store-1", pattern=_ID)
    gateway_id = r.str_("gateway.id", "gw-1", pattern=_ID)
    timezone = r.str_("store.timezone", "UTC")
    _check_timezone(r, timezone)

    def secret(r: Reader, key: str, spec: str) -> str | None:
        return _secret_from(r, key, spec, env)

    cfg = GatewayConfig(
        source=filename, store_id=store_id, gateway_id=gateway_id, timezone=timezone,
        drivers=read_drivers(r), mqtt=_mqtt(r, env, store_id, gateway_id), storage=_storage(r),
        privacy=_privacy(r, env), presence=presence_config.read(r, "presence"),
        identity=identity_config.read(r, "identity", secret),
        offers=rules.read_settings(r, "offers", secret),
        queue_max=r.int_("queue.max", 10000, 16, 10_000_000),
        ble_repeat_interval_s=r.duration("queue.ble_repeat_interval", 1.0),
        wifi_repeat_interval_s=r.duration("queue.wifi_repeat_interval", WIFI_BURST_S),
        visit_events=r.str_("events.visits", "all", choices=VISIT_MODES),
        http=_http(r),
        home_assistant=_home_assistant(r),
        dashboard=dashboard_config.read(r, "dashboard", secret),
    )
    r.known_keys("queue", {"max", "ble_repeat_interval", "wifi_repeat_interval"})
    r.known_keys("events", {"visits"})
    r.check()
    return cfg


def _home_assistant(r: Reader) -> DiscoverySettings:
    r.mapping("home_assistant")
    r.known_keys("home_assistant", {"discovery", "prefix"})
    return DiscoverySettings(
        enabled=r.bool_("home_assistant.discovery", False),
        prefix=r.str_("home_assistant.prefix", "homeassistant",
                      pattern=r"[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*"))


def _http(r: Reader) -> HttpSettings:
    r.mapping("http")
    r.known_keys("http", {"listen"})
    spec = r.opt_str("http.listen")
    if spec is None:
        return HttpSettings()
    host, sep, port = spec.rpartition(":")
    host = host.strip("[]")  # [::1]:9108
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        r.error("http.listen", f'expected HOST:PORT such as 127.0.0.1:9108, got "{spec}"')
        return HttpSettings()
    return HttpSettings(listen=(host, int(port)))


def _check_timezone(r: Reader, name: str) -> None:
    try:
        from zoneinfo import ZoneInfo
        ZoneInfo(name)
    except Exception:
        r.error("store.timezone", f'unknown time zone "{name}" (use an IANA name such as'
                                  ' Europe/Berlin)')


def _secret_from(r: Reader, key: str, spec: str, env: dict[str, str]) -> str | None:
    return read_secret(r, key, spec, env)


def _mqtt(r: Reader, env: dict[str, str], store_id: str, gateway_id: str) -> MqttSettings:
    r.known_keys("mqtt", {"url", "host", "port", "tls", "username", "password", "client_id",
                          "qos", "topic_prefix", "keepalive", "protocol", "max_inflight",
                          "servers", "topic_layout", "partitions"})
    r.known_keys("mqtt.tls", {"ca_file", "cert_file", "key_file"})
    base = MqttSettings()
    url = r.opt_str("mqtt.url")
    if url is not None:
        try:
            base = mqtt_from_url(url, base)
        except ValueError as exc:
            r.error("mqtt.url", str(exc))
    host = r.str_("mqtt.host", base.host)
    port = r.int_("mqtt.port", base.port, 1, 65535)
    tls_files = {k: r.opt_str(f"mqtt.tls.{k}") for k in ("ca_file", "cert_file", "key_file")}
    tls_files = {k: None if v is None else r.file_path(v) for k, v in tls_files.items()}
    for k, v in tls_files.items():
        if v is not None and not Path(v).is_file():
            r.error(f"mqtt.tls.{k}", f"file not found: {v}")
    password = base.password
    pw_spec = r.opt_str("mqtt.password")
    if pw_spec is not None:
        password = _secret_from(r, "mqtt.password", pw_spec, env)
    prefix = r.str_("mqtt.topic_prefix", "presence", pattern=r"[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*")
    servers = _servers(r)
    if servers:
        first = mqtt_from_url(r.list_("mqtt.servers")[0], base)
        base = MqttSettings(host=first.host, port=first.port, tls=first.tls,
                            username=first.username, password=first.password)
        if r.has("mqtt.url") or r.has("mqtt.host") or r.has("mqtt.port"):
            r.error("mqtt.servers", "give either mqtt.servers or mqtt.url/host/port, not both")
    return MqttSettings(
        servers=servers, topic_layout=r.str_("mqtt.topic_layout", "v1", choices=("v1", "v2")),
        partitions=r.int_("mqtt.partitions", 16, 1, 1000),
        host=servers[0].host if servers else host, port=servers[0].port if servers else port,
        tls=base.tls or r.has("mqtt.tls"),
        ca_file=tls_files["ca_file"], cert_file=tls_files["cert_file"],
        key_file=tls_files["key_file"],
        username=r.opt_str("mqtt.username") or base.username, password=password,
        client_id=r.str_("mqtt.client_id", f"presence-{store_id}-{gateway_id}", pattern=_ID),
        qos=r.int_("mqtt.qos", 1, 0, 2), topic_prefix=prefix,
        keepalive=r.int_("mqtt.keepalive", 30, 5, 3600),
        protocol=r.str_("mqtt.protocol", "auto", choices=("auto", "5", "3.1.1")),
        max_inflight=r.int_("mqtt.max_inflight", 20, 1, 1000),
    )


def _servers(r: Reader) -> tuple[Endpoint, ...]:
    """`mqtt.servers`: URLs of one cluster's nodes; all mqtt:// or all mqtts://."""
    out: list[Endpoint] = []
    for i, url in enumerate(r.list_("mqtt.servers")):
        try:
            s = mqtt_from_url(str(url))
        except ValueError as exc:
            r.error(f"mqtt.servers[{i}]", str(exc))
            continue
        out.append(Endpoint(s.host, s.port, s.tls))
    if len({e.tls for e in out}) > 1:
        r.error("mqtt.servers", "mix of mqtt:// and mqtts:// URLs; use one scheme for a cluster")
    return tuple(out)


URL_PASSWORD = ("a password in the URL is refused (a command line shows in `ps` to every user,"
                " a config file is copied and shared): give it with --mqtt-password-from"
                " env:NAME or file:PATH, or the config key mqtt.password: env:NAME or file:PATH;"
                " the URL may keep the user name (mqtts://user@host:port)")


def mqtt_from_url(url: str, base: MqttSettings | None = None) -> MqttSettings:
    """`mqtt://[user@]host:port` or `mqtts://...` -> settings (ValueError when wrong).

    Never a password: it comes from env:/file: only (URL_PASSWORD says why and how)."""
    base = base or MqttSettings()
    parts = urlsplit(url)
    if parts.password is not None:
        raise ValueError(URL_PASSWORD)  # without the URL: the message must not repeat it
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise ValueError(f'expected mqtt://[user@]host:port or mqtts://..., got "{url}"')
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f'bad port in "{url}"') from None
    tls = parts.scheme == "mqtts"
    return MqttSettings(
        host=parts.hostname, port=port or (8883 if tls else 1883), tls=tls,
        ca_file=base.ca_file, cert_file=base.cert_file, key_file=base.key_file,
        username=unquote(parts.username) if parts.username else base.username,
        password=base.password,
        client_id=base.client_id, qos=base.qos, topic_prefix=base.topic_prefix,
        keepalive=base.keepalive, protocol=base.protocol, max_inflight=base.max_inflight,
        topic_layout=base.topic_layout, partitions=base.partitions,
    )


def _storage(r: Reader) -> StorageSettings:
    r.known_keys("storage", {"path", "outbox_max_rows", "outbox_max_age", "batch_max",
                             "batch_interval", "max_bytes", "min_free_bytes", "keep_delivered",
                             "keep_delivered_bytes"})
    return StorageSettings(
        # Written in the file: beside the file; the built-in default stays relative to the cwd.
        path=(r.file_path(r.str_("storage.path")) if r.has("storage.path")
              else "var/presence-gateway.db"),
        outbox_max_rows=r.int_("storage.outbox_max_rows", 1_000_000, 100, 100_000_000),
        outbox_max_age_s=r.duration("storage.outbox_max_age", 7 * 86400.0, minimum=60),
        batch_max=r.int_("storage.batch_max", 1000, 1, 100_000),
        batch_interval_s=r.duration("storage.batch_interval", 1.0, minimum=0.01),
        max_bytes=r.parsed("storage.max_bytes", 1 << 30, _size, _SIZE_HINT),
        min_free_bytes=r.parsed("storage.min_free_bytes", 64 << 20, _size, _SIZE_HINT),
        keep_delivered_s=(0.0 if r.raw("storage.keep_delivered", None) in (0, "0")
                          else r.duration("storage.keep_delivered", 86400.0, minimum=60)),
        keep_delivered_bytes=r.parsed("storage.keep_delivered_bytes", 64 << 20, _size,
                                      _SIZE_HINT),
    )


_SIZE_HINT = "a size such as 512MB, 64MiB, 1GB or a number of bytes"
_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40}


def _size(value: object) -> int | None:
    """`512MB`, `64MiB`, `1 GB` or a plain integer -> bytes (None when not a size)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if not isinstance(value, str):
        return None
    m = re.fullmatch(r"\s*(\d{1,15}(?:\.\d{1,6})?)\s*([A-Za-z]{0,3})\s*", value)
    if m is None or m.group(2).lower() not in _UNITS:
        return None
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def _privacy(r: Reader, env: dict[str, str]) -> PrivacySettings:
    r.known_keys("privacy", {"secret", "rotation", "rotation_offset", "retention_days"})
    source = r.str_("privacy.secret", "random")
    if source == "random":
        secret = secrets.token_bytes(32)
    else:
        text = _secret_from(r, "privacy.secret", source, env)
        secret = (text or "").encode()
        if text is not None and len(secret) < 16:
            r.error("privacy.secret", "the secret must be at least 16 characters")
    return PrivacySettings(
        secret_source=source, secret=secret,
        rotation_s=r.duration("privacy.rotation", 86400.0, minimum=60),
        rotation_offset_s=r.duration("privacy.rotation_offset", 4 * 3600.0),
        retention_days=r.int_("privacy.retention_days", 30, 1, 3650),
    )
