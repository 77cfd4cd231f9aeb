"""The spec base: checks on creation, refuses unknown fields by name, replaces fields."""

from __future__ import annotations

import dataclasses

import pytest

from ganprint.core.specs import Spec, SpecError, spec_of_call


@dataclasses.dataclass(frozen=True)
class _Demo(Spec):
    batch_size: int = 4

    def check(self) -> None:
        if self.batch_size < 1:
            raise SpecError(f"`batch_size` must be >= 1, got {self.batch_size}")


def test_a_spec_checks_itself_and_refuses_unknown_fields():
    with pytest.raises(SpecError, match="`batch_size` must be >= 1"):
        _Demo(batch_size=0)
    with pytest.raises(SpecError, match="no field `bath_size`; its fields are batch_size"):
        _Demo.of(bath_size=3)


def test_of_takes_a_spec_or_keywords():
    s = _Demo.of(batch_size=2)
    assert _Demo.of(s) is s and _Demo.of(s, batch_size=5).batch_size == 5
    with pytest.raises(SpecError, match="`batch_size`"):
        _Demo.of(s, batch_size=-1)
    assert s.to_dict() == {"batch_size": 2}


@dataclasses.dataclass(frozen=True)
class _Call(Spec):
    model: str = ""
    batch_size: int = 4


def test_a_call_takes_leading_positional_values_or_a_spec_in_their_place():
    assert spec_of_call(_Call, ("model",), ("m",), None, {"batch_size": 2}) == _Call(model="m", batch_size=2)
    assert spec_of_call(_Call, ("model",), (), None, {"batch_size": 2}) == _Call(batch_size=2)
    s = _Call(model="m")
    assert spec_of_call(_Call, ("model",), (s,), None, {"batch_size": 3}) == _Call(model="m", batch_size=3)
    with pytest.raises(SpecError, match="not two"):
        spec_of_call(_Call, ("model",), (s,), s, {})
    with pytest.raises(SpecError, match="at most 1 fields positionally"):
        spec_of_call(_Call, ("model",), ("m", 4), None, {})
