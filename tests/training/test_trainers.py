"""The kit as the four trainers use it: kills mid-run, time-based states, bad --outdir, --dry-run, api.train."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from click.testing import CliRunner

from ganprint import api
from ganprint.cli import main
from ganprint.core.artifacts import latest_training_state
from ganprint.core.errors import GanprintError
from ganprint.core.files import read_jsonl
from ganprint.gan.config import resolve_config as gan_config
from ganprint.scalable.config import resolve_config as scalable_config
from tests.artificial.test_train import DictDataset, params, tiny_cfg


class Killed(Exception):
    """Stands for a kill: the run stops between two steps without any clean-up of its own."""


def _kill_at(step):
    def callback(s, model):
        if s == step:
            raise Killed
        return False
    return callback


def test_time_based_state_survives_a_kill_and_stats_are_not_repeated(tmp_path):
    data = DictDataset()
    kw = dict(data=data, device="cpu", progress=False, log_every=1, checkpoint_every=0)
    # By steps only (checkpoint_every=0 = at the end): a kill at step 3 leaves no state, the run starts over.
    with pytest.raises(Killed):
        api.train(tiny_cfg(steps=6), tmp_path / "steps", checkpoint_minutes=0, callback=_kill_at(3), **kw)
    assert latest_training_state(tmp_path / "steps") is None
    # By time: with a clock that is always due, every stats row comes with a state.
    with pytest.raises(Killed):
        api.train(tiny_cfg(steps=6), tmp_path / "time", checkpoint_minutes=1e-9, callback=_kill_at(3), **kw)
    assert latest_training_state(tmp_path / "time").name == "training-state-00000002.pt"
    assert [r["step"] for r in read_jsonl(tmp_path / "time" / "stats.jsonl")] == [1, 2, 3]
    # Resume: row 3 (written after the state of step 2) is dropped and written again, once; weights as uninterrupted.
    api.train(tiny_cfg(steps=6), tmp_path / "time", checkpoint_minutes=0, **kw)
    api.train(tiny_cfg(steps=6), tmp_path / "full", checkpoint_minutes=0, **kw)
    rows = read_jsonl(tmp_path / "time" / "stats.jsonl")
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]
    full = read_jsonl(tmp_path / "full" / "stats.jsonl")
    assert [r["bit_acc"] for r in rows] == [r["bit_acc"] for r in full]
    a, b = params(tmp_path / "time" / "model.safetensors"), params(tmp_path / "full" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert "resuming from" in (tmp_path / "time" / "log.txt").read_text()


def _write_images(folder, n=8, res=32):
    from PIL import Image

    folder.mkdir(parents=True)
    g = torch.Generator().manual_seed(0)
    for i in range(n):
        Image.fromarray(torch.randint(0, 256, (res, res, 3), generator=g, dtype=torch.uint8).numpy()).save(
            folder / f"{i}.png")
    return folder


COMMANDS = {
    "train": ["train", "--resolution", "32", "--fingerprint-length", "8", "--batch-size", "4", "--steps", "2"],
    "train-gan": ["train-gan", "--resolution", "32", "--preset", "small", "--kimg", "0.004", "--batch-size", "2"],
    "train-scalable": ["train-scalable", "--resolution", "32", "--fingerprint-length", "8", "--modulated-res", "4-32",
                       "--preset", "tiny", "--kimg", "0.004"],
    "train-diffusion": ["train-diffusion", "--preset", "tiny-16", "--kimg", "0.016"],
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_outdir_inside_data_is_refused_before_any_write_and_dry_run_writes_nothing(tmp_path, command):
    data = _write_images(tmp_path / "data")
    before = sorted(p.name for p in data.rglob("*"))
    r = CliRunner().invoke(main, COMMANDS[command] + ["--data", str(data), "--outdir", str(data / "run")])
    assert r.exit_code == 1 and "lies inside --data" in r.output and "Traceback" not in r.output
    assert sorted(p.name for p in data.rglob("*")) == before
    r = CliRunner().invoke(main, COMMANDS[command] + ["--data", str(data), "--outdir", str(tmp_path / "o"),
                                                      "--dry-run"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["data"] == str(data) and not (tmp_path / "o").exists()
    (tmp_path / "file").write_text("x")
    r = CliRunner().invoke(main, COMMANDS[command] + ["--data", str(data), "--outdir", str(tmp_path / "file" / "run")])
    assert r.exit_code == 1 and "is a file" in r.output and "Traceback" not in r.output


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_resuming_a_run_on_other_data_is_refused_before_any_write(tmp_path, command):
    data, other, out = _write_images(tmp_path / "data"), _write_images(tmp_path / "other"), tmp_path / "o"
    r = CliRunner().invoke(main, COMMANDS[command] + ["--data", str(data), "--outdir", str(out), "--dry-run"])
    out.mkdir()
    (out / "config.json").write_text(r.output)  # --dry-run prints what config.json holds (but the git sha)
    r = CliRunner().invoke(main, COMMANDS[command] + ["--data", str(other), "--outdir", str(out)])
    assert r.exit_code == 1 and f"different config (data: {str(data)!r} -> {str(other)!r})" in r.output, r.output
    assert [p.name for p in out.iterdir()] == ["config.json"]


def test_scalable_resolution_must_be_a_power_of_two(tmp_path):
    for bad, code, words in (("-32", 2, "'--resolution': must be a whole number in [1, 4096]"),
                             ("48", 1, "--resolution must be a power of two"),
                             ("0", 2, "'--resolution': must be a whole number")):
        r = CliRunner().invoke(main, ["train-scalable", "--data", str(tmp_path), "--outdir", str(tmp_path / "o"),
                                      "--resolution", bad])
        assert r.exit_code == code and words in r.output, r.output
    assert scalable_config("tiny", kimg=3.0).kimg == 3.0 and scalable_config().preset == "small"
    with pytest.raises(GanprintError, match="`preset`"):
        scalable_config("nope")


def test_api_train_dispatches_on_the_config_type(tmp_path):
    path = api.train(scalable_config("tiny", resolution=16, fingerprint_length=8, modulated_res="4-16", kimg=0.004),
                     tmp_path / "sc", data=DictDataset(n=8, r=16), device="cpu")
    assert path == tmp_path / "sc" / "scalable-G.safetensors" and path.is_file()
    assert latest_training_state(tmp_path / "sc").name == "training-state-00000001.pt"
    cfg = gan_config("small", 32, total_kimg=0.002, batch_size=2, grid_seeds=2)
    path = api.train(cfg, tmp_path / "gan", data=DictDataset(n=4, r=32), device="cpu")
    assert path == tmp_path / "gan" / "network-final.safetensors" and path.is_file()
    assert (tmp_path / "gan" / "log.txt").is_file()
    with pytest.raises(GanprintError, match="ganprint.config"):
        api.train({"lr": 1}, tmp_path / "x")


DISK_FULL = textwrap.dedent("""
    import json, resource, signal, sys
    import click
    from ganprint.cli import main
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit then fail with EFBIG, as on a full disk
    for limit, args in json.loads(sys.argv[1]):
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
        try:
            main(args, standalone_mode=False)
            print("exit 0")
        except click.ClickException as e:
            print("Error: " + e.format_message())
