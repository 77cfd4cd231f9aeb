"""Training of the fingerprint autoencoder (Artificial Fingerprinting, Yu et al. ICCV 2021).

`train_stega` builds everything from a resolved `TrainConfig` and runs it in the shared run folder
(ganprint.training). Every random draw (data order, fingerprints, augmentation) is a pure function of
(seed, rank, step), so re-running the same command resumes a run exactly where its newest training state left
off, and 2 steps + resume + 2 steps equals 4 steps.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ganprint.artificial.config import RUNTIME_FIELDS, TrainConfig
from ganprint.core import bounds
from ganprint.core import dist
from ganprint.core.progress import progress_bar
from ganprint.core.seeds import derive_seed
from ganprint.core.specs import Spec
from ganprint.nets.stega import StegaConfig, StegaDecoderOnly, StegaModel, stega_config_dict
from ganprint.perturb.augment import build_augment
from ganprint.training.grids import save_grid
from ganprint.training.optim import average_gradients
from ganprint.training.clock import Clock, Meter, mean_over_ranks
from ganprint.training.data import DEFAULT_CACHE_BYTES, Batches, EpochOrder, open_training_data
from ganprint.training.run import SNAPSHOT_DIR, RunFolder, export, start_processes
from ganprint.training.state import TrainingState

log = logging.getLogger(__name__)

# Seed-stream tags, so that the bits, the data order and the augmentation never share a stream.
_TAG_INIT, _TAG_ORDER, _TAG_BITS, _TAG_AUG = 1, 2, 3, 4


# --- model set-up ---------------------------------------------------------------------------------


def init_weights(model: nn.Module, scheme: str, seed: int) -> None:
    """Re-initialise `model` deterministically from `seed`.

    "torch" keeps PyTorch's default init (as the original). "he" draws He-normal weights for ReLU with zero
    biases, which keeps the activation scale through the 15-layer encoder and 9-layer decoder; PyTorch's default
    (gain 1/sqrt(3) per layer) shrinks it layer after layer, so the encoder's output barely depends on its inputs
    and the bit gradient vanishes.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, _TAG_INIT))
        for mod in model.modules():
            if isinstance(mod, (nn.Conv2d, nn.Linear)):
                mod.reset_parameters()
                if scheme == "he":
                    nn.init.kaiming_normal_(mod.weight, nonlinearity="relu")
                    nn.init.zeros_(mod.bias)
        if scheme == "he":
            for enc in [m for m in model.modules() if hasattr(m, "residual") and isinstance(m.residual, nn.Conv2d)]:
                # The output layer feeds a sigmoid with no ReLU after it: start it small (linear regime).
                nn.init.normal_(enc.residual.weight, std=1e-2)


def _amp_dtype(device: torch.device, amp: bool) -> torch.dtype | None:
    if not amp:
        return None
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16


def lr_at(cfg: TrainConfig, step: int, total: int) -> float:
    """The learning rate of `step` (0-based) in a run of `total` steps: warm-up, then constant or cosine."""
    lr = cfg.lr * min(1.0, (step + 1) / cfg.lr_warmup) if cfg.lr_warmup else cfg.lr
    if cfg.lr_schedule != "cosine":
        return lr
    main = total - cfg.decoder_polish
    start, length = (main, cfg.decoder_polish) if step >= main else (0, main)  # each phase anneals on its own
    t = (step - start) / max(1, length - 1)
    return lr * (cfg.lr_min_ratio + (1 - cfg.lr_min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))


# --- the L2 schedule --------------------------------------------------------------------------------


