"""Diffusion training (`ganprint train-diffusion`): epsilon-prediction DDPM loss on a diffusers UNet, EMA weights.

`train_diffusion` trains (or resumes: re-run the same call) in the shared run folder (ganprint.training). Every
random draw of a step is a function of (seed, rank, images seen so far), so an interrupted and resumed run equals
an uninterrupted one. Under torchrun the UNet is wrapped in DistributedDataParallel and rank 0 writes every file.
`resume_from` starts a new run from the weights of a diffusion-unet export or of a diffusers `save_pretrained`
folder (fine-tuning a released model, e.g. on fingerprinted data).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from ganprint.core import bounds
from ganprint.core import dist
from ganprint.core.progress import progress_bar, status_line
from ganprint.core.artifacts import load_export, read_config, read_metadata
from ganprint.core.errors import GanprintError
from ganprint.core.files import atomic_path, read_input_json
from ganprint.core.seeds import derive_seed
from ganprint.diffusion.config import RUNTIME_FIELDS, DiffusionTrainConfig, resolve_config
from ganprint.diffusion.diffusers_folder import read_diffusers
from ganprint.diffusion.generate import sample_seeds
from ganprint.diffusion.model import EXPORT_KIND, build_unet, export_config, make_scheduler, parse_export_config
from ganprint.training.ema import EMA
from ganprint.training.grids import save_grid, save_reals
from ganprint.training.clock import Clock, Meter, images
from ganprint.training.data import Batches, EpochOrder, open_training_data
from ganprint.training.run import CONFIG_FILE, SNAPSHOT_DIR, RunFolder, check_outdir, export, start_processes, write_error
from ganprint.training.state import TrainingState

log = logging.getLogger(__name__)

PRELOAD_BYTES = 1 << 30  # data sets smaller than this are decoded once into memory
_TAG_ORDER = 7  # the data order's seed stream


def config_from_export(cfg: DiffusionTrainConfig, resume_from: str) -> DiffusionTrainConfig:
    """`cfg` with the UNet and noise settings of the model it fine-tunes: a diffusion-unet export, or a diffusers
    save_pretrained folder (a UNet's: the preset's noise settings stay; a pipeline's: its scheduler's replace them).
    The preset's resolution must agree with the model's."""
    if Path(resume_from).is_dir():
        _, unet, noise = read_diffusers(resume_from, weights=False)
        noise = cfg.noise if noise is None else noise
    else:
        meta = read_metadata(resume_from)
        if meta["ganprint.kind"] != EXPORT_KIND:
            raise GanprintError(f"`resume_from` {resume_from} holds a '{meta['ganprint.kind']}' model; it needs a "
                                f"{EXPORT_KIND} export (from `ganprint train-diffusion`) or a diffusers "
                                "save_pretrained folder")
        unet, noise = parse_export_config(json.loads(meta["ganprint.config"]))
    if unet.resolution != cfg.resolution:
        raise GanprintError(f"`resume_from` {resume_from} is a {unet.resolution}-px model but `preset`/`resolution` "
                            f"asks for {cfg.resolution} px; give `resolution` {unet.resolution} (or leave it out)")
    return dataclasses.replace(cfg, unet=unet, noise=noise)


def model_resolution(resume_from: str | os.PathLike) -> int:
    """The image side of the model `resume_from` names (an export or a diffusers folder), read from its config."""
    if Path(resume_from).is_dir():
        return read_diffusers(resume_from, weights=False)[1].resolution
    kind = read_metadata(resume_from).get("ganprint.kind")
    if kind != EXPORT_KIND:  # before its config is parsed as a UNet's
        raise GanprintError(f"`resume_from` {resume_from} is a {kind!r} export, not a {EXPORT_KIND} one: give a "
                            f"train-diffusion export or a diffusers save_pretrained folder")
    return parse_export_config(read_config(resume_from))[0].resolution


def resolve_run_config(preset: str | None, resolution: int | None, resume_from: str | os.PathLike | None = None,
                       config_file: str | os.PathLike | None = None, **overrides) -> DiffusionTrainConfig:
    """`resolve_config` (from `preset` or a run's `config_file`), then the architecture of the model `resume_from`
    fine-tunes; without `resolution` the model's own image side is used."""
    if resume_from is None:
        return resolve_config(preset, resolution, config_file, **overrides)
    side = model_resolution(resume_from) if resolution is None else resolution
    cfg = resolve_config(preset, side, config_file, **overrides)
    return config_from_export(cfg, str(resume_from))


def _start_weights(resume_from: str) -> torch.nn.Module:
    """The UNet whose weights start a fine-tuning run."""
    if Path(resume_from).is_dir():
        return read_diffusers(resume_from)[0]
    return load_export(resume_from, kind=EXPORT_KIND)[0]


def run_config(cfg: DiffusionTrainConfig, data: Dataset | str | os.PathLike, resume_from: str | None = None) -> dict:
    """What config.json holds (and a dry run prints): the config, the `data` path ("" for a Dataset) and the export
    fine-tuned. The data path is there so that resuming a run on other data is refused, as by the other trainers."""
    return {**cfg.to_dict(), "data": "" if isinstance(data, Dataset) else str(data), "resume_from": resume_from}


def _recorded_data(outdir: Path, config: dict) -> dict:
    """`config` without its data path when `outdir` holds a run written before config.json recorded it (so that it
    still resumes); an unreadable config.json is left to the config guard's error."""
    try:
        old = read_input_json(outdir / CONFIG_FILE, "the run's config")
    except (OSError, ValueError):  # GanprintError is a ValueError
        return config
    return config if not isinstance(old, dict) or "data" in old else {k: v for k, v in config.items() if k != "data"}


def _is_legacy(path: Path) -> bool:
    try:  # mmap: only the keys are read, not the tensors
        return "cur_nimg" in torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - an unreadable state is left to TrainingState.restore's error
        return False


def adopt_legacy_states(outdir: Path, batch_size: int) -> Path | None:
    """Rewrite the training state of a run folder started before the training kit in the kit's form; returns it.

    Those states were numbered by images seen and held `cur_nimg` / `cur_tick`; the kit numbers states by step
    (images seen / batch) and would take a legacy file's larger number for the newest state. The new file is
    written before the legacy ones are removed, so a kill in between only repeats the conversion.
    """
    legacy = [p for p in sorted(outdir.glob("training-state-*.pt")) if _is_legacy(p)]
    if not legacy:
        return None
    old = torch.load(legacy[-1], map_location="cpu", weights_only=True)
    nimg = int(old["cur_nimg"])
    if nimg % batch_size:
        raise GanprintError(f"{legacy[-1]} was written at {nimg} images, not a multiple of `batch_size` {batch_size}; "
                            "use a new `outdir`")
    step = nimg // batch_size
    state = {"unet": old["unet"], "ema": old["ema"], "opt": old["opt"], "step": step, "nimg": nimg,
             "elapsed": float(old["elapsed"]), "counters": {"tick": int(old["cur_tick"])}}
    path = outdir / f"training-state-{step:08d}.pt"
    try:
        with atomic_path(path) as tmp:
            torch.save(state, tmp)
    except (OSError, RuntimeError) as e:  # torch.save reports a full disk as RuntimeError
        raise write_error(e, outdir, path) from None
    for p in legacy:
        if p != path:
            p.unlink(missing_ok=True)
    log.info("converted %s (written before the training kit) to %s", legacy[-1].name, path.name)
    return path


class DiffusionRun:
    """One run of `train_diffusion`: UNet, EMA UNet, Adam and the training state, on this process's device.

    A trainer that denoises something other than pixels (ganprint.latent) subclasses it: `to_x0` maps a batch of
    pixels to what is denoised, `start_weights` reads the model it fine-tunes, `grid` and `write_exports` make its
    snapshots; FINAL names the export of the finished run, COMMAND the command that trains.
    """

    FINAL = "network-final.safetensors"
    COMMAND = "train-diffusion"

    def __init__(self, cfg: DiffusionTrainConfig, run: RunFolder, dev: torch.device, resume_from: str | None):
        self.cfg, self.run, self.dev = cfg, run, dev
        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        torch.manual_seed(derive_seed(cfg.seed, 0))  # identical initial weights on every rank
        self.unet = build_unet(cfg.unet).to(dev).train()
        if resume_from is not None:
            self.unet.load_state_dict(self.start_weights(resume_from).state_dict())
        self.ema = EMA(self.unet, cfg.ema_kimg, cfg.ema_rampup)
        self.opt = torch.optim.Adam(self.unet.parameters(), lr=cfg.lr)
        self.net = self.unet
        if self.world > 1:
            ids = [dev.index] if dev.type == "cuda" else None
            self.net = torch.nn.parallel.DistributedDataParallel(self.unet, device_ids=ids)
        self.sched = make_scheduler("ddpm", cfg.noise)
        self.state = TrainingState(run.outdir, {"unet": self.unet, "ema": self.ema, "opt": self.opt}, tick=0)
        if self.rank == 0:
            adopt_legacy_states(run.outdir, cfg.batch_size)
        dist.barrier()
        self.state.restore()
        run.rewind(self.state.counters["tick"], key="tick")  # stats rows carry the tick, not the step
        self.total_nimg = round(cfg.total_kimg * 1000)

    def start_weights(self, resume_from: str) -> torch.nn.Module:
        return _start_weights(resume_from)

    def to_x0(self, pixels: torch.Tensor) -> torch.Tensor:
        """What is noised and denoised, from a batch of images in [-1, 1]: here the images themselves."""
        return pixels

    def step(self, img_u8: torch.Tensor) -> float:
        """One optimiser step on a uint8 batch; returns the batch loss (mean over ranks)."""
        cfg, dev, st = self.cfg, self.dev, self.state
        torch.manual_seed(derive_seed(cfg.seed, self.rank, st.nimg))  # dropout
        g = torch.Generator(device=dev).manual_seed(derive_seed(cfg.seed, self.rank, st.nimg, 1))
        x = img_u8.to(dev).float() / 127.5 - 1
        if cfg.mirror:
            flip = torch.rand(x.shape[0], generator=g, device=dev) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(3), x)
        x0 = self.to_x0(x)
        t = torch.randint(0, cfg.noise.timesteps, (x0.shape[0],), generator=g, device=dev)
        eps = torch.randn(x0.shape, generator=g, device=dev)
        xt = self.sched.add_noise(x0, eps, t)
        target = eps if cfg.noise.prediction_type == "epsilon" else self.sched.get_velocity(x0, eps, t)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cfg.amp and dev.type == "cuda"):
            pred = self.net(xt, t, return_dict=False)[0]
        loss = F.mse_loss(pred.float(), target)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()  # DistributedDataParallel averages the gradients over the ranks
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.unet.parameters(), cfg.grad_clip)
        warm = cfg.warmup_kimg * 1000
        for group in self.opt.param_groups:
            group["lr"] = cfg.lr * min(1.0, (st.nimg + cfg.batch_size) / warm) if warm > 0 else cfg.lr
        self.opt.step()
        st.step, st.nimg = st.step + 1, st.nimg + cfg.batch_size
        self.ema.update(self.unet, st.nimg, cfg.batch_size)
        return float(dist.all_reduce_mean(loss.detach()).item())

    def tick(self, means: dict[str, float], start_nimg: int, seconds: float, bar=None) -> None:
        """Close a tick: one stats.jsonl row, the bar's figures and a status line (on the console only without a
        bar; always in log.txt)."""
        st = self.state
        st.elapsed += seconds
        st.counters["tick"] += 1
        row = {"tick": st.counters["tick"], "kimg": round(st.nimg / 1000, 3),
               "sec_per_kimg": round(seconds / max((st.nimg - start_nimg) / 1000, 1e-9), 3),
               "elapsed_s": round(st.elapsed, 1), "loss": round(means.get("loss", 0.0), 5),
               "lr": self.opt.param_groups[0]["lr"]}
        self.run.append(row)
        if self.rank == 0:
            if bar is not None:
                bar.set_postfix(loss=f"{row['loss']:.4f}", refresh=False)
            status_line(log, bar, "tick %-4d kimg %-8.3f sec/kimg %-7.2f loss %.4f", row["tick"], row["kimg"],
                        row["sec_per_kimg"], row["loss"])

    def grid(self) -> np.ndarray:
        """The snapshot grid's images (uint8 [N, R, R, 3]) of seeds 0..grid_seeds-1, from the EMA weights."""
        cfg = self.cfg
        return sample_seeds(self.ema.module, cfg.noise, list(range(cfg.grid_seeds)), "ddim", cfg.grid_steps,
                            self.dev, batch_size=16, dtype=torch.float32)

    def write_exports(self, final: bool, meta: dict[str, str]) -> None:
        """network-<nimg>.safetensors (and FINAL when `final`) from the EMA weights."""
        econf, out = export_config(self.cfg.unet, self.cfg.noise), self.run.outdir
        # Exports are named by images seen: exact, even for sub-kimg snapshot intervals.
        export(out / f"network-{self.state.nimg:09d}.safetensors", self.ema.module, EXPORT_KIND, econf, meta)
        if final:
            export(out / self.FINAL, self.ema.module, EXPORT_KIND, econf, meta)

    def snapshot(self, final: bool) -> None:
        """The sample grid, the EMA exports and the training state."""
        cfg, st, out = self.cfg, self.state, self.run.outdir
        if self.rank == 0:
            if cfg.grid_seeds:
                save_grid(out / SNAPSHOT_DIR / f"fakes-{st.step:08d}.png", self.grid())
            meta = st.export_metadata(cfg.seed)
            self.write_exports(final, meta)
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
        with progress_bar(self.total_nimg, self.COMMAND, initial=st.nimg) as bar:
            while st.nimg < self.total_nimg:
                meter.add({"loss": self.step(next(batches))})
                bar.update(cfg.batch_size)
                done = st.nimg >= self.total_nimg
                if clock.due("tick", st.nimg, done):
                    self.tick(meter.means(over_ranks=False), start_nimg, time.time() - start_time, bar)
                    start_nimg, start_time = st.nimg, time.time()
                clock.after_step(st.nimg, done, self.snapshot, st.save)

    def result(self) -> dict:
        st = self.state
        return {"cur_nimg": st.nimg, "step": st.step, "outdir": str(self.run.outdir), "elapsed_s": st.elapsed,
                "unet": self.unet, "ema": self.ema.module}


