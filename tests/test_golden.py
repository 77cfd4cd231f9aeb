"""Golden outputs: embed, detect, generate, issue and attribute on fixed seeds give the same results as when the
digests in `golden_digests.json` were stored.

Restructuring the code must keep every behaviour, so these digests are of what a user gets: the decoded pixels of
every written image (not the PNG bytes, which depend on the encoder library) and the decision rows (bits, matches,
p-values, decisions, attributed ids), without paths or timings. Models are tiny random networks made from fixed
seeds, run in fp32 on one thread through the command line.

After a change that is meant to alter outputs, refresh the digests with
`GANPRINT_UPDATE_GOLDEN=1 python -m pytest tests/test_golden.py` and say why in the commit.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from ganprint.cli import main
from ganprint.core.artifacts import save_export
from ganprint.nets.scalable import ScalableConfig, ScalableGenerator
from ganprint.nets.stylegan2 import Generator, GeneratorConfig, generator_config_dict
from tests.conftest import write_image_folder

DIGESTS = Path(__file__).with_name("golden_digests.json")
UPDATE = os.environ.get("GANPRINT_UPDATE_GOLDEN") == "1"
FINGERPRINT = "0x" + "a5" * 4  # 32 bits
NAME_KEYS = ("file", "name", "path")  # reduced to the file name: the folders are temporary


def _pixels_digest(folder: Path) -> str:
    """sha256 over (relative name, pixels) of every image under `folder`, in name order."""
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*.png")):
        h.update(p.relative_to(folder).as_posix().encode())
        h.update(np.asarray(Image.open(p).convert("RGB")).tobytes())
    return h.hexdigest()


def _rows_digest(path: Path) -> str:
    """sha256 of every JSONL row (paths reduced to their file names), in name order."""
    rows = []
    for line in path.read_text().splitlines():
        row = json.loads(line)
        rows.append({k: Path(str(v)).name if k in NAME_KEYS else v for k, v in row.items()})
    rows.sort(key=lambda r: json.dumps(r, sort_keys=True))
    return hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()


def _run(*args: str) -> None:
    res = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert res.exit_code == 0, res.output


@pytest.fixture(scope="module")
def digests(tmp_path_factory, tiny_stega_model, tiny_stega_decoder) -> dict[str, str]:
    """Run every command once on fixed inputs; the digest of each result by name."""
    root = tmp_path_factory.mktemp("golden")
    write_image_folder(root / "photos", n=6, seed=3)
    out: dict[str, str] = {}
    common = ("--precision", "fp32", "--jobs", "1", "--device", "cpu")
    _run("embed", "--model", str(tiny_stega_model), "--data", str(root / "photos"), "--outdir", str(root / "emb"),
         "--seed", "5", *common)
    out["embed_per_image"] = _pixels_digest(root / "emb")
    _run("embed", "--model", str(tiny_stega_model), "--data", str(root / "photos"), "--outdir", str(root / "embi"),
         "--identical", "--fingerprint", "0x5a", *common)
    out["embed_identical"] = _pixels_digest(root / "embi")
    _run("detect", "--model", str(tiny_stega_decoder), "--data", str(root / "emb" / "fingerprinted_images"),
         "--outdir", str(root / "det"), "--embedded", str(root / "emb" / "embedded_fingerprints.txt"), "--fpr", "0.01",
         *common)
    out["detect_embedded"] = _rows_digest(root / "det" / "detections.jsonl")
    _run("detect", "--model", str(tiny_stega_decoder), "--data", str(root / "embi" / "fingerprinted_images"),
         "--outdir", str(root / "deti"), "--fingerprint", "0x5a", "--scale-search", "auto", "--fpr", "0.01",
         *common)
    out["detect_scale_search"] = _rows_digest(root / "deti" / "detections.jsonl")
    out.update(_generators(root))
    return out


def _generators(root: Path) -> dict[str, str]:
    out = {}
    torch.manual_seed(0)
    gcfg = GeneratorConfig(img_resolution=16, z_dim=8, w_dim=8, mapping_layers=2, channel_base=128, channel_max=16)
    G = Generator(gcfg)
    with torch.no_grad():  # non-zero noise strengths so that the noise inputs matter
        for m in G.modules():
            if hasattr(m, "noise_strength"):
                m.noise_strength.fill_(0.5)
    g_path = save_export(root / "G.safetensors", G, "stylegan2-G", generator_config_dict(gcfg))
    _run("generate", "--model", str(g_path), "--seeds", "0-5", "--outdir", str(root / "gen"), "--device", "cpu",
         "--trunc", "0.7")
    out["generate_stylegan2"] = _pixels_digest(root / "gen")
    torch.manual_seed(1)
    scfg = ScalableConfig(resolution=16, fingerprint_length=32, z_dim=8, w_dim=16, mapping_layers=2,
                          channel_base=128, channel_max=16, modulated_res=[4, 8, 16])
    s_path = save_export(root / "S.safetensors", ScalableGenerator(scfg), "scalable-G", scfg.to_dict())
    _run("generate", "--model", str(s_path), "--seeds", "0-5", "--outdir", str(root / "sgen"), "--device", "cpu",
         "--fingerprint", FINGERPRINT)
    out["generate_scalable"] = _pixels_digest(root / "sgen")
    reg = root / "registry.sqlite"
    _run("issue", "--model", str(s_path), "--registry", str(reg), "--models-dir", str(root / "issued"),
         "--fingerprint", FINGERPRINT, "--who", "alice")
    issued = next((root / "issued").glob("*.safetensors"))
    _run("generate", "--model", str(issued), "--seeds", "0-5", "--outdir", str(root / "igen"), "--device", "cpu")
    out["generate_issued"] = _pixels_digest(root / "igen")
    torch.manual_seed(2)
    from ganprint.nets.scalable import ScalableDecoder

    d_path = save_export(root / "D.safetensors", ScalableDecoder(scfg), "scalable-decoder", scfg.to_dict())
    _run("attribute", "--model", str(d_path), "--registry", str(reg), "--data", str(root / "igen"),
         "--outdir", str(root / "attr"), "--device", "cpu")
    out["attribute"] = _rows_digest(root / "attr" / "attributions.jsonl")
    return out


def test_outputs_match_the_stored_digests(digests):
    if UPDATE:
        DIGESTS.write_text(json.dumps({"torch": torch.__version__, "digests": digests}, indent=2) + "\n")
        pytest.skip(f"digests written to {DIGESTS}")
    stored = json.loads(DIGESTS.read_text())
    if stored["torch"] != torch.__version__:
        pytest.skip(f"digests were stored with torch {stored['torch']}, this is {torch.__version__}")
    changed = sorted(k for k in stored["digests"] if digests.get(k) != stored["digests"][k])
    assert not changed, f"outputs changed: {changed} (see this module's docstring)"
    assert set(digests) == set(stored["digests"])
