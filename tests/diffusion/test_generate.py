"""Diffusion generation: each image a pure function of its seed, the public API and CLI, evaluate --generator."""

from __future__ import annotations

import json
import types

import numpy as np
import pytest
import torch
from click.testing import CliRunner

pytest.importorskip("diffusers")

import ganprint
from ganprint.cli import main
from ganprint.core.errors import GanprintError
from ganprint.core.images import read_image
from ganprint.diffusion.config import NoiseConfig
from ganprint.diffusion.generate import load_diffusion, sample_seeds
from ganprint.diffusion.model import make_scheduler


class FlatColourDenoiser(torch.nn.Module):
    """The exact noise prediction for a data set of one flat colour: every sampler must end on that colour."""

    def __init__(self, colour_u8, noise: NoiseConfig, resolution: int = 8):
        super().__init__()
        self.unused = torch.nn.Parameter(torch.zeros(1))  # gives the sampler a device and dtype
        self.alpha_bar = make_scheduler("ddpm", noise).alphas_cumprod
        self.colour = torch.tensor(colour_u8, dtype=torch.float64) / 127.5 - 1
        self.config = types.SimpleNamespace(sample_size=resolution, in_channels=3)

    def forward(self, x, t):
        a = self.alpha_bar[int(t)].to(x.dtype)
        x0 = self.colour.to(x.dtype)[None, :, None, None]
        return types.SimpleNamespace(sample=(x - a.sqrt() * x0) / (1 - a).sqrt())


@pytest.mark.parametrize("sampler", ["ddim", "ddpm", "dpm"])
def test_samplers_reach_the_data_with_the_exact_denoiser(sampler):
    noise = NoiseConfig()
    imgs = sample_seeds(FlatColourDenoiser((200, 40, 90), noise), noise, [0, 1], sampler, 20)
    assert imgs.shape == (2, 8, 8, 3)
    assert np.array_equal(imgs.reshape(-1, 3), np.tile([200, 40, 90], (128, 1)))


@pytest.mark.parametrize("sampler", ["ddim", "ddpm", "dpm"])
def test_images_depend_on_their_seed_only(tiny_diffusion_export, sampler):
    unet, noise, _ = load_diffusion(tiny_diffusion_export)
    seeds = [5, 0, 7, 123456789]
    batched = sample_seeds(unet, noise, seeds, sampler, 3, batch_size=4)
    single = sample_seeds(unet, noise, seeds, sampler, 3, batch_size=1)
    assert batched.dtype == np.uint8 and batched.shape == (4, 32, 32, 3)
    assert np.array_equal(batched, single)
    assert not np.array_equal(batched[0], batched[1])  # different seeds, different images
    alone = sample_seeds(unet, noise, [7], sampler, 3)
    assert np.array_equal(alone[0], batched[2])


def test_samplers_differ(tiny_diffusion_export):
    unet, noise, _ = load_diffusion(tiny_diffusion_export)
    ddim = sample_seeds(unet, noise, [1], "ddim", 3)
    assert not np.array_equal(ddim, sample_seeds(unet, noise, [1], "ddpm", 3))
    assert not np.array_equal(ddim, sample_seeds(unet, noise, [1], "ddim", 4))


def test_generate_files_match_across_batch_sizes(tmp_path, tiny_diffusion_export):
    a = ganprint.generate(tiny_diffusion_export, [0, 1, 2], tmp_path / "a", batch_size=3, device="cpu", steps=2,
                          grid=True)
    b = ganprint.generate(tiny_diffusion_export, [0, 1, 2], tmp_path / "b", batch_size=1, device="cpu", steps=2)
    assert [p.name for p in a] == [p.name for p in b] == ["seed000000.png", "seed000001.png", "seed000002.png"]
    assert all(np.array_equal(read_image(x), read_image(y)) for x, y in zip(a, b))
    assert (tmp_path / "a" / "grid.png").is_file()


