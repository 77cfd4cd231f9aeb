"""How long issuing one latent decoder takes on the CPU: fold + write + registry row.

    python benchmarks/experiments/latent/issue_speed.py --sizes tiny32 sd --repeat 5 --threads 1 \
        --out benchmarks/experiments/latent/results/issue-speed.jsonl

Per autoencoder size, an untrained shared `latent-modulated` export is built (issuing folds weights whatever they
are, so its speed does not depend on training) and `repeat` models are issued into a fresh SQLite registry, timed
two ways: `loaded` (`issue_loaded_latent`, the shared model already in memory, as `ganprint serve` issues) and
`command` (`issue_latent_model`, what `ganprint issue` runs: it also reads the shared model from disk). Sizes:
`tiny32`: 32 px, channels (32, 64, 64); `sd`: Stable Diffusion's autoencoder layout, channels (128, 256, 512, 512),
2 blocks per level, 256 px (the resolution changes no weight). One JSON row per size and way (median and range).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from ganprint.core.artifacts import save_export
from ganprint.core.files import sha256_file
from ganprint.latent.autoencoder import AutoencoderConfig
from ganprint.latent.issue import issue_latent_model, issue_loaded_latent
from ganprint.latent.modulated import EXPORT_KIND, ModulatedAutoencoder, ModulationConfig, export_config
from ganprint.registry.store import Registry

SIZES = {
    "tiny32": AutoencoderConfig(resolution=32, channels=(32, 64, 64)),
    "sd": AutoencoderConfig(resolution=256, channels=(128, 256, 512, 512), layers_per_block=2),
}


def _timed(fn, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def bench_size(name: str, repeat: int, bits: int, work: Path) -> list[dict]:
    torch.manual_seed(0)
    ae = SIZES[name]
    mod = ModulationConfig(fingerprint_length=bits)
    model = ModulatedAutoencoder(ae, mod).eval()
    shared = work / f"{name}-latent-modulated.safetensors"
    save_export(shared, model, EXPORT_KIND, export_config(ae, mod))
    params = sum(p.numel() for p in model.autoencoder.parameters())
    sha = sha256_file(shared)
    reg = Registry(work / f"{name}-loaded.sqlite")
    loaded = _timed(lambda: issue_loaded_latent(model, sha, reg, work / f"{name}-loaded", who="bench"), repeat)
    command = _timed(lambda: issue_latent_model(shared, work / f"{name}-command.sqlite", work / f"{name}-command",
                                                who="bench"), repeat)
    size_mb = next((work / f"{name}-command").glob("issued-*.safetensors")).stat().st_size / 2**20
    rows = []
    for way, times in (("loaded", loaded), ("command", command)):
        rows.append({"size": name, "way": way, "autoencoder": ae.to_dict(), "params": params, "bits": bits,
                     "file_mb": round(size_mb, 1), "repeat": repeat, "median_s": round(statistics.median(times), 4),
                     "min_s": round(min(times), 4), "max_s": round(max(times), 4),
                     "threads": torch.get_num_threads()})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", nargs="+", choices=list(SIZES), default=list(SIZES))
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--bits", type=int, default=48)
    ap.add_argument("--threads", type=int, default=None,
                    help="torch threads (on a loaded machine 1 is several times faster than 2 for these small ops)")
    ap.add_argument("--out", type=Path, default=None, help="Append the rows to this JSONL file.")
    args = ap.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    rows = []
    with tempfile.TemporaryDirectory(prefix="ganprint-issue-speed-") as tmp:
        for name in args.sizes:
            rows += bench_size(name, args.repeat, args.bits, Path(tmp))
    for row in rows:
        print(json.dumps(row))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with args.out.open("a") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)


if __name__ == "__main__":
    main()