class L2Schedule:
    """The image-loss weight per step (see TrainConfig): accuracy gate, then a ramp or a PSNR controller."""

    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg
        self.since = -1  # steps since the gate opened (-1 = closed), as the original's steps_since_l2_loss_activated
        self.log_w = math.log(max(cfg.l2_weight, 1e-6))

    def weight(self) -> float:
        c = self.cfg
        if self.since < 0:
            return 0.0
        if c.l2_schedule == "gated":
            if c.l2_ramp == 0:
                return c.l2_weight if self.since >= c.l2_await else 0.0
            return float(np.clip(c.l2_weight * (self.since - c.l2_await) / c.l2_ramp, 0.0, c.l2_weight))
        return math.exp(self.log_w) if self.since >= c.l2_await else 0.0

    def update(self, bit_acc: float, mse: float) -> None:
        """Advance one step given this step's (all-rank mean) batch bit accuracy and image MSE."""
        c = self.cfg
        if self.since < 0:
            if bit_acc > c.l2_threshold:
                self.since = 0
            return
        if c.l2_schedule == "psnr" and self.since >= c.l2_await:
            # Multiplicative controller: bits first (lower the weight while the batch accuracy is under the
            # floor), then raise it slowly while the PSNR is below target and lower it above. A fast controller
            # (or a large fixed weight) lets the image loss swamp the bit loss and the bits collapse to 0.5.
            psnr = 10 * math.log10(1 / max(mse, 1e-12))
            delta = -10 * c.psnr_rate if bit_acc < c.psnr_acc_floor else c.psnr_rate * (c.target_psnr - psnr)
            self.log_w = float(np.clip(self.log_w + delta, math.log(1e-3), math.log(1e4)))
        self.since += 1

    def state_dict(self) -> dict:
        return {"since": self.since, "log_w": self.log_w}

    def load_state_dict(self, d: dict) -> None:
        self.since, self.log_w = int(d["since"]), float(d["log_w"])


# --- outputs ----------------------------------------------------------------------------------------


def write_snapshot(model: StegaModel, clean: torch.Tensor, bits: torch.Tensor, path: Path) -> None:
    """PNG rows: clean | fingerprinted | residual amplified (|x̂ - x| x 10, centred at gray)."""
    with torch.no_grad():
        fp = model.enc(bits, clean).float()
    rows = torch.cat([clean.float(), fp, (0.5 + 10 * (fp - clean.float())).clamp(0, 1)])
    save_grid(path, rows, cols=len(clean), value_range=(0.0, 1.0))


def export_model(model: StegaModel, path: Path, extra: dict | None = None) -> Path:
    """Write the encoder+decoder export (kind `stega`)."""
    return export(path, model, "stega", stega_config_dict(model.cfg), extra=extra)


def export_decoder(model: nn.Module, path: Path, extra: dict | None = None) -> Path:
    """Write a decoder-only export (kind `stega-decoder`) from a StegaModel or StegaDecoderOnly."""
    dec_only = StegaDecoderOnly(model.cfg)
    dec_only.dec.load_state_dict(model.dec.state_dict())
    return export(path, dec_only, "stega-decoder", stega_config_dict(model.cfg), extra=extra)


# --- the loss -----------------------------------------------------------------------------------------


