"""Diffusion training (`ganprint train-diffusion`): epsilon-prediction DDPM loss on a diffusers UNet, EMA weights.

`train_diffusion` trains (or resumes: re-run the same call) into a run folder. Every random draw of a step is a
function of (seed, rank, images seen so far), so an interrupted and resumed run equals an uninterrupted one.
Under torchrun the UNet is wrapped in DistributedDataParallel and rank 0 writes every file. `resume_from` starts a
new run from the weights of a diffusion-unet export (fine-tuning a released model, e.g. on fingerprinted data).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from ganprint.core import dist
from ganprint.core.artifacts import (
    latest_training_state,
    load_export,
    load_training_state,
    read_metadata,
    save_export,
    save_training_state,
)
from ganprint.core.errors import GanprintError
from ganprint.core.files import append_jsonl, atomic_write_json
from ganprint.core.images import write_grid
from ganprint.core.runtime import git_sha, resolve_device
from ganprint.core.seeds import derive_seed
from ganprint.diffusion.config import DiffusionTrainConfig
from ganprint.diffusion.generate import sample_seeds
from ganprint.diffusion.model import EXPORT_KIND, build_unet, export_config, make_scheduler, parse_export_config

log = logging.getLogger(__name__)

_PRELOAD_BYTES = 1 << 30  # data sets smaller than this are decoded once into memory


def batch_stream(dataset: Dataset, cfg: DiffusionTrainConfig, start_nimg: int, rank: int, world: int
                 ) -> Iterator[torch.Tensor]:
    """This rank's share of every global batch from image `start_nimg` on, as uint8 [batch/world, 3, R, R].

    The order is a fresh seeded permutation per epoch, so it depends on the position only (resumable).
    """
    n = len(dataset)
    if n == 0:
        raise GanprintError("the training data set is empty; check --data")
    shape = tuple(dataset[0]["img"].shape)
    if shape != (3, cfg.resolution, cfg.resolution):
        raise GanprintError(f"data set images are {list(shape)}, expected [3, {cfg.resolution}, {cfg.resolution}]; "
                            "check --resolution")
    cache = None
    if n * dataset[0]["img"].numel() <= _PRELOAD_BYTES:
        cache = torch.stack([dataset[i]["img"] for i in range(n)])
    per, pos = cfg.batch_size // world, start_nimg
    while True:
        idx = []
        while len(idx) < cfg.batch_size:
            epoch, off = divmod(pos, n)
            perm = torch.randperm(n, generator=torch.Generator().manual_seed(derive_seed(cfg.seed, 7, epoch)))
            take = perm[off: off + cfg.batch_size - len(idx)].tolist()
            idx += take
            pos += len(take)
        mine = idx[rank * per: (rank + 1) * per]
        yield cache[mine] if cache is not None else torch.stack([dataset[i]["img"] for i in mine])


def _check_resume_config(outdir: Path, cfg: DiffusionTrainConfig, resume_from: str | None) -> None:
    """Refuse to resume a run whose architecture, batch, seed or starting model differs from its config.json."""
    path = outdir / "config.json"
    if not path.is_file():
        return
    old, new = json.loads(path.read_text()), {**cfg.to_dict(), "resume_from": resume_from}
    diff = [k for k in ("unet", "noise", "batch_size", "seed", "resume_from") if old.get(k) != new.get(k)]
    if diff:
        raise GanprintError(f"{outdir} holds a run with different {', '.join(diff)} ({path}); use a new --outdir "
                            "or the original options to resume")


def config_from_export(cfg: DiffusionTrainConfig, resume_from: str) -> DiffusionTrainConfig:
    """`cfg` with the UNet and noise settings of the export it fine-tunes (the preset's resolution must agree)."""
    meta = read_metadata(resume_from)
    if meta["ganprint.kind"] != EXPORT_KIND:
        raise GanprintError(f"--resume-from {resume_from} holds a '{meta['ganprint.kind']}' model; it needs a "
                            f"{EXPORT_KIND} export (from `ganprint train-diffusion`)")
    unet, noise = parse_export_config(json.loads(meta["ganprint.config"]))
    if unet.resolution != cfg.resolution:
        raise GanprintError(f"--resume-from {resume_from} is a {unet.resolution}-px model but --preset/--resolution "
                            f"asks for {cfg.resolution} px; pick the preset of the model's resolution")
    return dataclasses.replace(cfg, unet=unet, noise=noise)


class DiffusionTrainer:
    """One training run: UNet, EMA UNet, Adam and counters, on this process's device."""

    def __init__(self, cfg: DiffusionTrainConfig, outdir: Path, dev: torch.device, resume_from: str | None):
        self.cfg, self.outdir, self.dev, self.resume_from = cfg, outdir, dev, resume_from
        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        torch.manual_seed(derive_seed(cfg.seed, 0))  # identical initial weights on every rank
        self.unet = build_unet(cfg.unet).to(dev).train()
        if resume_from is not None:
            src, _, _ = load_export(resume_from, kind=EXPORT_KIND)
            self.unet.load_state_dict(src.state_dict())
        self.ema = copy.deepcopy(self.unet).eval().requires_grad_(False)
        self.opt = torch.optim.Adam(self.unet.parameters(), lr=cfg.lr)
        self.net = self.unet
        if self.world > 1:
            ids = [dev.index] if dev.type == "cuda" else None
            self.net = torch.nn.parallel.DistributedDataParallel(self.unet, device_ids=ids)
        self.sched = make_scheduler("ddpm", cfg.noise)
        self.cur_nimg, self.cur_tick, self.elapsed = 0, 0, 0.0

    def state_dict(self) -> dict:
        return {"unet": self.unet.state_dict(), "ema": self.ema.state_dict(), "opt": self.opt.state_dict(),
                "cur_nimg": self.cur_nimg, "cur_tick": self.cur_tick, "elapsed": self.elapsed}

    def load_state_dict(self, st: dict) -> None:
        self.unet.load_state_dict(st["unet"])
        self.ema.load_state_dict(st["ema"])
        self.opt.load_state_dict(st["opt"])
        self.cur_nimg, self.cur_tick, self.elapsed = st["cur_nimg"], st["cur_tick"], st["elapsed"]

    def train_step(self, img_u8: torch.Tensor) -> float:
        """One optimiser step on a uint8 batch; returns the batch loss (mean over ranks)."""
        cfg, dev = self.cfg, self.dev
        torch.manual_seed(derive_seed(cfg.seed, self.rank, self.cur_nimg))  # dropout
        g = torch.Generator(device=dev).manual_seed(derive_seed(cfg.seed, self.rank, self.cur_nimg, 1))
        x0 = img_u8.to(dev).float() / 127.5 - 1
        if cfg.mirror:
            flip = torch.rand(x0.shape[0], generator=g, device=dev) < 0.5
            x0 = torch.where(flip[:, None, None, None], x0.flip(3), x0)
        t = torch.randint(0, cfg.noise.timesteps, (x0.shape[0],), generator=g, device=dev)
        eps = torch.randn(x0.shape, generator=g, device=dev)
        xt = self.sched.add_noise(x0, eps, t)
        target = eps if cfg.noise.prediction_type == "epsilon" else self.sched.get_velocity(x0, eps, t)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cfg.amp and dev.type == "cuda"):
            pred = self.net(xt, t, return_dict=False)[0]
        loss = F.mse_loss(pred.float(), target)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.unet.parameters(), cfg.grad_clip)
        warm = cfg.warmup_kimg * 1000
        for group in self.opt.param_groups:
            group["lr"] = cfg.lr * min(1.0, (self.cur_nimg + cfg.batch_size) / warm) if warm > 0 else cfg.lr
        self.opt.step()
        self._update_ema()
        self.cur_nimg += cfg.batch_size
        return float(dist.all_reduce_mean(loss.detach()).item())

    @torch.no_grad()
    def _update_ema(self) -> None:
        # EMA with a half-life of ema_kimg, shortened early in training (as the StyleGAN2 trainer here).
        cfg = self.cfg
        ema_nimg = cfg.ema_kimg * 1000
        if cfg.ema_rampup is not None:
            ema_nimg = min(ema_nimg, (self.cur_nimg + cfg.batch_size) * cfg.ema_rampup)
        beta = 0.5 ** (cfg.batch_size / max(ema_nimg, 1e-8)) if ema_nimg > 0 else 0.0
        for p_ema, p in zip(self.ema.parameters(), self.unet.parameters()):
            p_ema.copy_(p.detach().lerp(p_ema, beta))
        for b_ema, b in zip(self.ema.buffers(), self.unet.buffers()):
            b_ema.copy_(b)

    def snapshot(self, final: bool) -> None:
        """Rank 0: sample grid, EMA export and training state (and network-final.safetensors when `final`)."""
        if self.rank == 0:
            cfg = self.cfg
            name = f"{self.cur_nimg:09d}"  # images seen: exact, even for sub-kimg snapshot intervals
            if cfg.grid_seeds:
                imgs = sample_seeds(self.ema, cfg.noise, list(range(cfg.grid_seeds)), "ddim", cfg.grid_steps,
                                    self.dev, batch_size=16, dtype=torch.float32)
                write_grid(self.outdir / f"fakes-{name}.png", imgs)
            meta = {"ganprint.train.kimg": f"{self.cur_nimg / 1000:.3f}", "ganprint.train.seed": str(cfg.seed)}
            econf = export_config(cfg.unet, cfg.noise)
            save_export(self.outdir / f"network-{name}.safetensors", self.ema, EXPORT_KIND, econf, meta)
            if final:
                save_export(self.outdir / "network-final.safetensors", self.ema, EXPORT_KIND, econf, meta)
            save_training_state(self.outdir, self.cur_nimg, self.state_dict())
            log.info("snapshot at %.3f kimg", self.cur_nimg / 1000)
        dist.barrier()

    def tick(self, losses: list[float], start_nimg: int, start_time: float) -> None:
        """One stats.jsonl row and status line."""
        dt = time.time() - start_time
        self.elapsed += dt
        self.cur_tick += 1
        row = {"tick": self.cur_tick, "kimg": round(self.cur_nimg / 1000, 3),
               "sec_per_kimg": round(dt / max((self.cur_nimg - start_nimg) / 1000, 1e-9), 3),
               "elapsed_s": round(self.elapsed, 1), "loss": round(sum(losses) / max(len(losses), 1), 5),
               "lr": self.opt.param_groups[0]["lr"]}
        if self.rank == 0:
            append_jsonl(self.outdir / "stats.jsonl", row)
            log.info("tick %-4d kimg %-8.3f sec/kimg %-7.2f loss %.4f", row["tick"], row["kimg"], row["sec_per_kimg"],
                     row["loss"])

    def run(self, dataset: Dataset) -> None:
        """Train until cfg.total_kimg, with ticks and snapshots on their kimg grids."""
        cfg = self.cfg
        total = round(cfg.total_kimg * 1000)
        tick_n, snap_n = (max(round(k * 1000), 1) for k in (cfg.kimg_per_tick, cfg.snapshot_kimg))
        if self.cur_nimg >= total:
            if not (self.outdir / "network-final.safetensors").exists():
                self.snapshot(final=True)
            return
        batches = batch_stream(dataset, cfg, self.cur_nimg, self.rank, self.world)
        start_nimg, start_time, losses = self.cur_nimg, time.time(), []
        while self.cur_nimg < total:
            losses.append(self.train_step(next(batches)))
            done = self.cur_nimg >= total
            if done or self.cur_nimg // tick_n > (self.cur_nimg - cfg.batch_size) // tick_n:
                self.tick(losses, start_nimg, start_time)
                start_nimg, start_time, losses = self.cur_nimg, time.time(), []
            if done or self.cur_nimg // snap_n > (self.cur_nimg - cfg.batch_size) // snap_n:
                self.snapshot(final=done)