""")

# Byte limits at which each trainer's first failing write is of another kind: a torch.save (training state), a
# safetensors export, a PNG grid. The diffusion run's files: PNGs ~3 kB, exports 1.1 MB, its training state 4.6 MB.
FULL_AT = {"train": (60000, "training-state-00000002.pt"), "train-gan": (200000, "network-000000.safetensors"),
           "train-scalable": (20000, "snapshots/reals.png"),
           "train-diffusion": (500000, "network-000000016.safetensors")}


def test_a_full_disk_is_one_line_naming_the_file_and_the_rerun_resumes(tmp_path):
    data = _write_images(tmp_path / "data")
    runs = [(FULL_AT[c][0], [*COMMANDS[c], "--data", str(data), "--outdir", str(tmp_path / c)])
            for c in sorted(FULL_AT)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-c", DISK_FULL, json.dumps(runs)], capture_output=True, text=True, env=env,
                       timeout=240)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr[-3000:]
    lines = r.stdout.strip().splitlines()
    assert len(lines) == len(FULL_AT), r.stdout
    for line, command in zip(lines, sorted(FULL_AT)):
        assert line.startswith(f"Error: cannot write {tmp_path / command / FULL_AT[command][1]}: "), line
        assert "disk" in line and "unexpected pos" not in line and "re-run the same command to resume" in line
        assert not list((tmp_path / command).rglob(".*.tmp"))
    # Once there is room again, the same command finishes the run: the diffusion run, which had no training state
    # yet, starts over, and its tick row written before the failure is not repeated.
    for command, final in (("train", "model.safetensors"), ("train-diffusion", "network-final.safetensors")):
        r = CliRunner().invoke(main, runs[sorted(FULL_AT).index(command)][1])
        assert r.exit_code == 0, r.output
        assert (tmp_path / command / final).is_file()
    assert [r["tick"] for r in read_jsonl(tmp_path / "train-diffusion" / "stats.jsonl")] == [1]


# Runs long enough to be killed after their first training state: `train` keeps one by time at every stats row (a
# clock of 6 ms), `train-diffusion` one at every snapshot (every 5 of its 20 steps); the file to compare; the stats.
KILL_RUNS = {
    "train": (["train", "--resolution", "16", "--fingerprint-length", "8", "--batch-size", "4", "--steps", "100",
               "--preset", "default", "--checkpoint-every", "0", "--snapshot-every", "0"],
              ["--checkpoint-minutes", "0.0001"], "model.safetensors", ("step", [50, 100])),
    "train-diffusion": (["train-diffusion", "--preset", "tiny-16", "--batch-size", "2", "--kimg", "0.04",
                         "--snapshot-kimg", "0.01", "--checkpoint-minutes", "0", "--device", "cpu"],
                        [], "network-final.safetensors", ("tick", [1])),
}


@pytest.mark.parametrize("command", sorted(KILL_RUNS))
def test_kill_9_then_the_same_command_equals_an_uninterrupted_run(tmp_path, command):
    import signal
    import time

    from safetensors.torch import load_file

    data = _write_images(tmp_path / "data", res=16)
    argv, first_only, final, (key, rows) = KILL_RUNS[command]
    flags = [*argv, "--data", str(data)]
    killed = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "ganprint", *flags, "--outdir", str(killed), *first_only],
                            env=env, stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    deadline = time.time() + 120
    while latest_training_state(killed) is None and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    state = latest_training_state(killed)
    assert state is not None and not (killed / final).exists()
    assert CliRunner().invoke(main, [*flags, "--outdir", str(killed)]).exit_code == 0
    assert CliRunner().invoke(main, [*flags, "--outdir", str(tmp_path / "whole")]).exit_code == 0
    a, b = load_file(killed / final), load_file(tmp_path / "whole" / final)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert [r[key] for r in read_jsonl(killed / "stats.jsonl")] == rows
    assert not list(killed.rglob(".*.tmp"))


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_trainer_draws_its_curves(tmp_path, command):
    from PIL import Image

    data = _write_images(tmp_path / "data", res=16 if command == "train-diffusion" else 32)
    out = tmp_path / "run"
    r = CliRunner().invoke(main, [*COMMANDS[command], "--data", str(data), "--outdir", str(out)])
    assert r.exit_code == 0, r.output
    with Image.open(out / "curves.png") as im:
        im.verify()  # a whole PNG, not a torn one
    with Image.open(out / "curves.png") as im:
        assert im.format == "PNG" and im.width > 300 and im.height > 200
    assert not list(out.glob(".curves.png.*.tmp"))


def test_curve_panels_come_from_the_logged_terms():
    from ganprint.training.curves import curve_series

    rows = [{"step": 2, "loss": 0.5, "bce": 0.4, "bit_acc": 0.6, "psnr": 30.0, "lr": 1e-3},
            {"step": 4, "loss": float("nan"), "bit_acc": 0.7, "psnr": 31.0}]
    axis, panels = curve_series(rows)
    assert axis == "step" and sorted(panels) == ["PSNR (dB)", "bit accuracy", "loss terms"]
    assert panels["loss terms"] == {"loss": [(2.0, 0.5)], "bce": [(2.0, 0.4)]}  # NaN skipped, lr not drawn
    assert curve_series([{"kimg": 0.1, "step": 1, "loss/G": 1.0}])[0] == "kimg"
