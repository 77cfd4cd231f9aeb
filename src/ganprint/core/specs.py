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

    @classmethod
    def of_call(cls: type[S], leading: dict[str, Any], spec: S | None = None, **kwargs: Any) -> S:
        """`of` for an API function whose first parameters may be given by position (`embed(model, data, outdir,
        ...)`): `leading` maps their names to the values given (None: not given); a spec passed in the first
        one's place is taken as `spec`."""
        items = list(leading.items())
        if items and isinstance(items[0][1], cls):
            if spec is not None:
                raise SpecError(f"pass one {cls.__name__}, not two")
            spec, items = items[0][1], items[1:]
        return cls.of(spec, **{k: v for k, v in items if v is not None}, **kwargs)

    def to_dict(self) -> dict[str, Any]:
        """The fields as plain values (paths as strings), e.g. for a run record or a JSON answer."""
        return {k: (str(v) if hasattr(v, "__fspath__") else v) for k, v in dataclasses.asdict(self).items()}
