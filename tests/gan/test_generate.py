"""`ganprint generate`: seed parsing, per-seed determinism across batch sizes, round trip, scalable delegation."""


import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from ganprint.api import GenerateSpec, generate
from ganprint.cli import main
from ganprint.core.artifacts import save_export
from ganprint.core.errors import GanprintError
from ganprint.core.seeds import parse_seeds
from ganprint.gan.generate import generate_seeds
from ganprint.nets.stylegan2 import Generator, GeneratorConfig, generator_config_dict, seeded_inputs

CFG = GeneratorConfig(img_resolution=16, z_dim=8, w_dim=8, mapping_layers=2, channel_base=128, channel_max=16)


@pytest.fixture
def model_path(tmp_path):
    torch.manual_seed(0)
    G = Generator(CFG)
    with torch.no_grad():  # non-zero noise strengths so that the noise inputs matter
        for m in G.modules():
            if hasattr(m, "noise_strength"):
                m.noise_strength.fill_(0.5)
    return save_export(tmp_path / "G.safetensors", G, "stylegan2-G", generator_config_dict(CFG))


def test_parse_seeds():
    assert parse_seeds("0-3") == [0, 1, 2, 3]
    assert parse_seeds("0,5,7-9") == [0, 5, 7, 8, 9]
    assert parse_seeds(" 4, 2,2 ,3-4") == [4, 2, 3]
    for bad in ("", "a", "3-1", "1--2", "-1", "1.5"):
        with pytest.raises(GanprintError, match="`seeds`"):
            parse_seeds(bad)


def _read(folder, seeds):
    return np.stack([np.asarray(Image.open(folder / f"seed{s:06d}.png")) for s in seeds])


def test_images_are_a_function_of_the_seed_only(tmp_path, model_path):
    seeds = parse_seeds("0-15")
    generate(model_path, seeds, tmp_path / "b16", batch_size=16, device="cpu")
    generate(model_path, seeds, tmp_path / "b1", batch_size=1, device="cpu")
    generate(model_path, [9, 3], tmp_path / "sub", batch_size=2, device="cpu")
    a, b = _read(tmp_path / "b16", seeds), _read(tmp_path / "b1", seeds)
    assert a.shape == (16, 16, 16, 3)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(_read(tmp_path / "sub", [9, 3]), a[[9, 3]])
    assert not np.array_equal(a[0], a[1])


def test_export_load_round_trip_gives_identical_images(tmp_path, model_path):
    from ganprint.core.artifacts import load_export

    G, _, _ = load_export(model_path, kind="stylegan2-G")
    generate(model_path, [5, 6], tmp_path / "out", device="cpu")
    np.testing.assert_array_equal(_read(tmp_path / "out", [5, 6]), generate_seeds(G, [5, 6]))
    # And against a direct float32 forward pass of the same seeds (up to one level of rounding).
    z, noise = seeded_inputs(G, [5, 6])
    with torch.no_grad():
        levels = G(z, noise=noise).numpy().transpose(0, 2, 3, 1) * 127.5 + 127.5  # [-1, 1] -> 0..255, NHWC
    direct = np.rint(np.clip(levels, 0, 255)).astype(np.uint8)
    assert np.abs(direct.astype(int) - _read(tmp_path / "out", [5, 6]).astype(int)).max() <= 1