def train_diffusion(cfg: DiffusionTrainConfig, outdir: str | os.PathLike,
                    data: Dataset | str | os.PathLike | None = None, device: str = "auto", resume_from: str | os.PathLike | None = None,
                    checkpoint_minutes: float = 5.0, workers: int = 0) -> dict:
    """Train (or resume) a diffusion UNet on `data` (a Dataset of {"img": uint8 [3, R, R]} items, or a folder of
    images / packed data set; None: `cfg.data`) until `cfg.total_kimg`.

    Writes into `outdir` (rank 0): config.json, log.txt, stats.jsonl, snapshots/ (reals.png, fakes-<step>.png),
    network-<nimg>.safetensors, network-final.safetensors (EMA weights, kind diffusion-unet) and
    training-state-<step>.pt (also every `checkpoint_minutes`). `resume_from`: a diffusion-unet export, or a
    diffusers save_pretrained folder of a UNet2DModel (or of its pipeline), whose weights start the run (its UNet
    and noise settings replace the preset's). Returns {"cur_nimg", "step", "outdir",
    "elapsed_s", "unet", "ema"} (this process's modules). `workers` processes decode images that do not fit in
    memory.
    """
    bounds.MINUTES.check(checkpoint_minutes, "`checkpoint_minutes`")
    bounds.WORKERS.check(workers, "`workers`")
    data = cfg.data if data is None else data
    if not isinstance(data, Dataset) and not str(data):
        raise GanprintError("train-diffusion needs `data`: a folder of images or a packed data set")
    resume = None if resume_from is None else str(resume_from)
    inputs = [("`resume_from`", resume, "model")]
    check_outdir(outdir, None if isinstance(data, Dataset) else data, inputs)  # before reading the export
    if resume is not None:
        cfg = config_from_export(cfg, resume)
    cfg.validate()
    job = TrainJob(DiffusionRun, cfg.resolution, tuple(inputs), run_config(cfg, data, resume))
    return run_training(cfg, outdir, data, device, resume, checkpoint_minutes, workers, job)


