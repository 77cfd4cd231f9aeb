"""Presets and overrides, resolved the same way for every trainer's typed config."""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, TypeVar

from ganprint.core.bounds import Bound, OptionalBound
from ganprint.core.errors import GanprintError
from ganprint.core.files import read_input_json

C = TypeVar("C")


# Keys of config.json that describe the run's provenance, not its settings.
PROVENANCE = ("git_sha",)
# Config fields renamed since run folders were first recorded (new name -> old name).
RENAMED_FIELDS = {"fingerprint_length": "fingerprint_bits"}


def apply_overrides(preset: str | None, presets: dict[str, C], default: str, base: C | None = None,
                    **overrides: Any) -> C:
    """The named preset (`default` when None), or `base` (a config read by `read_config_file`), with every override
    that is not None applied (not yet validated).

    Raises GanprintError naming `preset` when it is unknown or given beside `base`, and the option when it is not a
    config field.
    """
    if base is not None and preset is not None:
        raise GanprintError("give `preset` or `config_file`, not both: a config file already holds every setting")
    name = default if preset is None else preset
    if base is None and name not in presets:
        raise GanprintError(f"`preset` {name!r} is unknown; choose one of {', '.join(sorted(presets))}")
    base = presets[name] if base is None else base
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


def read_config_file(path: str | os.PathLike, cls: type[C], run_keys: tuple[str, ...] = ()) -> C:
    """The typed config that a run's config.json (or a dry run's output) holds, to train again or to start from.

    The provenance keys (`git_sha`) and the run's own keys (`run_keys`, e.g. the diffusion trainer's `data`) are
    dropped, a renamed field is read under its new name; an unknown field or a bad value is refused naming the file.
    The caller validates after applying its overrides.
    """
    d = read_input_json(path, "the config file")
    if not isinstance(d, dict):
        raise GanprintError(f"`config_file` {path} holds no JSON object; give a run's config.json or a dry run's "
                            "output")
    d = {k: v for k, v in d.items() if k not in PROVENANCE and k not in run_keys}
    for new, old in RENAMED_FIELDS.items():
        if old in d and new not in d:
            d[new] = d.pop(old)
    bad = sorted(set(d) - {f.name for f in dataclasses.fields(cls)})
    if bad:
        raise GanprintError(f"`config_file` {path}: unknown training options {bad}; give the config.json of a run "
                            "of the same trainer")
    try:
        return cls.from_dict(d) if hasattr(cls, "from_dict") else cls(**d)
    except (TypeError, ValueError) as e:
        raise GanprintError(f"`config_file` {path}: {str(e).strip()}") from None
