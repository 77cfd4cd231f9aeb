"""How much of a modulated decoder's image depends on the fingerprint, against how much depends on the content.

For `--images` held-out photos encoded by the original autoencoder, the shared modulated decoder decodes every
latent with `--fingerprints` random fingerprints. Printed (MSE on images in [-1, 1]): the variance across
fingerprints (what a reader has to decode), the shift common to all fingerprints away from the original decoder's
image, the variance across images of the original's decodes (the content), and the change one flipped bit makes.
A large fingerprint variance with a held-out bit accuracy near chance means the code is in the images but the
reader cannot decode it (RESULTS-latent.md, third sitting). The run's own reader's accuracy per bit over those
decodes says which: a few bits read perfectly and the rest at chance is a code of too little capacity, all bits
alike a reader that is noise-limited. With `--reader-steps N` the run's fingerprint decoder
is trained N more Adam steps (batch 32, `--reader-lr`) on the frozen modulated decoder's images of `--train-data`:
whether a reader that may catch up with a code that no longer moves can read it.

    python benchmarks/experiments/latent/code_probe.py --run RUN --autoencoder AE --data DIR \
        [--reader-steps 400 --train-data TRAIN]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import torch.nn.functional as F

from ganprint.core.artifacts import load_export
from ganprint.latent.autoencoder import decode, encode
from ganprint.latent.fingerprint_train import DECODER_EXPORT, MODEL_EXPORT, _to01, read_autoencoder
from ganprint.training.data import decode_all, open_training_data


def probe(run: Path, autoencoder: str, data: str, images: int, fingerprints: int, seed: int) -> dict:
    model = load_export(run / MODEL_EXPORT)[0].eval()
    ae_cfg, vae = read_autoencoder(autoencoder)
    x = decode_all(open_training_data(data, ae_cfg.resolution))[:images].float() / 127.5 - 1
    g = torch.Generator().manual_seed(seed)
    k, n = model.fingerprint_length, len(x)
    with torch.no_grad():
        z = encode(vae.eval(), x)
        x0 = decode(vae, z)
        cs = [torch.randint(0, 2, (1, k), generator=g).float().expand(n, k) for _ in range(fingerprints)]
        xs = torch.stack([model.decode(z, c).clamp(-1, 1) for c in cs])
        flipped = cs[0].clone()
        flipped[:, 0] = 1 - flipped[:, 0]
        one_bit = (model.decode(z, cs[0]) - model.decode(z, flipped)).square().mean().item()
    mean_c = xs.mean(0)
    per_bit = _per_bit_accuracy(run, xs, cs)
    return {"run": str(run), "images": n, "fingerprints": fingerprints,
            "fingerprint_variance": (xs - mean_c).square().mean().item(),
            "common_shift": (mean_c - x0).square().mean().item(),
            "content_variance": (x0 - x0.mean(0)).square().mean().item(), "one_bit_flip_mse": one_bit,
            "per_bit_accuracy": [round(a, 4) for a in per_bit.tolist()],
            "per_bit_accuracy_sorted_quartiles": [round(per_bit.quantile(q).item(), 4) for q in (0, .25, .5, .75, 1)]}


def _per_bit_accuracy(run: Path, xs: torch.Tensor, cs: list[torch.Tensor]) -> torch.Tensor:
    """The run's reader on decodes xs [F, N, 3, R, R] of fingerprints cs (F x [N, K]): accuracy per bit [K]."""
    reader = load_export(run / DECODER_EXPORT)[0].dec.eval()
    with torch.no_grad():
        hits = torch.stack([((reader(_to01(x)) > 0).float() == c).float().mean(0) for x, c in zip(xs, cs)])
    return hits.mean(0)


def train_reader(run: Path, autoencoder: str, data: str, steps: int, lr: float, seed: int) -> list[dict]:
    """The run's fingerprint decoder trained `steps` more steps on the frozen modulated decoder: the mean training
    bit accuracy of every 50 steps."""
    model = load_export(run / MODEL_EXPORT)[0].eval().requires_grad_(False)
    reader = load_export(run / DECODER_EXPORT)[0].dec
    ae_cfg, vae = read_autoencoder(autoencoder)
    images = decode_all(open_training_data(data, ae_cfg.resolution))
    opt = torch.optim.Adam(reader.parameters(), lr=lr)
    g, accs, rows = torch.Generator().manual_seed(seed), [], []
    for step in range(1, steps + 1):
        with torch.no_grad():
            z = encode(vae.eval(), images[torch.randint(0, len(images), (32,), generator=g)].float() / 127.5 - 1)
            c = torch.randint(0, 2, (32, model.fingerprint_length), generator=g).float()
            x = _to01(model.decode(z, c))
        logits = reader(x)
        loss = F.binary_cross_entropy_with_logits(logits, c)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        accs.append(((logits > 0).float() == c).float().mean().item())
        if step % 50 == 0:
            rows.append({"reader_step": step, "bit_accuracy_train": sum(accs[-50:]) / 50})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, type=Path, help="a train-latent-fingerprint run folder")
    ap.add_argument("--autoencoder", required=True, help="the original autoencoder the run fine-tuned")
    ap.add_argument("--data", required=True, help="held-out images at the autoencoder's side")
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--fingerprints", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--reader-steps", type=int, default=0)
    ap.add_argument("--reader-lr", type=float, default=1e-3)
    ap.add_argument("--train-data", default=None, help="images for --reader-steps (default: --data)")
    a = ap.parse_args()
    print(json.dumps(probe(a.run, a.autoencoder, a.data, a.images, a.fingerprints, a.seed)))
    for row in train_reader(a.run, a.autoencoder, a.train_data or a.data, a.reader_steps, a.reader_lr, a.seed):
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
