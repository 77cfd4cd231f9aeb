"""Under torchrun (2 CPU processes, gloo) embed and detect split the files and merge to the 1-process result."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from ganprint.artificial.detect import detect
from ganprint.artificial.embed import embed
from ganprint.core.images import read_image

DRIVER = """
import sys
from ganprint.artificial.detect import detect
from ganprint.artificial.embed import embed
from ganprint.core import dist
model, data, out = sys.argv[1:4]
embed(model, data, out + "/emb", device="cpu", batch_size=2, workers=0)
detect(model, out + "/emb/fingerprinted_images", out + "/det", embedded=out + "/emb/embedded_fingerprints.txt",
           fpr=0.01, device="cpu", batch_size=2, workers=0)
dist.cleanup()
"""


def test_torchrun_two_processes_match_one(tiny_stega_model, image_folder, tmp_path):
    (image_folder / "sub" / "img06.png").write_bytes((image_folder / "img00.png").read_bytes())  # 7: uneven split
    one = tmp_path / "one"
    embed(tiny_stega_model, image_folder, one / "emb", device="cpu")
    detect(tiny_stega_model, one / "emb" / "fingerprinted_images", one / "det",
               embedded=one / "emb" / "embedded_fingerprints.txt", fpr=0.01, device="cpu")

    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    two = tmp_path / "two"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(driver), str(tiny_stega_model), str(image_folder), str(two)],
                          capture_output=True, text=True, timeout=180, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]

    for f in ("emb/embedded_fingerprints.txt", "det/detected_fingerprints.txt", "det/detections.jsonl"):
        assert (two / f).read_text() == (one / f).read_text(), f
    assert len((two / "emb/embedded_fingerprints.txt").read_text().splitlines()) == 7
    for p in sorted((one / "emb" / "fingerprinted_images").rglob("*.png")):
        q = two / "emb" / "fingerprinted_images" / p.relative_to(one / "emb" / "fingerprinted_images")
        diff = np.abs(read_image(p).astype(int) - read_image(q).astype(int))
        assert diff.max() <= 1  # batch composition may move a value by one rounding step, never more
    ranks = sorted(x.name for x in (two / "emb" / ".progress").iterdir())
    assert ranks == ["embed-rank0.jsonl", "embed-rank1.jsonl"]  # both processes worked
    s1 = json.loads((one / "det" / "summary.json").read_text())
    s2 = json.loads((two / "det" / "summary.json").read_text())
    assert s1["mean_bit_accuracy"] == pytest.approx(s2["mean_bit_accuracy"]) and s1["images"] == s2["images"] == 7