def test_generate_cli_and_its_errors(tmp_path, tiny_diffusion_export):
    runner = CliRunner()
    ok = runner.invoke(main, ["generate", "--model", str(tiny_diffusion_export), "--seeds", "0-1", "--outdir",
                              str(tmp_path / "o"), "--sampler", "dpm", "--steps", "2", "--device", "cpu"])
    assert ok.exit_code == 0, ok.output
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == [".ganprint.json", "seed000000.png", "seed000001.png"]
    too_many = runner.invoke(main, ["generate", "--model", str(tiny_diffusion_export), "--outdir", str(tmp_path / "x"),
                                    "--steps", "5000"])
    assert too_many.exit_code == 1 and "--steps must be between 1 and the model's 1000" in too_many.output
    assert "Traceback" not in too_many.output
    bad = runner.invoke(main, ["generate", "--model", str(tiny_diffusion_export), "--outdir", str(tmp_path / "y"),
                               "--sampler", "euler"])
    assert bad.exit_code == 2 and "--sampler" in bad.output
    with pytest.raises(GanprintError, match="`trunc` is for GAN generators"):
        ganprint.generate(tiny_diffusion_export, [0], tmp_path / "z", trunc=0.5)
    drop = runner.invoke(main, ["generate", "--model", str(tiny_diffusion_export), "--outdir", str(tmp_path / "w"),
                                "--trunc", "0.5", "--fingerprint", "0x0f"])
    assert drop.exit_code == 1 and "--trunc, --fingerprint are for GAN generators" in drop.output


def test_sampler_flags_are_refused_for_other_models(tmp_path, tiny_stega_model):
    with pytest.raises(GanprintError, match="`steps` is for diffusion models"):
        ganprint.generate(tiny_stega_model, [0], tmp_path / "z", steps=10)


def test_train_generate_detect(tmp_path, sample_folder, tiny_stega_model, tiny_stega_decoder):
    """The whole path at toy scale: fingerprint the data, train on it, generate, detect (CLI commands)."""
    runner = CliRunner()

    def run(*args):
        res = runner.invoke(main, [str(a) for a in args])
        assert res.exit_code == 0, res.output
        return res

    run("embed", "--model", tiny_stega_model, "--data", sample_folder, "--outdir", tmp_path / "fp", "--identical",
        "--jobs", "1")
    bits = (tmp_path / "fp" / "embedded_fingerprints.txt").read_text().split()[1]
    run("train-diffusion", "--data", tmp_path / "fp" / "fingerprinted_images", "--outdir", tmp_path / "run",
        "--preset", "tiny-16", "--resolution", "16", "--kimg", "0.016", "--device", "cpu")
    model = tmp_path / "run" / "network-final.safetensors"
    run("generate", "--model", model, "--seeds", "0-3", "--outdir", tmp_path / "gen", "--steps", "3", "--grid")
    run("detect", "--model", tiny_stega_decoder, "--data", tmp_path / "gen", "--outdir", tmp_path / "det",
        "--fingerprint", bits, "--resolution", "32", "--jobs", "1", "--fpr", "0.01")
    rows = [json.loads(line) for line in (tmp_path / "det" / "detections.jsonl").read_text().splitlines()]
    # grid.png is ganprint's own output, not a sample (the folder's record says so): it is not detected
    assert sorted(r["name"] for r in rows) == [f"seed{s:06d}.png" for s in range(4)]
    assert all(0 <= r["bit_accuracy"] <= 1 for r in rows)


def test_evaluate_accepts_a_diffusion_generator(tmp_path, tiny_diffusion_export, tiny_stega_decoder):
    bits = "01" * 4
    out = ganprint.evaluate(tiny_stega_decoder, None, tmp_path / "ev", generator=tiny_diffusion_export, seeds="0",
                            fingerprint=bits, attacks="none", model_attacks="prune:0.5", device="cpu")
    rows = [json.loads(line) for line in (tmp_path / "ev" / "results.jsonl").read_text().splitlines()]
    assert {r["attack"] for r in rows} == {"none", "model:prune"} and out["images"] == 1
    with pytest.raises(GanprintError, match="give its `fingerprint`"):
        ganprint.evaluate(tiny_stega_decoder, None, tmp_path / "ev2", generator=tiny_diffusion_export, seeds="0",
                          device="cpu")
