"""diffusers in and out: fine-tune a UNet2DModel saved by diffusers, export a pipeline folder diffusers loads back."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

diffusers = pytest.importorskip("diffusers")

import ganprint
from ganprint.cli import main
from ganprint.core.errors import GanprintError
from ganprint.core.files import sha256_file
from ganprint.core.images import read_image
from ganprint.core.stats import match_threshold, p_value
from ganprint.diffusion.diffusers_folder import export_diffusers, read_diffusers
from ganprint.diffusion.generate import load_diffusion
from ganprint.diffusion.train import resolve_run_config, train_diffusion

# The settings of the DDPM ports (google/ddpm-*), which differ from diffusers' defaults, at a test size.
DDPM_STYLE = dict(flip_sin_to_cos=False, freq_shift=1, downsample_padding=0, norm_eps=1e-6, attention_head_dim=None)


def tiny_unet(resolution: int = 32, **kw):
    torch.manual_seed(0)
    args = dict(sample_size=resolution, block_out_channels=(32, 32), layers_per_block=1,
                down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
                **DDPM_STYLE)
    return diffusers.UNet2DModel(**{**args, **kw})


def run(*args):
    res = CliRunner().invoke(main, [str(a) for a in args])
    assert res.exit_code == 0, res.output
    return res


@pytest.fixture(scope="module")
def fingerprinted(tmp_path_factory, sample_folder, tiny_stega_model):
    """The sample crops with one fingerprint embedded (32 px), and its bits."""
    out = tmp_path_factory.mktemp("fp") / "fp"
    run("embed", "--model", tiny_stega_model, "--data", sample_folder, "--outdir", out, "--identical", "--jobs", "1")
    return out / "fingerprinted_images", (out / "embedded_fingerprints.txt").read_text().split()[1]


def test_a_save_pretrained_unet_is_fine_tuned_and_exported(tmp_path, fingerprinted):
    released = tmp_path / "released"
    tiny_unet().save_pretrained(released)
    data, _ = fingerprinted
    # --preset tiny-16 is a 16-px preset: without --resolution the model's 32 px are taken.
    run("train-diffusion", "--data", data, "--outdir", tmp_path / "ft", "--preset", "tiny-16", "--kimg", "0.016",
        "--resume-from", released, "--device", "cpu")
    start = load_file(released / "diffusion_pytorch_model.safetensors")
    tuned = load_file(tmp_path / "ft" / "network-final.safetensors")
    assert start.keys() == tuned.keys() and any(not torch.equal(start[k], tuned[k]) for k in start)
    unet, _, _ = load_diffusion(tmp_path / "ft" / "network-final.safetensors")
    for key, value in DDPM_STYLE.items():  # the released architecture, not the preset's
        assert unet.config[key] == value, key
    recorded = json.loads((tmp_path / "ft" / "config.json").read_text())
    assert recorded["resume_from"] == str(released) and recorded["unet"]["resolution"] == 32
    assert recorded["unet"]["channels"] == [32, 32] and recorded["unet"]["head_dim"] is None


def test_the_start_is_the_released_model_itself(tmp_path, sample_folder):
    # Zero kimg: the run's export is the folder's UNet, and it computes what diffusers' own loading computes.
    released = tmp_path / "released"
    tiny_unet(16).save_pretrained(released)
    cfg = resolve_run_config("tiny-16", None, released, total_kimg=0.0, grid_seeds=0)
    train_diffusion(cfg, tmp_path / "ft0", ganprint_data(sample_folder, 16), device="cpu", resume_from=released)
    ours, _, _ = load_diffusion(tmp_path / "ft0" / "network-final.safetensors")
    theirs = diffusers.UNet2DModel.from_pretrained(released).eval()
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(ours(x, 10).sample, theirs(x, 10).sample)


def ganprint_data(folder, resolution):
    from ganprint.data.folders import open_image_dataset

    return open_image_dataset(folder, resolution)


def test_a_pipeline_folder_gives_its_scheduler_and_the_resolution_must_agree(tmp_path):
    pipe = tmp_path / "pipe"
    sched = diffusers.DDPMScheduler(num_train_timesteps=500, beta_end=0.03, prediction_type="v_prediction")
    diffusers.DDPMPipeline(unet=tiny_unet(64), scheduler=sched).save_pretrained(pipe)
    cfg = resolve_run_config("cpu-32", None, pipe)
    assert cfg.resolution == 64 and cfg.unet.channels == (32, 32)
    assert (cfg.noise.timesteps, cfg.noise.beta_end, cfg.noise.prediction_type) == (500, 0.03, "v_prediction")
    res = CliRunner().invoke(main, ["train-diffusion", "--data", str(tmp_path / "data"), "--outdir", str(tmp_path / "o"),
                                    "--resume-from", str(pipe), "--resolution", "32", "--dry-run"])
    assert res.exit_code == 1 and "--resume-from" in res.output and "is a 64-px model" in res.output
    assert "give --resolution 64 (or leave it out)" in res.output and "Traceback" not in res.output
    ok = run("train-diffusion", "--data", tmp_path / "data", "--outdir", tmp_path / "o", "--resume-from", pipe, "--dry-run")
    assert json.loads(ok.output)["unet"]["resolution"] == 64


class _Trap:
    """Unpickling this writes a file: proof that a pickle was (or was not) loaded."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_folders_ganprint_does_not_train_are_refused_by_name(tmp_path):
    cases = {}
    pickled = tmp_path / "pickled"
    tiny_unet().save_pretrained(pickled)
    (pickled / "diffusion_pytorch_model.safetensors").unlink()
    (pickled / "diffusion_pytorch_model.bin").write_bytes(pickle.dumps(_Trap(tmp_path / "ran")))
    cases[pickled] = "holds its weights only as diffusion_pytorch_model.bin, a pickle"
    for name, kw, needle in (("classes", dict(num_class_embeds=4), "sets `num_class_embeds` to 4"),
                             ("gelu", dict(act_fn="gelu"), "sets `act_fn` to 'gelu'"),
                             ("skip", dict(down_block_types=("SkipDownBlock2D", "AttnSkipDownBlock2D"),
                                           up_block_types=("AttnSkipUpBlock2D", "SkipUpBlock2D")),
                              "sets `down_block_types`"),
                             ("grey", dict(in_channels=1, out_channels=1), "sets `in_channels` to 1")):
        tiny_unet(**kw).save_pretrained(tmp_path / name)
        cases[tmp_path / name] = needle
    diffusers.DDPMScheduler().save_pretrained(tmp_path / "sched")
    cases[tmp_path / "sched"] = "is a scheduler folder; give the pipeline folder that holds it, or its unet/"
    diffusers.ScoreSdeVePipeline(unet=tiny_unet(), scheduler=diffusers.ScoreSdeVeScheduler()).save_pretrained(
        tmp_path / "sde")
    cases[tmp_path / "sde"] = "is a ScoreSdeVeScheduler without a beta schedule"
    (tmp_path / "empty").mkdir()
    cases[tmp_path / "empty"] = "holds no config.json"
    index = tmp_path / "sd" / "model_index.json"
    index.parent.mkdir()
    index.write_text(json.dumps({"_class_name": "StableDiffusionPipeline", "unet": ["diffusers",
                                                                                   "UNet2DConditionModel"]}))
    cases[index.parent] = "is a pipeline whose `unet` is ['diffusers', 'UNet2DConditionModel']"
    for folder, needle in cases.items():
        with pytest.raises(GanprintError, match=None) as e:
            read_diffusers(folder)
        assert needle in str(e.value) and f"`resume_from` {folder}" in str(e.value), (folder, str(e.value))
    assert not (tmp_path / "ran").exists()  # the pickle was never loaded
    res = CliRunner().invoke(main, ["train-diffusion", "--data", str(tmp_path / "data"), "--outdir",
                                    str(tmp_path / "o"), "--resume-from", str(pickled)])
    assert res.exit_code == 1 and f"--resume-from {pickled}" in res.output and "Traceback" not in res.output


