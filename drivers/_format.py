"""Number formatting and validators shared by every driver.

Values go to instruments in a form that round-trips exactly, so a 100 nA
limit is sent as ``1e-07`` and 1.23456789 V as ``1.23456789``. Validators
raise a :class:`ValueError` that names the limit; they never clip.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass
from numbers import Real
from typing import Any


def format_number(x: float) -> str:
    """Format a number for an instrument command without losing precision.

    Parameters
    ----------
    x : float
        A finite real number.

    Returns
    -------
    str
        The shortest text that reads back as exactly the same float, for
        example ``"1e-07"`` or ``"1.23456789"``.

    Raises
    ------
    ValueError
        If `x` is NaN or infinite.
    TypeError
        If `x` is not a real number.
    """
    value = x if type(x) is float else _as_float(x, "value")
    if not math.isfinite(value):
        raise ValueError(f"{value} cannot be sent to an instrument: not finite")
    return repr(value)


@dataclass(frozen=True)
class RangeLimit:
    """A pymeasure validator that accepts a closed interval and raises outside it.

    Build it with :func:`strict_range_named`. Called as
    ``limit(value, values)`` by pymeasure; `values` is ignored because the
    interval is bound when the validator is made.

    Attributes
    ----------
    low, high : float
        The smallest and largest accepted values, in `unit`.
    unit : str
        The unit of the quantity, used in messages (``"A"``, ``"V"``).
    name : str or None
        What the limit belongs to, for example ``"smua.source.limiti"``.
    """

    low: float
    high: float
    unit: str
    name: str | None = None

    def __call__(self, value: Any, values: Any = ()) -> float:
        """Return `value` as a float if it lies within the interval.

        Raises
        ------
        ValueError
            If `value` is NaN, infinite or outside ``[low, high]``; the message
            names the limit that was crossed.
        TypeError
            If `value` is not a real number.
        """
        number = value if type(value) is float else _as_float(value, self._owner())
        if self.low <= number <= self.high and math.isfinite(number):
            return number  # the common case, checked first: validators run per point
        if not math.isfinite(number):
            raise ValueError(f"{number} {self.unit} is not a finite value{self._of()}")
        if number > self.high:
            raise ValueError(
                f"{self._show(number)} is above the {self._show(self.high)} limit"
                f"{self._of()}"
            )
        if number < self.low:
            raise ValueError(
                f"{self._show(number)} is below the {self._show(self.low)} limit"
                f"{self._of()}"
            )
        return number

    def _show(self, number: float) -> str:
        # Whole numbers read better without ".0"; others keep every digit.
        text = repr(number)
        if number.is_integer() and abs(number) < 1e15:
            text = str(int(number))
        return f"{text} {self.unit}"

    def _of(self) -> str:
        return f" of {self.name}" if self.name else ""

    def _owner(self) -> str:
        return self.name or "value"


def strict_range_named(
    low: float, high: float, unit: str, name: str | None = None
) -> RangeLimit:
    """Make a validator that raises, naming the limit, outside ``[low, high]``.

    Parameters
    ----------
    low, high : float
        The smallest and largest accepted values.
    unit : str
        The unit shown in messages.
    name : str, optional
        What the limit belongs to, shown in messages.

    Returns
    -------
    RangeLimit
        A pymeasure validator; ``strict_range_named(0, 1.5, "A",
        "smua.source.limiti")(1.2)`` returns 1.2, and 1.6 raises
        ``ValueError("1.6 A is above the 1.5 A limit of smua.source.limiti")``.
    """
    if not low <= high:
        raise ValueError(f"empty range: low {low} is above high {high}")
    return RangeLimit(float(low), float(high), unit, name)


def strict_choice_named(choices: Collection[Any], name: str) -> Any:
    """Make a validator that accepts only `choices` and raises naming them.

    Parameters
    ----------
    choices : collection
        The accepted values.
    name : str
        What is being chosen, shown in messages (``"source function"``).

    Returns
    -------
    callable
        A pymeasure validator ``(value, values) -> value``.
    """
    allowed = ", ".join(repr(choice) for choice in choices)

    def validate(value: Any, values: Any = ()) -> Any:
        if value not in choices:
            raise ValueError(f"{value!r} is not a valid {name}: choose {allowed}")
        return value

    return validate


def _as_float(value: Any, owner: str) -> float:
    # bool is a Real, but True as a voltage is a mistake, not a value.
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{value!r} is not a number (for {owner})")
    return float(value)
