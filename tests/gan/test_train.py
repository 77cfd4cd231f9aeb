"""StyleGAN2 training: config resolution, a few CPU steps end to end, resume equivalence, the CLI."""

import dataclasses
import json

import pytest
import torch
from click.testing import CliRunner

from ganprint.cli import main
from ganprint.core.artifacts import latest_training_state, load_export, load_training_state
from ganprint.core.errors import GanprintError
from ganprint.core.files import read_jsonl
from ganprint.gan.config import PRESETS, GanTrainConfig, resolve_config
from ganprint.gan.train import train_gan
from ganprint.nets.stylegan2 import DiscriminatorConfig, GeneratorConfig


def tiny_cfg(**kw) -> GanTrainConfig:
    """16 px, 8-16 channels, every phase (including lazy R1 and path length) runs within a few steps."""
    base = GanTrainConfig(
        preset="test",
        G=GeneratorConfig(img_resolution=16, z_dim=8, w_dim=8, mapping_layers=2, channel_base=128, channel_max=16),
        D=DiscriminatorConfig(img_resolution=16, channel_base=128, channel_max=16),
        batch_size=4, total_kimg=0.024, kimg_per_tick=0.008, snapshot_kimg=0.012, r1_interval=2, pl_interval=2,
        style_mixing_prob=0.5, grid_seeds=4, mirror=True, ema_kimg=0.01)
    return dataclasses.replace(base, **kw)


class TensorImages(torch.utils.data.Dataset):
    """Stand-in for ganprint.data: seeded uint8 images as {"img", "index"} items."""

    def __init__(self, n=12, res=16):
        g = torch.Generator().manual_seed(0)
        self.imgs = torch.randint(0, 256, (n, 3, res, res), generator=g, dtype=torch.uint8)

    def __len__(self):
        return len(self.imgs)

    def __getitem__(self, i):
        return {"img": self.imgs[i], "index": i}


def _state(outdir):
    return load_training_state(latest_training_state(outdir))


def test_config_round_trip_and_presets():
    for name, cfg in PRESETS.items():
        assert GanTrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg, name
    small = PRESETS["small"]
    assert small.resolution == 32 and small.G.mapping_layers == 2 and small.G.channel_max == 128
    assert resolve_config(None, 64).G.img_resolution == 64
    assert resolve_config("small", 32, total_kimg=3.0).total_kimg == 3.0
    with pytest.raises(GanprintError, match="`preset`"):
        resolve_config("nope", None)
    with pytest.raises(GanprintError, match="`resolution` 64"):
        resolve_config("small", 64)
    with pytest.raises(ValueError):
        GanTrainConfig.from_dict({"typo": 1})


def test_training_runs_and_writes_outputs(tmp_path):
    cfg = tiny_cfg()
    out = train_gan(cfg, tmp_path / "run", TensorImages(), device="cpu")
    assert out["cur_nimg"] == 24 and out["step"] == 6
    run = tmp_path / "run"
    for name in ("config.json", "log.txt", "stats.jsonl", "snapshots/reals.png", "snapshots/fakes-00000006.png",
                 "network-final.safetensors", "training-state-00000006.pt"):
        assert (run / name).is_file(), name
    rows = read_jsonl(run / "stats.jsonl")
    assert [(r["tick"], r["step"]) for r in rows] == [(1, 2), (2, 4), (3, 6)]
    assert {"loss/G", "loss/D", "loss/r1", "loss/pl", "sec_per_kimg"} <= set().union(*rows)
    G, cfg_d, meta = load_export(run / "network-final.safetensors", kind="stylegan2-G")
    assert cfg_d["img_resolution"] == 16 and float(meta["ganprint.train.kimg"]) == pytest.approx(0.024)
    # The generator actually moved away from its initialisation.
    st = _state(run)
    assert any(not torch.equal(st["G"][k], st["G_ema"][k]) for k in st["G"])


def test_resume_equals_uninterrupted(tmp_path):
    cfg = tiny_cfg()
    train_gan(cfg, tmp_path / "full", TensorImages(), device="cpu")
    # "Interrupted" after the first snapshot, then the same command re-run with the full length.
    train_gan(dataclasses.replace(cfg, total_kimg=0.012), tmp_path / "resumed", TensorImages(), device="cpu")
    assert _state(tmp_path / "resumed")["nimg"] == 12
    train_gan(cfg, tmp_path / "resumed", TensorImages(), device="cpu")
    a, b = _state(tmp_path / "full"), _state(tmp_path / "resumed")
    assert a["nimg"] == b["nimg"] == 24 and a["step"] == b["step"] == 6
    for part in ("G", "D", "G_ema"):
        for k in a[part]:
            torch.testing.assert_close(a[part][k], b[part][k], rtol=0, atol=0, msg=f"{part}.{k}")
    torch.testing.assert_close(a["pl_mean"]["value"], b["pl_mean"]["value"], rtol=0, atol=0)
    # Ticks fall on the kimg grid (every 8 images = 2 steps), resumed or not; step 3 ended the first run.
    assert [r["step"] for r in read_jsonl(tmp_path / "resumed" / "stats.jsonl")] == [2, 3, 4, 6]
    # A finished run re-run is a no-op.
    train_gan(cfg, tmp_path / "full", TensorImages(), device="cpu")
    assert _state(tmp_path / "full")["nimg"] == 24


def test_resume_refuses_a_different_architecture(tmp_path):
    train_gan(tiny_cfg(total_kimg=0.004), tmp_path / "run", TensorImages(), device="cpu")
    other = tiny_cfg(G=dataclasses.replace(tiny_cfg().G, z_dim=16))
    with pytest.raises(GanprintError, match=r"`outdir` .*G\.z_dim: 8 -> 16"):
        train_gan(other, tmp_path / "run", TensorImages(), device="cpu")


def test_wrong_resolution_data_is_a_clear_error(tmp_path):
    with pytest.raises(GanprintError, match="`resolution`"):
        train_gan(tiny_cfg(), tmp_path / "run", TensorImages(res=8), device="cpu")


def test_cli_train_gan_end_to_end(tmp_path):
    from PIL import Image

    data = tmp_path / "data"
    data.mkdir()
    g = torch.Generator().manual_seed(1)
    for i in range(8):
        arr = torch.randint(0, 256, (32, 32, 3), generator=g, dtype=torch.uint8).numpy()
        Image.fromarray(arr).save(data / f"{i}.png")
    out = tmp_path / "run"
    args = ["train-gan", "--data", str(data), "--resolution", "32", "--preset", "small", "--outdir", str(out),
            "--kimg", "0.004", "--batch-size", "2", "--tick-kimg", "0.002", "--snapshot-kimg", "0.004", "--seed", "3"]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    assert (out / "network-final.safetensors").is_file() and (out / "snapshots" / "fakes-00000002.png").is_file()
    assert "sec/kimg" in (out / "log.txt").read_text()
    assert json.loads((out / "config.json").read_text())["seed"] == 3
    # Bad input: a clear one-line error naming the flag.
    res = CliRunner().invoke(main, args[:3] + ["--resolution", "48", "--outdir", str(tmp_path / "x")])
    assert res.exit_code == 1 and "--preset" in res.output
    res = CliRunner().invoke(main, ["train-gan", "--data", str(tmp_path / "missing"), "--resolution", "32",
                                    "--preset", "small", "--outdir", str(tmp_path / "y")])
    assert res.exit_code == 1 and "missing" in res.output and "Traceback" not in res.output