@dataclasses.dataclass(frozen=True)
class TrainJob:
    """What differs between the trainers built on `DiffusionRun`: the run class (and its further keyword
    arguments, `options`), the side of the training images, the path inputs that `outdir` must keep clear of
    (flag, path, noun) and what config.json records."""

    run_class: type[DiffusionRun]
    resolution: int
    inputs: tuple[tuple, ...]
    record: dict
    options: dict = dataclasses.field(default_factory=dict)
    resolution_from: str = "`resolution`"  # what set `resolution`, for the message on images of another side


def run_training(cfg: DiffusionTrainConfig, outdir: str | os.PathLike, data: Dataset | str | os.PathLike,
                 device: str, resume: str | None, checkpoint_minutes: float, workers: int, job: TrainJob) -> dict:
    """Open the run folder and the data, then train (or resume) the run `job` describes until `cfg.total_kimg`."""
    dev = start_processes(device, cfg.batch_size, float32=True)
    run = RunFolder(outdir, _recorded_data(Path(outdir), job.record), RUNTIME_FIELDS,
                    data=None if isinstance(data, Dataset) else data, command=job.run_class.COMMAND, device=dev,
                    inputs=job.inputs).check()
    dataset = open_training_data(data, job.resolution, resolution_from=job.resolution_from)
    order = EpochOrder(len(dataset), cfg.batch_size, cfg.seed, _TAG_ORDER, dist.get_rank(), dist.get_world_size())
    batches = Batches(dataset, order, workers, PRELOAD_BYTES)
    with run:
        trainer = job.run_class(cfg, run, dev, resume, **job.options)
        save_reals(run.outdir, batches, range(min(max(cfg.grid_seeds, 1), len(dataset))))
        log.info("training %s on %d images: %d px, batch %d over %d process(es), %.3f -> %.3f kimg on %s",
                 cfg.preset, len(dataset), job.resolution, cfg.batch_size, dist.get_world_size(),
                 trainer.state.nimg / 1000, cfg.total_kimg, dev)
        if trainer.state.nimg >= trainer.total_nimg:
            if not (run.outdir / trainer.FINAL).exists():
                trainer.snapshot(final=True)
        else:
            trainer.loop(batches, checkpoint_minutes)
        return trainer.result()
