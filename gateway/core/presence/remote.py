"""The `presence.configure` command: new zones and presence settings from central, pure.

Body (sealed like every command, core/commands.py): `{"version": "...", "presence": "<YAML of
the presence section: zones, thresholds, timings>"}`. The text is validated whole with the
same reader as the config file (errors `presence.yaml:line key: message`); nothing is applied
unless all of it is valid. The shell applies it to the running engine (`reconfigure`), keeps
it in the gateway's database so a restart keeps it, and publishes the result.
"""

from __future__ import annotations

from dataclasses import dataclass

from presence_gateway.core.commands import Command, CommandRejected
from presence_gateway.core.presence import config as presence_config
from presence_gateway.core.presence.config import PresenceSettings
from presence_gateway.core.yamlread import Reader, load_yaml
from presence_gateway.errors import ConfigError, ConfigErrors

PRESENCE_CONFIGURE = "presence.configure"
MAX_TEXT = 256 * 1024


@dataclass(frozen=True, slots=True)
class ConfigureRequest:
    command: Command
    version: str
    text: str


def configure_request(cmd: Command) -> ConfigureRequest | CommandRejected:
    text, version = cmd.body.get("presence"), cmd.body.get("version", "")
    if not isinstance(text, str) or not isinstance(version, str | int) or len(text) > MAX_TEXT:
        return CommandRejected("invalid", "presence.configure needs presence (YAML text of the"
                               " presence section, <= 256 KiB) and a version", cmd.id)
    return ConfigureRequest(cmd, str(version), text)


def parse_presence(text: str, source: str = "presence.yaml") -> PresenceSettings | list[str]:
    """The presence section's settings, or every error (as the config file would give)."""
    try:
        data, lines = load_yaml(text, source)
        r = Reader(source, {"presence": data}, {f"presence.{k}" if k else "presence": v
                                                for k, v in lines.items()})
        if data is not None and not isinstance(data, dict):
            r.error("presence", "expected the presence section: a mapping (zones, ...)")
            r.check()
        settings = presence_config.read(r, "presence")
        r.check()
    except (ConfigError, ConfigErrors) as exc:
        return [str(e) for e in (exc.errors if isinstance(exc, ConfigErrors) else [exc])]
    return settings
