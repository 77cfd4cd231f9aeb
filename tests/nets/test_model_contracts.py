"""Contracts that every model kind in the registry (`@register_kind`, ganprint.core.artifacts.BUILDERS) keeps.

The cases are the registry itself, so a kind registered without a tiny instance in `TINY` below fails here
(test_every_kind_has_a_contract_case). For each kind, on a tiny config:
- export -> load gives the same outputs on a fixed input (torch.equal), and the same tensors;
- the config stored in the export's metadata is the one given, and rebuilding from it gives the same tensor names
  and shapes;
- loading runs no code: no unpickling, marshalling, compiling or exec happens inside `load_export` (seen with a
  Python audit hook, the interpreter's own event stream), and the file is plain safetensors;
- every parameter gets a finite gradient from a simple loss on the outputs, except the names in `NO_GRADIENT`,
  each with its reason.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
import torch
from safetensors.torch import load_file

from ganprint.core.artifacts import BUILDERS, _ensure_builders_loaded, load_export, read_config, save_export

_ensure_builders_loaded()


def _noise(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def _bits(n: int, k: int, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, 2, (n, k), generator=torch.Generator().manual_seed(seed)).float()


@dataclass(frozen=True)
class Case:
    """A tiny instance of one kind: its export config and how to run it on a fixed input."""

    config: dict
    run: Callable[[torch.nn.Module], tuple[torch.Tensor, ...]]
    no_gradient: dict[str, str] = field(default_factory=dict)  # parameter-name regex -> why it gets no gradient
    needs: str | None = None  # an optional package the kind is built with (skipped where it is not installed)


_STEGA = {"resolution": 16, "fingerprint_length": 8, "channels": 3}
_SCALABLE = {"resolution": 8, "fingerprint_length": 8, "z_dim": 16, "w_dim": 16, "mapping_layers": 2,
             "mapping_lr_multiplier": 0.01, "channel_base": 128, "channel_max": 16, "modulated_res": [4, 8],
             "use_noise": True}


def _stega(m):
    return m(_bits(2, 8), _noise((2, 3, 16, 16)).sigmoid())


def _scalable_g(m):
    return (m(_noise((2, 16)), _bits(2, 8), noise_mode="const"),)


def _issued_g(m):
    return (m(_noise((2, 16)), noise_mode="const"),)


def _stylegan2_g(m):
    return (m(_noise((2, 16)), noise_mode="const"),)


def _diffusion(m):
    return (m(_noise((2, 3, 8, 8)), torch.tensor([3, 700])).sample,)


_AE = {"autoencoder": {"resolution": 8, "channels": [8, 8], "layers_per_block": 1, "latent_channels": 4,
                       "norm_groups": 4, "mid_attention": True, "scaling_factor": 0.18215}}
_MODULATION = {"fingerprint_length": 8, "w_dim": 8, "mapping_layers": 2, "layers": "all", "demodulate": True,
               "style_gain": 0.5}
_ENCODER_ONLY = "the encoder is not used to decode: the fingerprint modulates the decoder only"


def _autoencoder(m):
    return (m(_noise((2, 3, 8, 8)).tanh()).sample,)


def _modulated(m):
    return (m.decode(_noise((2, 4, 4, 4)), _bits(2, 8)),)


_UNET_NOISE = {"noise": {"timesteps": 1000, "beta_schedule": "linear", "beta_start": 1e-4, "beta_end": 0.02,
                         "prediction_type": "epsilon"}}


def _latent_diffusion(m):
    return (m.unet(_noise((2, 4, 4, 4)), torch.tensor([3, 700])).sample, *_autoencoder(m.autoencoder))


TINY: dict[str, Case] = {
    "stega": Case(_STEGA, _stega),
    "stega-decoder": Case(_STEGA, lambda m: (m.dec(_noise((2, 3, 16, 16)).sigmoid()),)),
    "scalable-G": Case(_SCALABLE, _scalable_g),
    "scalable-G-issued": Case(_SCALABLE, _issued_g),
    "scalable-decoder": Case(_SCALABLE, lambda m: m(_noise((2, 3, 8, 8)).tanh())),
    "stylegan2-G": Case({"img_resolution": 8, "img_channels": 3, "z_dim": 16, "w_dim": 16, "mapping_layers": 2,
                         "mapping_lr_multiplier": 0.01, "channel_base": 128, "channel_max": 16, "use_noise": True},
                        _stylegan2_g),
    "diffusion-unet": Case({"unet": {"resolution": 8, "channels": [8, 16], "attention": [False, True],
                                     "layers_per_block": 1, "dropout": 0.0, "norm_groups": 4, "head_dim": 8},
                            "noise": {"timesteps": 1000, "beta_schedule": "linear", "beta_start": 1e-4,
                                      "beta_end": 0.02, "prediction_type": "epsilon"}}, _diffusion,
                            needs="diffusers"),
    "latent-autoencoder": Case(_AE, _autoencoder, needs="diffusers"),
    "latent-autoencoder-issued": Case(_AE, _autoencoder, needs="diffusers"),
    "latent-diffusion": Case({"unet": {"resolution": 4, "in_channels": 4, "channels": [8, 16],
                                       "attention": [False, True], "layers_per_block": 1, "dropout": 0.0,
                                       "norm_groups": 4, "head_dim": 8}, **_UNET_NOISE, **_AE}, _latent_diffusion,
                             needs="diffusers"),
    "latent-modulated": Case({**_AE, "modulation": _MODULATION}, _modulated,
                             {r"^autoencoder\.(encoder|quant_conv)\.": _ENCODER_ONLY}, needs="diffusers"),
}

KINDS = sorted(BUILDERS)

# Audit events that mean code or pickled objects are being loaded.
_CODE_EVENTS = {"pickle.find_class", "marshal.loads", "marshal.load", "compile", "exec", "import"}
_seen: list[str] | None = None


def _audit(event: str, args) -> None:
    if _seen is not None and event in _CODE_EVENTS:
        _seen.append(f"{event} {args[0]!r:.80}" if args else event)


sys.addaudithook(_audit)  # audit hooks cannot be removed; this one records only while _seen is a list


def _build(kind: str) -> torch.nn.Module:
    if TINY[kind].needs:
        pytest.importorskip(TINY[kind].needs)
    torch.manual_seed(0)
    return BUILDERS[kind](json.loads(json.dumps(TINY[kind].config))).eval()


def _exported(kind: str, tmp_path) -> tuple[torch.nn.Module, object]:
    model = _build(kind)
    with torch.no_grad():  # perturb every tensor so that no zero-initialised weight hides a loading mistake
        for t in model.state_dict().values():
            if t.is_floating_point():
                t.add_(_noise(tuple(t.shape), seed=7) * 0.01)
    path = save_export(tmp_path / f"{kind}.safetensors", model, kind, TINY[kind].config)
    return model, path


def test_every_kind_has_a_contract_case():
    assert len(KINDS) >= 7 and {"stega", "scalable-G", "stylegan2-G"} <= set(KINDS)
    missing = sorted(set(KINDS) - set(TINY))
    stale = sorted(set(TINY) - set(KINDS))
    assert not missing, f"give these registered kinds a tiny Case in TINY ({__file__}): {missing}"
    assert not stale, f"these kinds are no longer registered; remove them from TINY: {stale}"


@pytest.mark.parametrize("kind", KINDS)
def test_export_then_load_gives_identical_outputs(kind, tmp_path):
    model, path = _exported(kind, tmp_path)
    global _seen
    _seen = []
    try:
        loaded, config, meta = load_export(path, kind=kind)
    finally:
        seen, _seen = _seen, None
    assert not seen, f"loading a {kind} export ran code: {seen[:5]}"
    assert meta["ganprint.kind"] == kind and not loaded.training
    with torch.no_grad():
        want, got = TINY[kind].run(model), TINY[kind].run(loaded)
    assert len(want) == len(got) and all(torch.equal(a, b) for a, b in zip(want, got))
    saved = load_file(str(path))
    assert saved.keys() == loaded.state_dict().keys()
    assert all(torch.equal(saved[k], v) for k, v in loaded.state_dict().items())


@pytest.mark.parametrize("kind", KINDS)
def test_the_config_round_trips_through_the_metadata(kind, tmp_path):
    _, path = _exported(kind, tmp_path)
    assert read_config(path) == TINY[kind].config
    with path.open("rb") as f:  # plain safetensors: an 8-byte header length, then a JSON header
        size = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(size))
    assert json.loads(header["__metadata__"]["ganprint.config"]) == TINY[kind].config
    rebuilt = BUILDERS[kind](read_config(path)).state_dict()
    assert {k: v.shape for k, v in rebuilt.items()} == {k: v.shape for k, v in _build(kind).state_dict().items()}


def _gradient_problems(model: torch.nn.Module, outputs: tuple[torch.Tensor, ...], exempt: dict[str, str]) -> list[str]:
    """Parameters without a finite gradient from a simple loss on `outputs`, and exemptions that match nothing."""
    sum(out.float().square().mean() for out in outputs).backward()
    problems = []
    for name, p in model.named_parameters():
        if any(re.search(pattern, name) for pattern in exempt):
            continue
        if p.grad is None:
            problems.append(f"no gradient reaches {name}")
        elif not bool(torch.isfinite(p.grad).all()):
            problems.append(f"the gradient of {name} is not finite")
    problems += [f"stale exemption {pattern}" for pattern in exempt
                 if not any(re.search(pattern, n) for n, _ in model.named_parameters())]
    return problems


@pytest.mark.parametrize("kind", KINDS)
def test_every_parameter_gets_a_finite_gradient(kind):
    model = _build(kind).train()
    problems = _gradient_problems(model, TINY[kind].run(model), TINY[kind].no_gradient)
    assert not problems, f"{kind}: {problems[:6]}; fix the model, or exempt a name in TINY with its reason"


def test_the_checks_see_a_broken_model(tmp_path):
    # An unused parameter, a NaN one and a stale exemption are each reported ...
    model = torch.nn.Module()
    model.used, model.unused, model.nan = (torch.nn.Parameter(torch.ones(2)) for _ in range(3))
    with torch.no_grad():
        model.nan.fill_(float("nan"))
    problems = _gradient_problems(model, (model.used * 2, model.nan * 0), {"^gone$": "removed"})
    assert problems == ["no gradient reaches unused", "the gradient of nan is not finite", "stale exemption ^gone$"]
    # ... and the audit hook sees unpickling, which `load_export` must never do.
    torch.save({"a": torch.ones(1)}, tmp_path / "state.pt")
    global _seen
    _seen = []
    try:
        torch.load(tmp_path / "state.pt", weights_only=False)
    finally:
        seen, _seen = _seen, None
    assert any(s.startswith("pickle.find_class") for s in seen)
