"""Autoencoder training (`ganprint train-autoencoder`): the AutoencoderKL of a latent diffusion model.

The loss is a reconstruction loss (L1 or L2) plus a small weight on the posterior's KL divergence to N(0, I), as
latent diffusion autoencoders use (Rombach et al. 2022, weight 1e-6): the KL term only keeps the latents' scale in
check. No adversarial or perceptual loss: at 32-64 px they sharpen little, and a GAN loss would add a second
network and its instability to every run. `train_autoencoder` trains (or resumes: re-run the same call) in the
shared run folder (ganprint.training), every random draw a function of (seed, rank, images seen), so a resumed run
equals an uninterrupted one; under torchrun the model is wrapped in DistributedDataParallel and rank 0 writes.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
from pathlib import Path

import torch
from torch.utils.data import Dataset, Subset

from ganprint.core import bounds, dist
from ganprint.core.artifacts import load_export, read_config, read_metadata
from ganprint.core.errors import GanprintError
from ganprint.core.progress import progress_bar, status_line
from ganprint.core.seeds import derive_seed
from ganprint.latent.autoencoder import (DECODER_KINDS, EXPORT_KIND, build_autoencoder, export_config,
                                         parse_export_config, read_diffusers_autoencoder)
from ganprint.latent.config import RUNTIME_FIELDS, AutoencoderTrainConfig
from ganprint.training.clock import Clock, Meter, images
from ganprint.training.data import Batches, EpochOrder, open_training_data
from ganprint.training.ema import EMA
from ganprint.training.grids import save_grid
from ganprint.training.run import SNAPSHOT_DIR, RunFolder, check_outdir, export, start_processes
from ganprint.training.state import TrainingState

log = logging.getLogger(__name__)

FINAL = "latent-autoencoder.safetensors"
COMMAND = "train-autoencoder"
PRELOAD_BYTES = 1 << 30  # data sets smaller than this are decoded once into memory
_TAG_ORDER = 11  # the data order's seed stream


class _Reconstruct(torch.nn.Module):
    """The autoencoder's training forward (encode, sample the posterior, decode), as one call that
    DistributedDataParallel can wrap: (reconstructions, KL per image)."""

    def __init__(self, vae: torch.nn.Module):
        super().__init__()
        self.vae = vae

    def forward(self, x: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        post = self.vae.encode(x).latent_dist
        return self.vae.decode(post.sample(generator)).sample, post.kl()


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of images in [-1, 1] as 8-bit images (both rounded to levels), averaged over the images."""
    qa, qb = (((t.clamp(-1, 1) + 1) * 127.5).round() for t in (a, b))
    mse = (qa - qb).pow(2).flatten(1).mean(1).clamp_min(1e-10)
    return float((10 * torch.log10(255.0 ** 2 / mse)).mean())


def config_from_model(cfg: AutoencoderTrainConfig, resume_from: str) -> AutoencoderTrainConfig:
    """`cfg` with the architecture of the autoencoder it fine-tunes (a latent-autoencoder export or a diffusers
    AutoencoderKL save_pretrained folder)."""
    if Path(resume_from).is_dir():
        ae, _ = read_diffusers_autoencoder(resume_from, "resume_from")
    else:
        kind = read_metadata(resume_from).get("ganprint.kind")
        if kind not in DECODER_KINDS:
            raise GanprintError(f"`resume_from` {resume_from} holds a {kind!r} model; give a {EXPORT_KIND} export "
                                "(from `ganprint train-autoencoder`) or a diffusers AutoencoderKL save_pretrained "
                                "folder")
        ae = parse_export_config(read_config(resume_from))
    return dataclasses.replace(cfg, autoencoder=ae)


def _start_weights(resume_from: str) -> torch.nn.Module:
    if Path(resume_from).is_dir():
        return read_diffusers_autoencoder(resume_from, "resume_from")[1]
    return load_export(resume_from, kind=read_metadata(resume_from)["ganprint.kind"])[0]