def test_cli_generate_grid_and_errors(tmp_path, model_path):
    res = CliRunner().invoke(main, ["generate", "--model", str(model_path), "--seeds", "0-3", "--outdir",
                                    str(tmp_path / "o"), "--grid", "--batch-size", "3", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == [
        ".ganprint.json", "grid.png", "seed000000.png", "seed000001.png", "seed000002.png", "seed000003.png"]
    assert Image.open(tmp_path / "o" / "grid.png").size == (32, 32)
    for flag in (["--fingerprint", "0101"], ["--identical-latent"], ["--identical-fingerprint"]):
        res = CliRunner().invoke(main, ["generate", "--model", str(model_path), "--outdir", str(tmp_path / "x")]
                                 + flag)
        assert res.exit_code == 1 and flag[0] in res.output and "scalable" in res.output
    res = CliRunner().invoke(main, ["generate", "--model", str(tmp_path / "nope.safetensors"), "--outdir",
                                    str(tmp_path / "x")])
    assert res.exit_code == 1 and "nope.safetensors" in res.output


def test_scalable_models_are_delegated(tmp_path, monkeypatch):
    from ganprint import api

    calls = []
    monkeypatch.setattr(api.scalable_generate, "generate", lambda spec: calls.append(spec) or [])
    path = save_export(tmp_path / "s.safetensors", torch.nn.Linear(2, 2), "scalable-G-issued", {})
    api.generate(path, [1, 2], tmp_path / "o", batch_size=4, grid=True, device="cpu", fingerprint="0x0f",
                 identical_latent=True)
    # The scalable generator receives the spec whole, as the keyword arguments made it.
    assert calls == [api.GenerateSpec(model=path, seeds=[1, 2], outdir=tmp_path / "o", batch_size=4, grid=True,
                                      device="cpu", fingerprint="0x0f", identical_latent=True)]


def test_generate_takes_a_spec_or_the_commands_keyword_names(tmp_path, model_path):
    from ganprint import api

    a = api.generate(model_path, [3], tmp_path / "a", device="cpu", trunc=0.7)  # the flag is --trunc
    b = api.generate(api.GenerateSpec(model=model_path, seeds=[3], outdir=tmp_path / "b", device="cpu", trunc=0.7))
    c = api.generate(model_path, [3], tmp_path / "c", device="cpu")
    assert np.array_equal(_read(tmp_path / "a", [3]), _read(tmp_path / "b", [3]))
    assert not np.array_equal(_read(tmp_path / "a", [3]), _read(tmp_path / "c", [3]))
    assert [p.name for p in a + b + c] == ["seed000003.png"] * 3
    with pytest.warns(DeprecationWarning, match="`psi` is the old name of `trunc`"):  # the older name, one release
        old = api.generate(model_path, [3], tmp_path / "d", device="cpu", psi=0.7)
    assert np.array_equal(_read(tmp_path / "d", [3]), _read(tmp_path / "a", [3])) and len(old) == 1
    with pytest.raises(GanprintError, match="`seeds` selects no seeds"):
        api.generate(model_path, [], tmp_path / "d")
    with pytest.raises(GanprintError, match="`precision` must be fp64 or fp32"):
        api.GenerateSpec(model=model_path, seeds=[1], outdir=tmp_path / "d", precision="fp16")


def test_precision_is_fp64_or_fp32_and_the_old_spellings_still_work(tmp_path, model_path, caplog):
    """generate spells its arithmetic as embed and detect do (fp64, fp32); float64 and float32 work for one release
    with a warning, give the same images, and the folder record keeps the old spelling so old folders resume."""
    import json

    base = ["generate", "--model", str(model_path), "--seeds", "1-2", "--device", "cpu"]
    new = CliRunner().invoke(main, [*base, "--outdir", str(tmp_path / "new"), "--precision", "fp32"])
    assert new.exit_code == 0 and "Warning" not in new.output, new.output
    old = CliRunner().invoke(main, [*base, "--outdir", str(tmp_path / "old"), "--precision", "float32"])
    assert old.exit_code == 0, old.output
    assert "--precision float32 is the old name of fp32" in old.output
    assert np.array_equal(_read(tmp_path / "new", [1, 2]), _read(tmp_path / "old", [1, 2]))
    record = json.loads((tmp_path / "new" / ".ganprint.json").read_text())
    assert record["identity"]["precision"] == "float32"
    assert "float32" not in CliRunner().invoke(main, ["generate", "--help"]).output
    spec = GenerateSpec(model=model_path, seeds=[1], outdir=tmp_path / "s", precision="float64")
    assert spec.precision == "fp64" and "`precision` float64 is the old name of fp64" in caplog.text
