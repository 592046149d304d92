"""The record of one parameter key, and the entry by which a simulator takes a shared key."""
from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class Parameter:
    """One key of a parameter dictionary ``p``.

    default: the value ``p`` ships with; rule: the validation rule (``eventprop.config.checks``:
    value, p -> error message or None); meaning: what the key sets, in one line; unit: "ms",
    "Hz", ... or "" for a count, a switch, a name or a dimensionless number.
    """
    default: Any
    rule: Callable
    meaning: str
    unit: str


_SAME = object()     # marks "the shared default" (a default of None is a real default)


@dataclass(frozen=True)
class SharedKey:
    """A simulator's use of a key of ``eventprop.config.shared.SHARED``; ``default``, when given,
    replaces the shared default in this simulator."""
    default: Any = _SAME

    @property
    def changes_default(self):
        return self.default is not _SAME


def shared(default=_SAME):
    """The entry of a simulator's table for a shared key: ``shared()`` as it is in SHARED,
    ``shared(default=0.1)`` with another default in this simulator."""
    return SharedKey(default)
