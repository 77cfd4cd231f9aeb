"""Every numeric flag of every command is bounded, and so is every numeric field of the configs behind them.

Data-driven: the tests walk the click tree and the config dataclasses, so a new flag or field without a bound fails
here until it gets one (ganprint.cli.params / ganprint.core.bounds) or an exemption below with its reason.
"""

from __future__ import annotations

import dataclasses
import math

import click
import pytest
from click.testing import CliRunner

from ganprint.artificial.config import TrainConfig
from ganprint.cli import main
from ganprint.cli.params import Jobs, Number, Seeds
from ganprint.core.bounds import Bound
from ganprint.core.errors import GanprintError
from ganprint.diffusion.config import DiffusionTrainConfig, NoiseConfig, UNetConfig
from ganprint.gan.config import GanTrainConfig
from ganprint.latent.autoencoder import AutoencoderConfig
from ganprint.latent.config import AutoencoderTrainConfig
from ganprint.scalable.config import ScalableTrainConfig
from ganprint.service.config import ServiceConfig

# Text flags, each with why it needs no number type: either it holds no number, or its numbers are parsed and
# bounded by the library parser named (cases in tests/test_faults.py).
TEXT_FLAGS = {
    "--device": "a device name", "--preset": "a preset name (checked against the presets)",
    "--fingerprint": "bits, checked against the model's length", "--data": "a path or URL checked by the reader",
    "--augment": "ops and strengths: perturb.registry.parse_strengths bounds each (cases *-augment-*)",
    "--attacks": "attacks and strengths: parse_strengths bounds each (cases evaluate-attacks-*)",
    "--model-attacks": "model attacks and strengths: parse_strengths bounds each (cases evaluate-model-attacks-*)",
    "--scale-search": "fractions: perturb.scale_search.parse_scales bounds them (cases *-scale-search-*)",
    "--baselines": "method names: evaluation.baselines.parse_baselines refuses others (tests/evaluation/test_baselines.py)",
    "--modulated-res": "a resolution range, checked against --resolution by nets.scalable.parse_res_range",
    "--registry": "a path or URL", "--name": "a name", "--who": "a name", "--notes": "free text",
    "--dataset": "a data set name in the registry (sign-c2pa: looked up, refused when unknown)",
    "--photos": "a photo set or folder", "--host": "an interface name", "--models-dir": "a path",
    "--cors-origin": "an origin", "registry": "a path or URL", "--inception": "a path", "name": "a name",
    "--adversary": "attacks and values: evaluation.adversary.parse_adversary bounds each (tests/evaluation/test_adversary.py)",
    "--defence": "a check and its value: evaluation.defence.make_defence bounds it (tests/evaluation/test_adversary.py)",
    "--expires": "a duration or date: registry.tokens.parse_expiry checks it (tests/service/test_tokens.py)",
}


def _commands(group: click.Group, path=()):
    for name, cmd in sorted(group.commands.items()):
        if isinstance(cmd, click.Group):
            yield from _commands(cmd, (*path, name))
        else:
            yield (*path, name), cmd


def _params():
    for path, cmd in _commands(main):
        for p in cmd.params:
            if not isinstance(p, click.Option) or not p.is_flag:
                yield path, p


def _flag(p: click.Parameter) -> str:
    return p.opts[0] if isinstance(p, click.Option) else p.name


def _bad_values(b: Bound) -> list[str]:
    """Values outside `b`: NaN, infinities, huge numbers, and the first ones past each end."""
    if b.integer:
        return ["nan", "inf", "2.5", str(10**30), str(-(10**30)), str(int(b.lo) - 1), str(int(b.hi) + 1)]
    below = b.lo if b.lo_open else b.lo - max(1.0, abs(b.lo))
    above = b.hi if b.hi_open else b.hi + max(1.0, abs(b.hi))
    return ["nan", "inf", "-inf", "1e308", "-1e308", repr(below), repr(above)]


NUMERIC = [pytest.param(path, p, id=f"{' '.join(path)} {_flag(p)}") for path, p in _params()
           if isinstance(p.type, Number)]


def test_every_flag_has_a_bounded_or_named_type():
    unbounded = []
    for path, p in _params():
        t = p.type
        if isinstance(t, (Number, Seeds, Jobs, click.Choice, click.Path, click.types.BoolParamType)):
            continue
        if isinstance(t, click.types.StringParamType) and _flag(p) in TEXT_FLAGS:
            continue
        unbounded.append(f"{' '.join(path)} {_flag(p)} ({t!r})")
    assert not unbounded, "flags without a bounded type (ganprint.cli.params) or a TEXT_FLAGS reason: " + \
        ", ".join(unbounded)
    assert len(NUMERIC) >= 100  # the walk found the numeric flags


@pytest.mark.parametrize("path,param", NUMERIC)
def test_numeric_flag_refuses_nan_inf_and_out_of_range(path, param):
    flag = _flag(param)
    runner = CliRunner()
    for value in _bad_values(param.type.bound):
        # The bad flag first: click checks the flags given in the order given, before missing required ones.
        is_arg = isinstance(param, click.Argument)  # positional: after '--', so that '-inf' is no option
        res = runner.invoke(main, [*path, "--", str(value)] if is_arg else [*path, f"{flag}={value}"])
        assert res.exit_code == 2 and "Traceback" not in res.output, (value, res.output)
        last = res.stderr.strip().splitlines()[-1]
        assert last.startswith("Error: Invalid value for '" if is_arg else f"Error: Invalid value for '{flag}'"), \
            (value, last)
        assert param.type.bound.describe() in last or "is not" in last, (value, last)


def _numeric_fields(cls):
    """The fields annotated int, float, or either of them | None."""
    for f in dataclasses.fields(cls):
        parts = {t.strip() for t in str(f.type).split("|")}
        if parts & {"int", "float"} and parts <= {"int", "float", "None"}:
            yield f.name


def _service():
    return ServiceConfig(scalable_decoder=__file__)  # validate() wants an existing file


CONFIGS = [(TrainConfig, TrainConfig), (GanTrainConfig, GanTrainConfig), (ScalableTrainConfig, ScalableTrainConfig),
           (DiffusionTrainConfig, DiffusionTrainConfig), (UNetConfig, UNetConfig), (NoiseConfig, NoiseConfig),
           (AutoencoderTrainConfig, AutoencoderTrainConfig), (AutoencoderConfig, AutoencoderConfig),
           (ServiceConfig, _service)]
# Numeric fields whose None is their meaning; every other value is still bounded.
NONE_OK = {"steps", "ema_rampup", "min_distance", "head_dim"}  # head_dim None: one head per level (diffusers)


@pytest.mark.parametrize("cls,make", CONFIGS, ids=[c.__name__ for c, _ in CONFIGS])
def test_every_numeric_config_field_is_bounded(cls, make):
    base = make()
    base.validate()
    fields = list(_numeric_fields(cls))
    assert fields
    for name in fields:
        bad = [float("nan"), float("inf"), -math.inf, 1e308, 10**30, -1, "1"]
        if name not in NONE_OK:
            bad.append(None)
        for value in bad:
            with pytest.raises((GanprintError, ValueError), match=name):
                dataclasses.replace(base, **{name: value}).validate()