def test_export_loads_in_diffusers_and_generates_the_same_images(tmp_path, tiny_diffusion_export,
                                                                 tiny_stega_decoder):
    hub = tmp_path / "hub"
    run("export-diffusers", "--model", tiny_diffusion_export, "--decoder", tiny_stega_decoder, "--fpr", "0.01", hub)
    assert sorted(p.name for p in hub.iterdir()) == ["README.md", "model_index.json", "scheduler", "unet"]
    seeds, steps = [0, 3], 3
    # fp32 and batch 1: the precision and batch the pipelines run in, so the same float operations in the same order.
    for sampler, cls in (("ddpm", diffusers.DDPMPipeline), ("ddim", diffusers.DDIMPipeline)):
        paths = ganprint.generate(tiny_diffusion_export, seeds, tmp_path / sampler, sampler=sampler, steps=steps,
                                  precision="fp32", batch_size=1, device="cpu")
        pipe = cls.from_pretrained(hub)
        for seed, path in zip(seeds, paths):
            theirs = pipe(batch_size=1, generator=torch.Generator().manual_seed(seed), num_inference_steps=steps,
                          output_type="np").images[0]
            # Within one level, not bitwise: from_pretrained's UNet holds the same weights (compared) but its
            # outputs differ from ganprint's by ~1e-6 (CPU kernels summing in another order), which the sampler
            # carries along; a pixel near a rounding edge then lands one level apart.
            diff = np.abs(read_image(path).astype(int) - np.round(theirs * 255).astype(int))
            assert diff.max() <= 1 and (diff == 0).mean() > 0.98, (sampler, seed, diff.max(), (diff == 0).mean())
    again, _, _ = read_diffusers(hub)  # and back in: the exported pipeline is a --resume-from folder
    src, _, _ = load_diffusion(tiny_diffusion_export)
    assert all(torch.equal(a, b) for a, b in zip(src.state_dict().values(), again.state_dict().values()))