class StegaLoss:
    """The losses of one step, by phase: "warmup" (the encoder alone reproduces its input image, so that bits
    are later embedded into the image, not into a flat gray), "main" (bits + image loss), "polish" (the decoder
    alone reads 8-bit-rounded fingerprinted images, exactly what deployment gives it)."""

    def __init__(self, model: StegaModel, net: nn.Module, cfg: TrainConfig, aug, amp_dtype: torch.dtype | None,
                 scaler: torch.amp.GradScaler):
        self.model, self.net, self.cfg, self.aug = model, net, cfg, aug  # net: the DDP wrapper, or model itself
        self.amp_dtype, self.scaler, self.rank = amp_dtype, scaler, dist.get_rank()

    def _autocast(self, device: torch.device):
        return torch.autocast(device.type, dtype=self.amp_dtype or torch.bfloat16, enabled=self.amp_dtype is not None)

    def accumulate_gradients(self, phase: str, x: torch.Tensor, bits: torch.Tensor, w_l2: float, step: int,
                             total: int) -> torch.Tensor:
        """Backpropagate the phase's loss into .grad (averaged over ranks); returns this rank's statistics by name:
        loss, bce, l2 (the image MSE), bit_acc and, when augmented, bit_acc_augmented."""
        m, dev = self.model, x.device
        with self._autocast(dev):
            if phase == "polish":
                with torch.no_grad():
                    fp = (m.enc(bits, x).float() * 255).round() / 255
                logits = m.dec(fp)
            elif phase == "warmup":
                fp, logits = m.enc(bits, x), None
            else:
                fp, logits = self.net(bits, x)
        fp = fp.float()
        l2 = F.mse_loss(fp, x)
        if logits is None:
            bce = torch.zeros((), device=dev)
            acc = acc_aug = torch.full((), 0.5, device=dev)
            loss = l2
        else:
            bce, acc, acc_aug = self._bit_loss(fp, logits.float(), bits, step, total)
            loss = self.cfg.bce_weight * bce + w_l2 * l2
        self.scaler.scale(loss).backward()
        if phase != "main":  # these phases bypass the DDP wrapper (half the model is idle)
            average_gradients((m.enc if phase == "warmup" else m.dec).parameters())
        stats = {"loss": loss, "bce": bce, "l2": l2, "bit_acc": acc}
        if self.aug is not None:
            stats["bit_acc_augmented"] = acc_aug
        return {k: v.detach().double().cpu() for k, v in stats.items()}

    def _bit_loss(self, fp: torch.Tensor, logits: torch.Tensor, bits: torch.Tensor, step: int, total: int):
        bce = F.binary_cross_entropy_with_logits(logits, bits)
        acc = acc_aug = ((logits > 0).float() == bits).float().mean()
        if self.aug is not None:
            # Immunized: the decoder reads a perturbed copy too. The clean read stays in the loss and steers the L2
            # controller, so the fidelity/accuracy balance is set on clean images while the perturbed read buys
            # robustness.
            dev = fp.device
            with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
                torch.manual_seed(derive_seed(self.cfg.seed, _TAG_AUG, self.rank, step))
                fp_aug = self.aug(fp, step / max(1, total - 1))
            with self._autocast(dev):
                logits_aug = self.model.dec(fp_aug).float()
            bce = 0.5 * (bce + F.binary_cross_entropy_with_logits(logits_aug, bits))
            acc_aug = ((logits_aug > 0).float() == bits).float().mean()
        return bce, acc, acc_aug


# --- the run ------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class StegaRunSpec(Spec):
    """How a `train_stega` run is carried out (none of it changes what it computes): where, decoding, outputs."""

    device: str | None = None  # "auto" | "cpu" | "cuda"; None = the config's
    workers: int = 0  # DataLoader worker processes (decoding only; cached data needs none)
    snapshot_every: int = 500  # steps between snapshots/<step>.png (0 = final only)
    checkpoint_every: int = 1000  # steps between training-state-*.pt and export-<step>.safetensors (0 = final only)
    checkpoint_minutes: float = 5.0  # also a training state when this long has passed since the last (0 = never)
    log_every: int = 50  # steps per stats.jsonl row
    cache_bytes: int = DEFAULT_CACHE_BYTES  # keep decoded images in memory when the data set fits (0 = never)
    progress: bool | None = None  # tqdm.auto bar on rank 0; None = where someone watches (ganprint.core.progress)

    def check(self) -> None:
        for name, bound in (("workers", bounds.WORKERS), ("snapshot_every", bounds.STEPS0),
                            ("checkpoint_every", bounds.STEPS0), ("checkpoint_minutes", bounds.MINUTES),
                            ("log_every", bounds.STEPS)):
            bound.check(getattr(self, name), f"`{name}`")


