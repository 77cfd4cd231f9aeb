"""What one command is asked to do, as one value: the base of `EmbedSpec`, `DetectSpec`, `EvaluateSpec`, ...

A spec is a frozen dataclass that checks itself when made, so every way in (the CLI, the Python API, a worker
process that receives it whole) refuses the same values with the same words. Its field names are the API's keyword
arguments and, with dashes, the CLI's flags; errors name fields in backticks (see `ganprint.cli.vocabulary`).
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

from ganprint.core.errors import GanprintError

S = TypeVar("S", bound="Spec")


class SpecError(GanprintError):
    """A spec that cannot be made: an unknown field, or a value or combination its `check` refuses."""


@dataclasses.dataclass(frozen=True)
class Spec:
    """Base of every command spec. Subclasses declare fields and override `check` (raise SpecError, name fields
    in backticks); `__post_init__` runs it, so a spec that exists is valid."""

    def __post_init__(self) -> None:
        self.check()

    def check(self) -> None:
        """Refuse impossible values and combinations; the default accepts everything."""

    @classmethod
    def of(cls: type[S], spec: S | None = None, **kwargs: Any) -> S:
        """`spec` itself, `spec` with `kwargs` replaced, or a new spec from `kwargs`: what an API function that
        takes 'a spec or the same keyword arguments' calls first. Unknown names are refused, listing the valid ones."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(kwargs) - names)
        if unknown:
            raise SpecError(f"{cls.__name__} has no field {', '.join(f'`{u}`' for u in unknown)}; its fields are "
                            f"{', '.join(sorted(names))}")
        if spec is None:
            return cls(**kwargs)
        if not isinstance(spec, cls):
            raise SpecError(f"expected a {cls.__name__}, got {type(spec).__name__}")
        return dataclasses.replace(spec, **kwargs) if kwargs else spec

    def to_dict(self) -> dict[str, Any]:
        """The fields as plain values (paths as strings), e.g. for a run record or a JSON answer."""
        return {k: (str(v) if hasattr(v, "__fspath__") else v) for k, v in dataclasses.asdict(self).items()}


def spec_of_call(cls: type[S], first: tuple[str, ...], args: tuple, spec: S | None, kwargs: dict[str, Any]) -> S:
    """The spec of an API call `f(*args, spec=None, **kwargs)`: a spec given first or as `spec`, the leading fields
    `first` given positionally (the older calling form, e.g. `detect(model, data, outdir, fpr=0.01)`), keyword
    arguments, or a mix; `cls.of` on all of it."""
    if args and isinstance(args[0], cls):
        if spec is not None:
            raise SpecError(f"pass one {cls.__name__}, not two")
        spec, args = args[0], args[1:]
    if len(args) > len(first):
        raise SpecError(f"{cls.__name__} takes at most {len(first)} fields positionally ({', '.join(first)}), "
                        f"got {len(args)} values")
    return cls.of(spec, **dict(zip(first, args)), **kwargs)
