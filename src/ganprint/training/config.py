"""Presets and overrides, resolved the same way for every trainer's typed config."""

from __future__ import annotations

import dataclasses
import json
from typing import Any, TypeVar

from ganprint.core.bounds import Bound, OptionalBound
from ganprint.core.errors import GanprintError

C = TypeVar("C")


def apply_overrides(preset: str | None, presets: dict[str, C], default: str, **overrides: Any) -> C:
    """The named preset (`default` when None) with every override that is not None applied (not yet validated).

    Raises GanprintError naming `preset` when it is unknown, and the option when it is not a config field.
    """
    name = default if preset is None else preset
    if name not in presets:
        raise GanprintError(f"`preset` {name!r} is unknown; choose one of {', '.join(sorted(presets))}")
    base = presets[name]
    given = {k: v for k, v in overrides.items() if v is not None}
    bad = sorted(set(given) - {f.name for f in dataclasses.fields(base)})
    if bad:
        raise GanprintError(f"unknown training options {bad}")
    return dataclasses.replace(base, **given)


def config_json(cfg: Any) -> str:
    """The resolved config as a dry run prints it (and as config.json holds it)."""
    return json.dumps(cfg.to_dict(), indent=2)


def check_bounds(cfg: Any, table: dict[str, Bound]) -> None:
    """Check the fields of a config named in `table` against their bounds (None passes an optional bound); an error
    names the field in backticks, which the CLI writes as its flag."""
    for name, bound in table.items():
        value = getattr(cfg, name)
        if not (value is None and isinstance(bound, OptionalBound)):
            bound.check(value, f"`{name}`")