def test_the_model_card_states_the_fingerprint_and_how_it_is_detected(tmp_path, tiny_diffusion_export,
                                                                      tiny_stega_decoder):
    hub = export_diffusers(tiny_diffusion_export, tmp_path / "hub", tiny_stega_decoder, fpr=0.01)
    card = (hub / "README.md").read_text()
    front = card.split("---\n")[1]
    assert "library_name: diffusers" in front and "- ganprint" in front and "- diffusers:DDPMPipeline" in front
    m = match_threshold(8, 0.01)
    assert m == 8  # 8 bits: P[X >= 7] = 9/256 > 0.01 >= P[X >= 8] = 1/256
    assert "| fingerprint length | 8 bits |" in card
    assert f"sha256 `{sha256_file(tiny_stega_decoder)}`" in card
    assert f"at least **{m} of 8** bits matching" in card and f"p = {p_value(m, 8):.3g}" in card
    assert f"sha256 `{sha256_file(tiny_diffusion_export)}`" in card and "0.016 kimg" in card
    assert 'ganprint.detect("stega32-decoder.safetensors", "images/", "det/", fingerprint="BITS", fpr=0.01)' in card


def test_export_is_atomic_and_replaces_a_folder_only_when_asked(tmp_path, tiny_diffusion_export,
                                                                 tiny_stega_decoder, tiny_stega_model):
    hub = tmp_path / "hub"
    hub.mkdir()
    (hub / "mine.txt").write_text("keep")
    with pytest.raises(GanprintError, match="already holds files .* add `overwrite`"):
        export_diffusers(tiny_diffusion_export, hub, tiny_stega_decoder, fpr=0.01)
    assert [p.name for p in hub.iterdir()] == ["mine.txt"]
    with pytest.raises(GanprintError, match=r"`fpr` 1e-06 is too small for 8 bits"):
        export_diffusers(tiny_diffusion_export, tmp_path / "new", tiny_stega_decoder)
    with pytest.raises(GanprintError, match="`decoder` .* holds a 'diffusion-unet' model"):
        export_diffusers(tiny_diffusion_export, tmp_path / "new", tiny_diffusion_export, fpr=0.01)
    assert not (tmp_path / "new").exists()
    export_diffusers(tiny_diffusion_export, hub, tiny_stega_decoder, fpr=0.01, overwrite=True)
    assert (hub / "model_index.json").is_file() and not (hub / "mine.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hub"]  # no temporary folder left beside it
    res = CliRunner().invoke(main, ["export-diffusers", "--model", str(tiny_diffusion_export), "--decoder",
                                    str(tiny_stega_model), "--fpr", "0.01", str(hub)])
    assert res.exit_code == 1 and "--overwrite" in res.output and "Traceback" not in res.output
