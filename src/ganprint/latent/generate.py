"""Images from latent-diffusion exports: the latent half of `generate` (`sampler`, `steps`, and `decoder`).

Each image is a pure function of its seed: `sample_latents` draws every latent from its seed's generator, in
float64 (where the batch size moves a latent by rounding only), and the autoencoder decodes each latent on its own
(its normalisations are per image). `decoder` swaps in another autoencoder of the same config, e.g. an issued,
fingerprinted one: the latents stay those of the seeds, only the pixels change.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ganprint.core.files import sha256_file
from ganprint.core.paths import check_overlap
from ganprint.diffusion.generate import cast, check_sampling
from ganprint.inference.generation import PRECISIONS, GenerateSpec, claim, open_generation, write_seed_images
from ganprint.latent.model import EXPORT_KIND, decode_images, load_decoder, load_latent_diffusion, sample_latents


def generate_images(spec: GenerateSpec) -> list[Path]:
    """Write `outdir/seed<seed:06d>.png` for every seed of `spec` from a latent-diffusion export (and `grid.png`
    with `grid`); returns the image paths. `sampler` ddim (default), ddpm or dpm, `steps` (default 50); `decoder`:
    an autoencoder export (latent-autoencoder or latent-autoencoder-issued) of the model's autoencoder config that
    decodes instead of the model's own. `batch_size` does not change any image."""
    spec.refuse(("trunc", "fingerprint", "identical_latent", "identical_fingerprint"), "GAN generators")
    sampler, steps = spec.sampler or "ddim", spec.steps or 50
    if spec.decoder is not None:
        check_overlap([("`decoder`", spec.decoder, "model")], [("`outdir`", spec.outdir)])
    outdir, dev = open_generation(spec)
    model = load_latent_diffusion(spec.model, dev)
    check_sampling(sampler, steps, model.noise)
    vae = model.autoencoder if spec.decoder is None else load_decoder(spec.decoder, spec.model, dev)
    settings = {"kind": EXPORT_KIND, "sampler": sampler, "steps": int(steps), "precision": spec.precision}
    if spec.decoder is not None:
        settings["decoder_sha256"] = sha256_file(spec.decoder)
    claim(spec, outdir, dev, settings)
    dtype = PRECISIONS[spec.precision]
    model, vae = cast(model, dtype), cast(vae, dtype)

    def make(seeds: list[int]):
        with torch.no_grad():
            return decode_images(vae, sample_latents(model, seeds, sampler, steps)).numpy()

    return write_seed_images(spec, outdir, make, f" ({sampler}, {steps} steps)")
