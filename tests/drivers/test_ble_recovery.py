"""The power-cycle's answers from BlueZ, one by one (the mock cannot refuse power-on only)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from dbus_fast import Message

from presence_gateway.drivers.ble_recovery import RecoverySkipped, SystemControl

Reply = Callable[[Message], Message]


def ok(m: Message) -> Message:
    return Message.new_method_return(m)


def blocked(m: Message) -> Message:
    return Message.new_error(m, "org.bluez.Error.Blocked", "rfkill")


def denied(m: Message) -> Message:
    return Message.new_error(m, "org.freedesktop.DBus.Error.AccessDenied", "policy")


class ScriptedBus:
    """Answers each Set(Powered) with the next scripted reply and records the values set."""

    def __init__(self, *replies: Reply) -> None:
        self.replies, self.powered = list(replies), list[bool]()

    async def call(self, msg: Message) -> Message:
        assert (msg.member, msg.body[0], msg.body[1]) == ("Set", "org.bluez.Adapter1", "Powered")
        self.powered.append(msg.body[2].value)
        msg.serial = len(self.powered)  # a connection numbers what it sends; replies cite it
        return self.replies.pop(0)(msg)


@pytest.mark.parametrize(("replies", "powered", "reason"), [
    ((ok, ok), [False, True], None),
    ((ok, blocked, ok), [False, True, True], None),  # on refused once, then on
    ((ok, blocked, blocked), [False, True, True], "power_on_failed"),
    ((denied,), [False], "dbus_permission"),  # refused at once: never turned off
    ((blocked,), [False], "adapter_failed"),
])
async def test_power_cycle_answers(replies: tuple[Reply, ...], powered: list[bool],
                                   reason: str | None) -> None:
    bus = ScriptedBus(*replies)
    control = SystemControl(settle_s=0.0)
    bus_arg: Any = bus
    if reason is None:
        await control._off_then_on(bus_arg, "/org/bluez/hci0")
    else:
        with pytest.raises(RecoverySkipped) as skip:
            await control._off_then_on(bus_arg, "/org/bluez/hci0")
        assert skip.value.reason == reason
    assert bus.powered == powered
