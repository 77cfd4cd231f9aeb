"""End-to-end CPU tests of `ganprint train`: outputs, resume equivalence, config checks, bad flags."""

import json

import pytest
import torch
from click.testing import CliRunner

from ganprint.artificial.config import PRESETS, TrainConfig, resolve_config
from ganprint.artificial.train import L2Schedule, train_stega
from ganprint.cli import main
from ganprint.core.artifacts import latest_training_state, load_export, load_training_state
from ganprint.core.errors import GanprintError
from ganprint.core.files import read_jsonl

R, K = 16, 8


class DictDataset(torch.utils.data.Dataset):
    """Items shaped like ganprint.data's: {"img": uint8 [3, R, R], "index": i}."""

    def __init__(self, n=24, r=R, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.imgs = torch.randint(0, 256, (n, 3, r, r), generator=g, dtype=torch.uint8)

    def __len__(self):
        return len(self.imgs)

    def __getitem__(self, i):
        return {"img": self.imgs[i], "index": i}


def tiny_cfg(**kw):
    base = dict(resolution=R, fingerprint_length=K, batch_size=4, steps=4, lr=1e-3, init="he", identity_warmup=1,
                l2_schedule="psnr", l2_threshold=0.0, l2_await=0, l2_weight=1.0)
    base.update(kw)
    return TrainConfig(**base).validate()


def params(path):
    model, _, _ = load_export(path, kind="stega")
    return model.state_dict()


def test_steps_write_all_outputs(tmp_path):
    out = tmp_path / "run"
    final = train_stega(tiny_cfg(), out, data=DictDataset(), device="cpu", snapshot_every=2, checkpoint_every=2,
                        log_every=2, progress=False)
    assert final == out / "model.safetensors"
    assert json.loads((out / "config.json").read_text())["fingerprint_length"] == K
    rows = read_jsonl(out / "stats.jsonl")
    assert [r["step"] for r in rows] == [2, 4]
    for key in ("loss", "bce", "l2", "l2_weight", "bit_acc", "psnr", "lr", "images_per_s"):
        assert key in rows[-1]
    assert (out / "snapshots" / "00000002.png").is_file() and (out / "snapshots" / "00000004.png").is_file()
    assert (out / "export-00000002.safetensors").is_file()
    assert latest_training_state(out).name == "training-state-00000004.pt"
    _, cfg, meta = load_export(out / "model.safetensors", kind="stega")
    assert cfg == {"resolution": R, "fingerprint_length": K, "channels": 3}
    assert meta["ganprint.step"] == "4"
    dec, _, _ = load_export(out / "model-decoder.safetensors", kind="stega-decoder")
    assert set(dec.state_dict()) == {k for k in params(final) if k.startswith("dec.")}


def test_resume_equals_uninterrupted(tmp_path):
    data = DictDataset()
    train_stega(tiny_cfg(steps=4), tmp_path / "a", data=data, device="cpu", checkpoint_every=0, progress=False)
    # Interrupted after 2 steps (the callback stops the run, which saves its state), then the same call resumes.
    train_stega(tiny_cfg(steps=4), tmp_path / "b", data=data, device="cpu", checkpoint_every=0, log_every=2,
                progress=False, callback=lambda step, model: step == 2)
    assert latest_training_state(tmp_path / "b").name == "training-state-00000002.pt"
    train_stega(tiny_cfg(steps=4), tmp_path / "b", data=data, device="cpu", checkpoint_every=0, progress=False)
    pa, pb = params(tmp_path / "a" / "model.safetensors"), params(tmp_path / "b" / "model.safetensors")
    for k in pa:
        assert torch.equal(pa[k], pb[k]), k
    sa = load_training_state(latest_training_state(tmp_path / "a"))
    sb = load_training_state(latest_training_state(tmp_path / "b"))
    assert sa["sched"] == sb["sched"] and sa["step"] == sb["step"] == 4


def test_rerun_of_a_finished_run_is_a_no_op_and_other_config_is_refused(tmp_path):
    data = DictDataset()
    train_stega(tiny_cfg(steps=2), tmp_path, data=data, device="cpu", progress=False)
    before = params(tmp_path / "model.safetensors")
    train_stega(tiny_cfg(steps=2), tmp_path, data=data, device="cpu", progress=False)
    after = params(tmp_path / "model.safetensors")
    assert all(torch.equal(before[k], after[k]) for k in before)
    with pytest.raises(GanprintError, match="different config.*lr"):
        train_stega(tiny_cfg(steps=2, lr=5e-4), tmp_path, data=data, device="cpu", progress=False)


def test_gated_schedule_matches_the_original():
    s = L2Schedule(TrainConfig())  # threshold 0.9, await 1000, ramp 3000, weight 10
    s.update(0.85, 0.01)
    assert s.since == -1 and s.weight() == 0
    s.update(0.95, 0.01)
    assert s.since == 0
    for _ in range(1000 + 1500):
        s.update(0.95, 0.01)
    assert s.weight() == pytest.approx(5.0)


def test_psnr_schedule_steers_toward_target():
    s = L2Schedule(TrainConfig(l2_schedule="psnr", l2_threshold=0.0, l2_await=0, l2_weight=1.0, target_psnr=30))
    s.update(0.99, 1e-2)  # opens the gate
    w0 = s.weight()
    s.update(0.99, 1e-2)  # 20 dB < 30 dB: more image loss
    assert s.weight() > w0
    w1 = s.weight()
    s.update(0.99, 1e-4)  # 40 dB > 30 dB: less
    assert s.weight() < w1
    w2 = s.weight()
    s.update(0.6, 1e-2)  # bits below the floor come first, even at low PSNR
    assert s.weight() < w2


def test_presets_and_overrides():
    assert resolve_config("agf-original") == TrainConfig()
    cfg = resolve_config("demo-32", lr=1e-3, seed=None)
    assert cfg.lr == 1e-3 and cfg.fingerprint_length == PRESETS["demo-32"].fingerprint_length
    assert resolve_config("demo-32", epochs=3).steps is None  # an explicit --epochs beats the preset's steps
    with pytest.raises(GanprintError, match="`preset`"):
        resolve_config("nope")


def test_cli_bad_flags(tmp_path):
    runner = CliRunner()
    r = runner.invoke(main, ["train", "--data", str(tmp_path), "--outdir", str(tmp_path / "o"), "--resolution", "48"])
    assert r.exit_code == 1 and "--resolution must be a power of two" in r.output
    r = runner.invoke(main, ["train", "--data", str(tmp_path / "missing"), "--outdir", str(tmp_path / "o"),
                             "--resolution", "32"])
    assert r.exit_code == 1 and "--data" in r.output and "does not exist" in r.output
    r = runner.invoke(main, ["train", "--outdir", str(tmp_path / "o")])
    assert r.exit_code == 1 and "--data" in r.output
    r = runner.invoke(main, ["train", "--outdir", str(tmp_path / "o"), "--preset", "demo-32", "--lr", "0.01",
                             "--dry-run"])
    assert r.exit_code == 0 and json.loads(r.output)["lr"] == 0.01
    assert not (tmp_path / "o").exists()


def test_augment_changes_training_and_logs_the_perturbed_read(tmp_path):
    data = DictDataset()
    train_stega(tiny_cfg(steps=2, augment="noise"), tmp_path / "aug", data=data, device="cpu", log_every=1,
                progress=False)
    train_stega(tiny_cfg(steps=2), tmp_path / "plain", data=data, device="cpu", log_every=1, progress=False)
    assert json.loads((tmp_path / "aug" / "config.json").read_text())["augment"] == "noise"
    rows = read_jsonl(tmp_path / "aug" / "stats.jsonl")
    assert all(0 <= r["bit_acc_augmented"] <= 1 for r in rows)
    assert "bit_acc_augmented" not in read_jsonl(tmp_path / "plain" / "stats.jsonl")[-1]
    a, b = params(tmp_path / "aug" / "model.safetensors"), params(tmp_path / "plain" / "model.safetensors")
    assert any(not torch.equal(a[k], b[k]) for k in a if k.startswith("dec."))  # the decoder read perturbed copies
    with pytest.raises(GanprintError, match="nosie"):
        train_stega(tiny_cfg(steps=2, augment="nosie"), tmp_path / "bad", data=data, device="cpu", progress=False)
    assert not (tmp_path / "bad").exists()


def test_decoder_polish_freezes_encoder_and_trains_decoder(tmp_path):
    # Steps 3-4 are polish: the encoder must not move while the decoder does.
    cfg = tiny_cfg(steps=4, decoder_polish=2)
    train_stega(cfg, tmp_path / "a", data=DictDataset(), device="cpu", checkpoint_every=2, log_every=2,
                progress=False)
    mid = params(tmp_path / "a" / "export-00000002.safetensors")
    end = params(tmp_path / "a" / "model.safetensors")
    for k in mid:
        if k.startswith("enc."):
            assert torch.equal(mid[k], end[k]), k
    assert any(not torch.equal(mid[k], end[k]) for k in mid if k.startswith("dec."))


def test_cosine_lr_anneals_each_phase():
    from ganprint.artificial.config import TrainConfig
    from ganprint.artificial.train import lr_at

    cfg = TrainConfig(lr=1e-3, lr_schedule="cosine", lr_min_ratio=0.1, decoder_polish=10)
    lrs = [lr_at(cfg, s, 110) for s in range(110)]
    assert lrs[0] == pytest.approx(1e-3) and lrs[99] == pytest.approx(1e-4)  # main phase: 100 steps
    assert all(a >= b for a, b in zip(lrs[:100], lrs[1:100]))  # monotone within the phase
    assert lrs[100] == pytest.approx(1e-3) and lrs[109] == pytest.approx(1e-4)  # the polish restarts and anneals
    const = TrainConfig(lr=1e-3, lr_warmup=4)
    assert [lr_at(const, s, 50) for s in (0, 3, 40)] == pytest.approx([2.5e-4, 1e-3, 1e-3])


class BadItemDataset(DictDataset):
    """Item 5 holds float images in [0, 255]: found only when the run decodes its data, after config.json."""

    def __getitem__(self, i):
        return {"img": self.imgs[i].float() if i == 5 else self.imgs[i]}


def test_a_failed_start_leaves_no_run_folder_and_the_fix_runs(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(GanprintError, match=r"item 5 holds float images in \[\d+, 255\]"):
        train_stega(tiny_cfg(steps=2), out, data=BadItemDataset(), device="cpu", progress=False)
    assert not out.exists()
    final = train_stega(tiny_cfg(steps=2, lr=2e-3), out, data=DictDataset(), device="cpu", progress=False)
    assert final.is_file()  # a different config than the failed start's is not refused
