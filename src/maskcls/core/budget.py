"""A time budget as the user writes it (``45m``, ``1h30m``, ``90s``, or minutes), read without importing torch
so that ``maskcls solve --budget 10x`` is refused at once."""

from __future__ import annotations

import re

_UNITS = re.compile(r"(?:(\d+(?:\.\d+)?)h)?\s*(?:(\d+(?:\.\d+)?)m(?:in)?)?\s*(?:(\d+(?:\.\d+)?)s)?")


class BudgetError(ValueError):
    """A budget that cannot be read, or a plan that cannot fit in it."""


def parse_budget(text: str | float) -> float:
    """Minutes from ``45m``, ``1h``, ``1h30m``, ``90s`` or a bare number of minutes."""
    if isinstance(text, (int, float)):
        minutes = float(text)
    else:
        value = str(text).strip().lower()
        parts = _UNITS.fullmatch(value)
        if re.fullmatch(r"\d+(?:\.\d+)?", value):
            minutes = float(value)
        elif parts and any(parts.groups()):
            hours, mins, secs = (float(p) if p else 0.0 for p in parts.groups())
            minutes = hours * 60 + mins + secs / 60
        else:
            raise BudgetError(f"cannot read the budget '{text}'; write e.g. 45m, 1h, 1h30m or 90s")
    if minutes <= 0:
        raise BudgetError(f"the budget must be positive, got {text}")
    return minutes
