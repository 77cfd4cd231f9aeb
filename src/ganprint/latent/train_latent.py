"""Latent diffusion training (`ganprint train-latent`): the diffusion trainer on the latents of a frozen autoencoder.

The run is ganprint.diffusion.train's (same run folder, resume, EMA, DDP, stats), with the batch mapped to the
autoencoder's scaled latents before it is noised. The latent of an image is its posterior's mean, not a sample:
with the small KL weight the autoencoder trains with, the posterior's spread is far below the noise the forward
process adds, and the mean keeps every step's input a function of the data alone (nothing more to re-draw on
resume). The export (kind latent-diffusion) holds the EMA UNet and the autoencoder in one file.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ganprint.core import bounds
from ganprint.core.artifacts import load_export, read_config, read_metadata
from ganprint.core.errors import GanprintError
from ganprint.core.files import sha256_file
from ganprint.diffusion.config import DiffusionTrainConfig
from ganprint.diffusion.diffusers_folder import read_diffusers
from ganprint.diffusion.generate import denoise
from ganprint.diffusion.train import DiffusionRun, TrainJob, run_config, run_training
from ganprint.latent.autoencoder import AutoencoderConfig, DECODER_KINDS, encode
from ganprint.latent.autoencoder import parse_export_config as parse_autoencoder_config
from ganprint.latent.config import fit_to_autoencoder
from ganprint.latent.model import (EXPORT_KIND, FINAL, LatentDiffusion, check_fit, decode_images, export_config,
                                   parse_export_config)
from ganprint.training.run import check_outdir, export

log = logging.getLogger(__name__)

COMMAND = "train-latent"


def read_autoencoder_config(path: str | os.PathLike) -> AutoencoderConfig:
    """The config of the frozen autoencoder export `path` (refused, naming `autoencoder`, when of another kind)."""
    kind = read_metadata(path).get("ganprint.kind")
    if kind not in DECODER_KINDS:
        raise GanprintError(f"`autoencoder` {path} holds a {kind!r} model; give a latent-autoencoder export (from "
                            "`ganprint train-autoencoder`)")
    return parse_autoencoder_config(read_config(path))


def config_from_model(cfg: DiffusionTrainConfig, resume_from: str, ae: AutoencoderConfig) -> DiffusionTrainConfig:
    """`cfg` with the UNet and noise settings of the model it fine-tunes: a latent-diffusion export, or a diffusers
    UNet2DModel save_pretrained folder (its scheduler's noise settings where it has one) whose UNet takes `ae`'s
    latents."""
    if Path(resume_from).is_dir():
        _, unet, noise = read_diffusers(resume_from, weights=False, in_channels=ae.latent_channels)
        noise = cfg.noise if noise is None else noise
    else:
        kind = read_metadata(resume_from).get("ganprint.kind")
        if kind != EXPORT_KIND:
            raise GanprintError(f"`resume_from` {resume_from} holds a {kind!r} model; give a {EXPORT_KIND} export "
                                "(from `ganprint train-latent`) or a diffusers UNet2DModel save_pretrained folder")
        unet, noise, _ = parse_export_config(read_config(resume_from))
    check_fit(unet, ae, f"`resume_from` {resume_from}")
    return dataclasses.replace(cfg, unet=unet, noise=noise)


class LatentRun(DiffusionRun):
    """A `DiffusionRun` on the scaled latents of the frozen autoencoder of `autoencoder` (a file)."""

    FINAL = FINAL
    COMMAND = COMMAND

    def __init__(self, cfg, run, dev, resume_from, autoencoder: str):
        self.ae_cfg = read_autoencoder_config(autoencoder)
        vae, _, _ = load_export(autoencoder, kind=read_metadata(autoencoder)["ganprint.kind"], device=dev)
        self.vae = vae.eval().requires_grad_(False)
        super().__init__(cfg, run, dev, resume_from)

    def start_weights(self, resume_from: str) -> torch.nn.Module:
        if Path(resume_from).is_dir():
            return read_diffusers(resume_from, in_channels=self.ae_cfg.latent_channels)[0]
        return load_export(resume_from, kind=EXPORT_KIND)[0].unet

    @torch.no_grad()
    def to_x0(self, pixels: torch.Tensor) -> torch.Tensor:
        return encode(self.vae, pixels)

    def grid(self) -> np.ndarray:
        cfg = self.cfg
        latents = denoise(self.ema.module, cfg.noise, list(range(cfg.grid_seeds)), "ddim", cfg.grid_steps, clip=False)
        return decode_images(self.vae, latents).numpy()

    def write_exports(self, final: bool, meta: dict[str, str]) -> None:
        model = LatentDiffusion(self.ema.module, self.vae, self.cfg.noise)
        econf, out = export_config(self.cfg.unet, self.cfg.noise, self.ae_cfg), self.run.outdir
        export(out / f"network-{self.state.nimg:09d}.safetensors", model, EXPORT_KIND, econf, meta)
        if final:
            export(out / FINAL, model, EXPORT_KIND, econf, meta)


def resolve_latent_run_config(cfg: DiffusionTrainConfig, autoencoder: str | os.PathLike,
                              resume_from: str | os.PathLike | None = None) -> DiffusionTrainConfig:
    """`cfg` fitted to the latents of `autoencoder`, then given the architecture of the model `resume_from`
    fine-tunes (what a run trains, and what a dry run prints)."""
    ae = read_autoencoder_config(autoencoder)
    cfg = fit_to_autoencoder(cfg, ae)
    return cfg if resume_from is None else config_from_model(cfg, str(resume_from), ae)


def train_latent(cfg: DiffusionTrainConfig, outdir: str | os.PathLike, data: Dataset | str | os.PathLike | None,
                 autoencoder: str | os.PathLike, device: str = "auto", resume_from: str | os.PathLike | None = None,
                 checkpoint_minutes: float = 5.0, workers: int = 0) -> dict:
    """Train (or resume) a latent diffusion UNet on the latents of the frozen `autoencoder` (a latent-autoencoder
    export) of `data` (images at the autoencoder's side; None: `cfg.data`) until `cfg.total_kimg`.

    Writes what `train_diffusion` writes, the exports being latent-diffusion ones (UNet and autoencoder in one
    file): network-<nimg>.safetensors and latent-diffusion.safetensors. The UNet's side and channels are the
    latents'. `resume_from`: a latent-diffusion export or a diffusers UNet2DModel save_pretrained folder whose
    in_channels are the autoencoder's latent channels. Returns {"cur_nimg", "step", "outdir", "elapsed_s", "unet",
    "ema"}.
    """
    bounds.MINUTES.check(checkpoint_minutes, "`checkpoint_minutes`")
    bounds.WORKERS.check(workers, "`workers`")
    data = cfg.data if data is None else data
    if not isinstance(data, Dataset) and not str(data):
        raise GanprintError(f"{COMMAND} needs `data`: a folder of images or a packed data set")
    resume, ae_path = None if resume_from is None else str(resume_from), str(autoencoder)
    inputs = (("`resume_from`", resume, "model"), ("`autoencoder`", ae_path, "model"))
    check_outdir(outdir, None if isinstance(data, Dataset) else data, inputs)  # before reading the models
    cfg = resolve_latent_run_config(cfg, ae_path, resume)
    record = {**run_config(cfg, data, resume), "autoencoder": ae_path, "autoencoder_sha256": sha256_file(ae_path)}
    resolution = read_autoencoder_config(ae_path).resolution
    job = TrainJob(LatentRun, resolution, inputs, record, {"autoencoder": ae_path},
                   resolution_from="`autoencoder` (it makes images that size)")
    return run_training(cfg, outdir, data, device, resume, checkpoint_minutes, workers, job)
