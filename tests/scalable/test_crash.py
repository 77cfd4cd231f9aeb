"""`ganprint train-scalable` killed by SIGKILL (its pid, then its process group) at random points and re-run: the
final exports and images equal an uninterrupted run's, stats rows come once each, no temporaries are left."""

import random

from ganprint.core.files import read_jsonl
from tests.killing import assert_same_files, assert_same_tensors, finish_run, run_and_kill, run_to_end, start_run
from tests.scalable.test_scalable import _packed_data, _train_args


def test_train_scalable_killed_twice_then_resumed_equals_an_uninterrupted_run(tmp_path):
    rng = random.Random()
    seed = rng.randrange(1 << 30)
    rng.seed(seed)  # the kill points vary from run to run; the seed in a failure message replays them
    data = _packed_data(tmp_path)
    killed, whole = tmp_path / "killed", tmp_path / "whole"
    flags = ["--checkpoint-minutes", "0.0001"]  # a state by time at every step, so that kills land between states
    reference = start_run([*_train_args(data, whole, 0.08), *flags], tmp_path / "whole.log")  # beside the killed runs
    first = run_and_kill([*_train_args(data, killed, 0.08), *flags], killed, "pid", rng)
    second = run_and_kill([*_train_args(data, killed, 0.08), *flags], killed, "group", rng)
    assert 0 < first < second < 20, (seed, first, second)
    run_to_end([*_train_args(data, killed, 0.08), *flags])
    finish_run(reference, tmp_path / "whole.log")
    for name in ("scalable-G.safetensors", "scalable-decoder.safetensors"):
        assert_same_tensors(killed / name, whole / name)
    assert_same_files(killed, whole, "snapshots/*.png")
    assert read_jsonl(killed / "metric-bit-accuracy.jsonl") == read_jsonl(whole / "metric-bit-accuracy.jsonl")
    steps = [r["step"] for r in read_jsonl(killed / "stats.jsonl")]
    assert steps == [r["step"] for r in read_jsonl(whole / "stats.jsonl")] and len(set(steps)) == len(steps), seed
    assert not list(killed.rglob(".*.tmp"))