class _AutoencoderRun:
    """One run: the autoencoder, its EMA copy, Adam and the training state, on this process's device."""

    def __init__(self, cfg: AutoencoderTrainConfig, run: RunFolder, dev: torch.device, resume_from: str | None,
                 held_out: torch.Tensor):
        self.cfg, self.run, self.dev, self.held_out = cfg, run, dev, held_out
        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        torch.manual_seed(derive_seed(cfg.seed, 0))  # identical initial weights on every rank
        self.vae = build_autoencoder(cfg.autoencoder).to(dev).train()
        if resume_from is not None:
            self.vae.load_state_dict(_start_weights(resume_from).state_dict())
        self.ema = EMA(self.vae, cfg.ema_kimg, cfg.ema_rampup)
        self.opt = torch.optim.Adam(self.vae.parameters(), lr=cfg.lr)
        self.net: torch.nn.Module = _Reconstruct(self.vae)
        if self.world > 1:
            ids = [dev.index] if dev.type == "cuda" else None
            self.net = torch.nn.parallel.DistributedDataParallel(self.net, device_ids=ids)
        self.state = TrainingState(run.outdir, {"vae": self.vae, "ema": self.ema, "opt": self.opt}, tick=0)
        self.state.restore()
        run.rewind(self.state.counters["tick"], key="tick")  # stats rows carry the tick, not the step
        self.total_nimg = round(cfg.total_kimg * 1000)

    def step(self, img_u8: torch.Tensor) -> dict[str, float]:
        """One optimiser step on a uint8 batch; returns the batch's losses (means over ranks)."""
        cfg, dev, st = self.cfg, self.dev, self.state
        g = torch.Generator(device=dev).manual_seed(derive_seed(cfg.seed, self.rank, st.nimg, 1))
        x = img_u8.to(dev).float() / 127.5 - 1
        if cfg.mirror:
            flip = torch.rand(x.shape[0], generator=g, device=dev) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(3), x)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cfg.amp and dev.type == "cuda"):
            rec, kl = self.net(x, g)
        err = (rec.float() - x).abs() if cfg.loss == "l1" else (rec.float() - x).pow(2)
        # Sums over every element divided by the element count: the ratio of reconstruction to KL is the one of
        # the latent diffusion autoencoders (both summed per image), the scale that of a mean.
        rec_loss = err.mean()
        kl_loss = kl.float().sum() / x.numel()
        loss = rec_loss + cfg.kl_weight * kl_loss
        self.opt.zero_grad(set_to_none=True)
        loss.backward()  # DistributedDataParallel averages the gradients over the ranks
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.vae.parameters(), cfg.grad_clip)
        warm = cfg.warmup_kimg * 1000
        for group in self.opt.param_groups:
            group["lr"] = cfg.lr * min(1.0, (st.nimg + cfg.batch_size) / warm) if warm > 0 else cfg.lr
        self.opt.step()
        st.step, st.nimg = st.step + 1, st.nimg + cfg.batch_size
        self.ema.update(self.vae, st.nimg, cfg.batch_size)
        both = dist.all_reduce_mean(torch.stack([rec_loss.detach(), kl_loss.detach()]))
        return {"loss": float(both[0]), "kl": float(both[1])}

    @torch.no_grad()
    def reconstruct_held_out(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(held-out images in [-1, 1], the EMA autoencoder's reconstructions from the posterior means)."""
        x = self.held_out.to(self.dev).float() / 127.5 - 1
        vae = self.ema.module
        return x, vae.decode(vae.encode(x).latent_dist.mean).sample

    def tick(self, means: dict[str, float], start_nimg: int, seconds: float, bar=None) -> None:
        """Close a tick: one stats.jsonl row (with the held-out PSNR), the bar's figures and a status line."""
        st = self.state
        st.elapsed += seconds
        st.counters["tick"] += 1
        value = psnr(*self.reconstruct_held_out()) if self.rank == 0 else math.nan
        row = {"tick": st.counters["tick"], "kimg": round(st.nimg / 1000, 3),
               "sec_per_kimg": round(seconds / max((st.nimg - start_nimg) / 1000, 1e-9), 3),
               "elapsed_s": round(st.elapsed, 1), "loss": round(means.get("loss", 0.0), 5),
               "kl": round(means.get("kl", 0.0), 3), "psnr_held_out": round(value, 3),
               "lr": self.opt.param_groups[0]["lr"]}
        self.run.append(row)
        if self.rank == 0:
            if bar is not None:
                bar.set_postfix(loss=f"{row['loss']:.4f}", psnr=f"{value:.2f}", refresh=False)
            status_line(log, bar, "tick %-4d kimg %-8.3f sec/kimg %-7.2f loss %.4f held-out PSNR %.2f dB",
                        row["tick"], row["kimg"], row["sec_per_kimg"], row["loss"], value)

    def snapshot(self, final: bool) -> None:
        """Held-out images over their reconstructions, the EMA exports and the training state."""
        cfg, st, out = self.cfg, self.state, self.run.outdir
        if self.rank == 0:
            x, rec = self.reconstruct_held_out()
            save_grid(out / SNAPSHOT_DIR / f"reconstructions-{st.step:08d}.png", torch.cat([x, rec]),
                      cols=len(x))
            meta = st.export_metadata(cfg.seed)
            econf = export_config(cfg.autoencoder)
            export(out / f"network-{st.nimg:09d}.safetensors", self.ema.module, EXPORT_KIND, econf, meta)
            if final:
                export(out / FINAL, self.ema.module, EXPORT_KIND, econf, meta)
            log.info("snapshot at %.3f kimg", st.nimg / 1000)
        st.save()
        self.run.write_curves()

    def loop(self, data: Batches, checkpoint_minutes: float) -> None:
        """Train until total_kimg, with ticks and snapshots on their kimg grids and states also by time."""
        cfg, st = self.cfg, self.state
        clock = Clock(cfg.batch_size, checkpoint_minutes, tick=images(cfg.kimg_per_tick),
                      snapshot=images(cfg.snapshot_kimg))
        batches = data.stream(st.step)
        meter, start_nimg, start_time = Meter(), st.nimg, time.time()
        with progress_bar(self.total_nimg, COMMAND, initial=st.nimg) as bar:
            while st.nimg < self.total_nimg:
                meter.add(self.step(next(batches)))
                bar.update(cfg.batch_size)
                done = st.nimg >= self.total_nimg
                if clock.due("tick", st.nimg, done):
                    self.tick(meter.means(over_ranks=False), start_nimg, time.time() - start_time, bar)
                    start_nimg, start_time = st.nimg, time.time()
                clock.after_step(st.nimg, done, self.snapshot, st.save)


def _split(dataset: Dataset, holdout: int) -> tuple[Dataset, list[int]]:
    """(the training images, the indices of the held-out ones: the data set's last `holdout` images)."""
    n = len(dataset)
    if n <= holdout:
        raise GanprintError(f"`data` holds {n} image(s) but `holdout` keeps {holdout} out of training; give more "
                            "images or a smaller `holdout`")
    return Subset(dataset, range(n - holdout)), list(range(n - holdout, n))


def train_autoencoder(cfg: AutoencoderTrainConfig, outdir: str | os.PathLike,
                      data: Dataset | str | os.PathLike | None = None, device: str = "auto",
                      resume_from: str | os.PathLike | None = None, checkpoint_minutes: float = 5.0,
                      workers: int = 0) -> dict:
    """Train (or resume) the autoencoder of `cfg` on `data` (a folder of images, a packed data set or a Dataset of
    {"img": uint8 [3, R, R]} items; None: `cfg.data`) until `cfg.total_kimg`.

    Writes into `outdir` (rank 0): config.json, log.txt, stats.jsonl (loss, kl and the held-out PSNR per tick),
    snapshots/reconstructions-<step>.png (held-out images over their reconstructions), network-<nimg>.safetensors,
    latent-autoencoder.safetensors (EMA weights, kind latent-autoencoder) and training-state-<step>.pt.
    `resume_from`: a latent-autoencoder export or a diffusers AutoencoderKL save_pretrained folder whose weights
    (and architecture) start the run. Returns {"cur_nimg", "step", "outdir", "elapsed_s", "autoencoder", "ema"}.
    """
    bounds.MINUTES.check(checkpoint_minutes, "`checkpoint_minutes`")
    bounds.WORKERS.check(workers, "`workers`")
    data = cfg.data if data is None else data
    if not isinstance(data, Dataset) and not str(data):
        raise GanprintError(f"{COMMAND} needs `data`: a folder of images or a packed data set")
    resume = None if resume_from is None else str(resume_from)
    inputs = [("`resume_from`", resume, "model")]
    check_outdir(outdir, None if isinstance(data, Dataset) else data, inputs)  # before reading the model
    if resume is not None:
        cfg = config_from_model(cfg, resume)
    cfg.validate()
    dev = start_processes(device, cfg.batch_size, float32=True)
    record = {**cfg.to_dict(), "data": "" if isinstance(data, Dataset) else str(data), "resume_from": resume}
    run = RunFolder(outdir, record, RUNTIME_FIELDS, data=None if isinstance(data, Dataset) else data,
                    command=COMMAND, device=dev, inputs=inputs).check()
    dataset = open_training_data(data, cfg.resolution, resolution_from="the preset, or `resume_from`: they set it")
    train_set, held = _split(dataset, cfg.holdout)
    order = EpochOrder(len(train_set), cfg.batch_size, cfg.seed, _TAG_ORDER, dist.get_rank(), dist.get_world_size())
    batches = Batches(train_set, order, workers, PRELOAD_BYTES)
    held_out = torch.stack([torch.as_tensor(dataset[i]) for i in held])
    with run:
        trainer = _AutoencoderRun(cfg, run, dev, resume, held_out)
        log.info("training %s on %d images (%d held out): %d px, batch %d over %d process(es), %.3f -> %.3f kimg "
                 "on %s", cfg.preset, len(train_set), len(held), cfg.resolution, cfg.batch_size,
                 dist.get_world_size(), trainer.state.nimg / 1000, cfg.total_kimg, dev)
        st = trainer.state
        if st.nimg >= trainer.total_nimg:
            if not (run.outdir / FINAL).exists():
                trainer.snapshot(final=True)
        else:
            trainer.loop(batches, checkpoint_minutes)
        return {"cur_nimg": st.nimg, "step": st.step, "outdir": str(run.outdir), "elapsed_s": st.elapsed,
                "autoencoder": trainer.vae, "ema": trainer.ema.module}