def train_diffusion(cfg: DiffusionTrainConfig, outdir: str | Path, dataset: Dataset, device: str = "auto",
                    resume_from: str | None = None) -> dict:
    """Train (or resume) a diffusion UNet on `dataset` (items {"img": uint8 [3, R, R]}) until `cfg.total_kimg`.

    Writes into `outdir` (rank 0): config.json, stats.jsonl, reals.png, fakes-<nimg>.png,
    network-<nimg>.safetensors, network-final.safetensors (EMA weights, kind diffusion-unet), training-state-*.pt.
    `resume_from`: a diffusion-unet export whose weights start the run (its UNet and noise settings replace the
    preset's). Returns {"cur_nimg", "outdir", "elapsed_s", "unet", "ema"}.
    """
    if resume_from is not None:
        cfg = config_from_export(cfg, str(resume_from))
    cfg.validate()
    if len(dataset) == 0:
        raise GanprintError("the training data set is empty; check --data")
    outdir = Path(outdir)
    dev = dist.local_device(resolve_device(device))
    if dev.type == "cuda":
        # No TF32 (house style): float32 means float32, on every GPU alike.
        torch.set_float32_matmul_precision("highest")
        torch.backends.cudnn.allow_tf32 = False
    dist.init(dev)
    if cfg.batch_size % dist.get_world_size():
        raise GanprintError(f"--batch-size {cfg.batch_size} is not divisible by the {dist.get_world_size()} processes")
    if dist.get_rank() == 0:
        _check_resume_config(outdir, cfg, None if resume_from is None else str(resume_from))
        outdir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(outdir / "config.json", {**cfg.to_dict(), "resume_from": resume_from and str(resume_from),
                                                   "git_sha": git_sha()})
        if not (outdir / "reals.png").exists():
            reals = torch.stack([dataset[i]["img"] for i in range(min(max(cfg.grid_seeds, 1), len(dataset)))])
            write_grid(outdir / "reals.png", reals.permute(0, 2, 3, 1).numpy())
    dist.barrier()
    trainer = DiffusionTrainer(cfg, outdir, dev, None if resume_from is None else str(resume_from))
    state_path = latest_training_state(outdir)
    if state_path is not None:
        trainer.load_state_dict(load_training_state(state_path))
        log.info("resuming from %s at %.3f kimg", state_path, trainer.cur_nimg / 1000)
    log.info("training %s: %d px, batch %d over %d process(es), %.3f -> %.3f kimg on %s", cfg.preset, cfg.resolution,
             cfg.batch_size, dist.get_world_size(), trainer.cur_nimg / 1000, cfg.total_kimg, dev)
    trainer.run(dataset)
    return {"cur_nimg": trainer.cur_nimg, "outdir": str(outdir), "elapsed_s": trainer.elapsed, "unet": trainer.unet,
            "ema": trainer.ema}
