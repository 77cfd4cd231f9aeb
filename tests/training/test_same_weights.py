"""The trainers' exports are bit-identical to the ones recorded before the training kit took over their data
pipelines, GAN losses and clocks (`trainer_digests.py` says how they were made and how to re-record them)."""

import json
from pathlib import Path

import pytest
import torch

from tests.training.trainer_digests import TRAINERS, digests, stega_folder

STORED = json.loads((Path(__file__).parent / "trainer_digests.json").read_text())


@pytest.mark.parametrize("trainer", sorted(TRAINERS))
def test_exports_match_the_recorded_digests(trainer, tmp_path):
    if STORED["torch"] != torch.__version__:
        pytest.skip(f"digests were recorded with torch {STORED['torch']}, this is {torch.__version__}")
    if trainer == "diffusion":
        pytest.importorskip("diffusers")
    got = digests(tmp_path, (trainer,))
    want = {k: v for k, v in STORED["digests"].items() if k.split("-")[0] == trainer}
    changed = sorted(k for k in want if got.get(k) != want[k])
    assert not changed, f"exports changed: {changed}"


def test_worker_processes_decode_the_same_batches(tmp_path):
    if STORED["torch"] != torch.__version__:
        pytest.skip(f"digests were recorded with torch {STORED['torch']}, this is {torch.__version__}")
    assert stega_folder(tmp_path, workers=2) == STORED["digests"]["stega-folder"]
