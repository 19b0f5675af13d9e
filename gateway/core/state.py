"""One snapshot shape for a class, whether it runs as Python or compiled (mypyc).

The continuity snapshot (core/continuity.py) pickles the presence engine. A plain class with
`__slots__` pickles its state as `(None, {slot: value})`, one with a `__dict__` as the dict,
a frozen dataclass as the list of its field values, and mypyc's native class (the compiled
build, gateway/build.py) as `{attribute: value}`. Every class of the snapshot derives from
`Snapshotted`: a dict of its attributes (a frozen dataclass: Python's list) written by either
build, and any of these shapes read, so a snapshot taken by either build thaws in the other: a
gateway switched from the pure-Python install to the compiled one (or back) mid-day keeps the
day. (tests/test_compiled.py restarts across the builds.)"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any, TypeVar

S = TypeVar("S", bound="Snapshotted")


class Snapshotted:
    """Base of the classes the continuity snapshot pickles: their state is `attributes`, in
    either build.

    Unpickling makes an object with `cls.__new__(cls)` and then fills it. A compiled (mypyc)
    class's `__new__` runs `__init__` too, without its arguments, and fails; one that defines
    `__new__` itself only allocates, as a Python class's does, and its `__init__` runs from
    the type call as usual. (mypyc's own `serializable` flag had the opposite fault in the
    mypy release tried: its objects, made from Python, never ran `__init__`.) No slots of its
    own, so a slotted subclass stays without a `__dict__`."""

    __slots__ = ()

    def __new__(cls: type[S], *args: Any, **kwargs: Any) -> S:
        return super().__new__(cls)

    def __getstate__(self) -> dict[str, Any] | list[Any]:
        fields = _frozen_fields(self)
        if fields:  # Python's own shape for a frozen dataclass: its values
            return [getattr(self, name) for name in fields]
        return attributes(self)

    def __setstate__(self, state: object) -> None:
        if isinstance(state, list):
            state = dict(zip(_frozen_fields(self), state, strict=True))
        for name, value in restored(state).items():
            object.__setattr__(self, name, value)  # a frozen dataclass's fields too


def _frozen_fields(obj: object) -> tuple[str, ...]:
    """A frozen dataclass's field names (Python pickles one as the list of their values, and
    so does this base, in both builds), else ()."""
    params = getattr(type(obj), "__dataclass_params__", None)
    if params is None or not params.frozen:
        return ()
    return tuple(f.name for f in dataclasses.fields(obj))  # type: ignore[arg-type]


def attributes(obj: object) -> dict[str, Any]:
    """The attributes `obj` has set: mypyc's declared ones, else its slots and `__dict__`."""
    cls = type(obj)
    names: tuple[str, ...] | None = getattr(cls, "__mypyc_attrs__", None)
    if names is None:
        names = tuple(n for c in reversed(cls.__mro__) for n in vars(c).get("__slots__", ()))
    out: dict[str, Any] = dict(getattr(obj, "__dict__", {}))
    for name in names:
        if name in ("__dict__", "__weakref__"):
            continue
        with contextlib.suppress(AttributeError):  # declared but never set
            out[name] = getattr(obj, name)
    return out


def restored(state: object) -> dict[str, Any]:
    """The attributes in a pickled state of any of the three shapes."""
    if isinstance(state, tuple):  # (__dict__ or None, slots) of a slotted class
        held, slots = state
        out = dict(held or {})
        out.update(slots or {})
        return out
    if isinstance(state, dict):
        return dict(state)
    raise TypeError(f"not an object's state: {type(state).__name__}")