class _StegaRun:
    """One run of `train_stega`: the networks, their training state, and the loop's outputs."""

    def __init__(self, cfg: TrainConfig, run: RunFolder, dev: torch.device, data: Batches, aug):
        self.cfg, self.run, self.dev, self.data = cfg, run, dev, data
        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        n = len(data)
        self.total = cfg.steps if cfg.steps is not None else max(1, cfg.epochs * n // cfg.batch_size)
        model = StegaModel(StegaConfig(cfg.resolution, cfg.fingerprint_length)).to(dev)
        init_weights(model, cfg.init, cfg.seed)
        self.model = model.to(memory_format=torch.channels_last)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=cfg.lr)
        amp_dtype = _amp_dtype(dev, cfg.amp)
        self.scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
        self.sched = L2Schedule(cfg)
        self.state = TrainingState(run.outdir, {"model": self.model, "opt": self.opt, "scaler": self.scaler,
                                                "sched": self.sched})
        self.state.restore()
        run.rewind(self.state.step)
        net = self.model
        if self.world > 1:  # built after the restore, so that every rank starts from the saved weights
            net = nn.parallel.DistributedDataParallel(self.model,
                                                      device_ids=[dev.index] if dev.type == "cuda" else None)
        self.loss = StegaLoss(self.model, net, cfg, aug, amp_dtype, self.scaler)
        # A fixed snapshot batch: the first 8 images of the data set with fingerprints of seed `seed`.
        snap_n = min(8, n)
        self.snap_x = data.images(range(snap_n)).to(dev).float().div(255)
        g = torch.Generator().manual_seed(derive_seed(cfg.seed, _TAG_BITS, -1))
        self.snap_bits = torch.randint(0, 2, (snap_n, cfg.fingerprint_length), generator=g).float().to(dev)

    def step(self, x_u8: torch.Tensor) -> tuple[dict[str, float], float, float]:
        """One optimiser step; returns the all-rank mean statistics, the lr and the L2 weight used."""
        cfg, step = self.cfg, self.state.step
        x = x_u8.to(self.dev, non_blocking=True).float().div_(255).contiguous(memory_format=torch.channels_last)
        g = torch.Generator().manual_seed(derive_seed(cfg.seed, _TAG_BITS, self.rank, step))
        bits = torch.randint(0, 2, (len(x), cfg.fingerprint_length), generator=g).float().to(self.dev)
        phase = ("warmup" if step < cfg.identity_warmup else
                 "polish" if step >= self.total - cfg.decoder_polish else "main")
        lr = lr_at(cfg, step, self.total)
        for group in self.opt.param_groups:
            group["lr"] = lr
        w_l2 = self.sched.weight()
        self.opt.zero_grad(set_to_none=True)
        stats = self.loss.accumulate_gradients(phase, x, bits, w_l2, step, self.total)
        self.scaler.step(self.opt)
        self.scaler.update()
        stats = mean_over_ranks(stats)
        if phase == "main":
            self.sched.update(stats["bit_acc"], stats["l2"])
        return stats, lr, w_l2

    def log_row(self, m: dict[str, float], lr: float, w_l2: float, images_per_s: float, bar, callback) -> bool:
        """Append the interval's stats row; returns True when the callback (rank 0) asks to stop."""
        step = self.state.step
        row = {"step": step, "loss": m["loss"], "bce": m["bce"], "l2": m["l2"], "l2_weight": w_l2,
               "bit_acc": m["bit_acc"], "psnr": 10 * math.log10(1 / max(m["l2"], 1e-12)), "lr": lr,
               "images_per_s": images_per_s, "elapsed_s": self.state.elapsed}
        if "bit_acc_augmented" in m:
            row["bit_acc_augmented"] = m["bit_acc_augmented"]
        bar.set_postfix(bit_acc=f"{m['bit_acc']:.3f}", psnr=f"{row['psnr']:.1f}")
        self.run.append(row)
        stopped = False
        if self.rank == 0 and callback is not None:
            self.model.eval()
            stopped = bool(callback(step, self.model))
            self.model.train()
        return bool(dist.all_gather_object(stopped)[0])

    def checkpoint(self, final: bool) -> None:
        """A training state, and (but at the end, which writes the final exports) export-<step>.safetensors."""
        step = self.state.step
        self.state.save()
        if not final and self.rank == 0:
            export_model(self.model, self.run.outdir / f"export-{step:08d}.safetensors",
                         extra={"ganprint.step": str(step)})
        self.run.write_curves()

    def outputs(self, last: bool, clock: Clock) -> None:
        """The snapshot grid, and the training state (by steps or by time) due after this step."""
        step = self.state.step
        if self.rank == 0 and clock.due("grid", step, last):
            self.model.eval()
            write_snapshot(self.model, self.snap_x, self.snap_bits, self.run.outdir / SNAPSHOT_DIR / f"{step:08d}.png")
            self.model.train()
        clock.after_step(step, last, self.checkpoint, self.state.save)

    def loop(self, spec: StegaRunSpec, progress: bool | None, callback) -> None:
        st, cfg = self.state, self.cfg
        batches = self.data.stream(st.step, self.total)
        bar = progress_bar(self.total, "train", "step", progress, initial=st.step)
        clock = Clock(1, spec.checkpoint_minutes, tick=spec.log_every, snapshot=spec.checkpoint_every,
                      grid=spec.snapshot_every)
        meter, count, t0 = Meter(), 0, time.perf_counter()
        self.model.train()
        stopped = False
        while st.step < self.total and not stopped:
            t_step = time.perf_counter()
            stats, lr, w_l2 = self.step(next(batches))
            meter.add(stats)
            count += 1
            st.step, st.nimg = st.step + 1, st.nimg + cfg.batch_size
            st.elapsed += time.perf_counter() - t_step
            bar.update(1)
            if clock.due("tick", st.step, st.step == self.total):
                rate = count * cfg.batch_size / max(time.perf_counter() - t0, 1e-9)
                stopped = self.log_row(meter.means(over_ranks=False), lr, w_l2, rate, bar, callback)
                count, t0 = 0, time.perf_counter()
            self.outputs(st.step == self.total or stopped, clock)
        bar.close()

    def finish(self, finished_before: bool) -> Path:
        out, step = self.run.outdir, self.state.step
        final, decoder = out / "model.safetensors", out / "model-decoder.safetensors"
        if finished_before and final.is_file() and decoder.is_file():
            # A re-run of a finished run changes nothing: the exports (and their hashes, which embed runs record) stay.
            log.info("%s already finished at step %d; nothing to do", out, step)
            return final
        if self.rank == 0:
            extra = {"ganprint.step": str(step),
                     "ganprint.train_config": json.dumps(self.cfg.to_dict(), sort_keys=True)}
            export_model(self.model, final, extra=extra)
            export_decoder(self.model, decoder, extra=extra)
            log.info("wrote %s and %s after %d steps", final, decoder, step)
        dist.barrier()
        return final


