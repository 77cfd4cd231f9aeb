"""`ganprint train-gan` killed by SIGKILL (its pid, then its process group) at random points and re-run: the final
export and images equal an uninterrupted run's, stats rows come once each, no temporaries are left."""

import random

from ganprint.core.files import read_jsonl
from ganprint.data.samples import write_samples
from tests.killing import assert_same_files, assert_same_tensors, finish_run, run_and_kill, run_to_end, start_run


def test_train_gan_killed_twice_then_resumed_equals_an_uninterrupted_run(tmp_path):
    rng = random.Random()
    seed = rng.randrange(1 << 30)
    rng.seed(seed)  # the kill points vary from run to run; the seed in a failure message replays them
    data = tmp_path / "data"
    write_samples(data, resolution=32, count=16, seed=0)
    flags = ["train-gan", "--data", str(data), "--resolution", "32", "--preset", "small", "--kimg", "0.04",
             "--batch-size", "4", "--tick-kimg", "0.004", "--snapshot-kimg", "0.02", "--seed", "1", "--device", "cpu",
             "--checkpoint-minutes", "0.0001"]  # a state by time at every tick, so that kills land between states
    killed, whole = tmp_path / "killed", tmp_path / "whole"
    reference = start_run([*flags, "--outdir", str(whole)], tmp_path / "whole.log")  # beside the killed runs
    first = run_and_kill([*flags, "--outdir", str(killed)], killed, "pid", rng)
    second = run_and_kill([*flags, "--outdir", str(killed)], killed, "group", rng)
    assert 0 < first < second < 10, (seed, first, second)
    run_to_end([*flags, "--outdir", str(killed)])
    finish_run(reference, tmp_path / "whole.log")
    assert_same_tensors(killed / "network-final.safetensors", whole / "network-final.safetensors")
    assert_same_files(killed, whole, "snapshots/*.png")
    assert [r["step"] for r in read_jsonl(killed / "stats.jsonl")] == list(range(1, 11)), seed
    assert not list(killed.rglob(".*.tmp"))