def train_stega(cfg: TrainConfig, outdir: str | os.PathLike, data=None, spec: StegaRunSpec | None = None,
                callback: Callable[[int, StegaModel], bool] | None = None, **options: Any) -> Path:
    """Train (or resume) the fingerprint encoder/decoder; returns the path of the final `model.safetensors`.

    data: a Dataset of {"img": uint8 [3, R, R]} items or a uint8 tensor [N, 3, R, R]; None opens `cfg.data`.
    spec (or its fields as keyword arguments): how the run is carried out (`StegaRunSpec`).
    callback: called on rank 0 after each stats row with (step, model); True stops the run.
    """
    cfg.validate()
    spec = StegaRunSpec.of(spec, **options)
    dev = start_processes(spec.device or cfg.device, cfg.batch_size)
    run = RunFolder(outdir, cfg.to_dict(), RUNTIME_FIELDS, data=cfg.data, command="train", device=dev).check()
    aug = build_augment(cfg.augment, skew=cfg.augment_skew) if cfg.augment else None  # a bad spec writes nothing
    ds = open_training_data(cfg.data if data is None else data, cfg.resolution, celeba=cfg.celeba)
    order = EpochOrder(len(ds), cfg.batch_size, cfg.seed, _TAG_ORDER, dist.get_rank(), dist.get_world_size())
    with run:
        # Decoding the PNGs of a batch costs a good part of a step: decoded once if the set fits in memory.
        trainer = _StegaRun(cfg, run, dev, Batches(ds, order, spec.workers, spec.cache_bytes), aug)
        finished_before = trainer.state.step >= trainer.total
        log.info("training %d-bit fingerprints at %d px on %d images: steps %d -> %d, batch %d on %d process(es)",
                 cfg.fingerprint_length, cfg.resolution, len(ds), trainer.state.step, trainer.total, cfg.batch_size,
                 trainer.world)
        trainer.loop(spec, spec.progress, callback)
        return trainer.finish(finished_before)
