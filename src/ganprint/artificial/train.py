"""Training loop of the fingerprint autoencoder (Artificial Fingerprinting, Yu et al. ICCV 2021, papers.md §1.4).

One function, `train_stega`, constructs everything from a resolved `TrainConfig`. Every random draw (data order,
fingerprints, augmentation) is a pure function of (seed, rank, step), so re-running the same command resumes a
run exactly where its newest training state left off, and 2 steps + resume + 2 steps equals 4 steps.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ganprint.artificial.config import RUNTIME_FIELDS, TrainConfig
from ganprint.core import dist
from ganprint.core.artifacts import latest_training_state, load_training_state, save_export, save_training_state
from ganprint.core.errors import GanprintError
from ganprint.core.files import append_jsonl, atomic_path, atomic_write_json
from ganprint.core.seeds import derive_seed
from ganprint.nets.stega import StegaConfig, StegaDecoderOnly, StegaModel, stega_config_dict

log = logging.getLogger(__name__)

# Decoded uint8 images are kept in RAM up to this many bytes (32 px: 3 KiB each, so ~170k images).
DEFAULT_CACHE_BYTES = 512 * 2**20
# Seed-stream tags, so that the bits, the data order and the augmentation never share a stream.
_TAG_INIT, _TAG_ORDER, _TAG_BITS, _TAG_AUG = 1, 2, 3, 4


# --- data ---------------------------------------------------------------------------------------


def sample_order(seed: int, epoch: int, n: int) -> torch.Tensor:
    """The permutation of `n` items used in `epoch` (a pure function of seed and epoch)."""
    g = torch.Generator().manual_seed(derive_seed(seed, _TAG_ORDER, epoch))
    return torch.randperm(n, generator=g)


class StepBatchSampler(torch.utils.data.Sampler):
    """Yields, for steps start..stop-1, this rank's batch of dataset indices.

    Global sample position p = step * batch + rank * per_rank + i walks through per-epoch permutations, so
    the data order depends only on (seed, step) and the total batch, never on interruptions.
    """

    def __init__(self, n: int, batch: int, seed: int, start: int, stop: int, rank: int = 0, world: int = 1):
        assert batch % world == 0, "batch must be divisible by the world size"
        self.n, self.batch, self.seed, self.start, self.stop = n, batch, seed, start, stop
        self.rank, self.per_rank = rank, batch // world
        self._perm: tuple[int, torch.Tensor] | None = None

    def _perm_of(self, epoch: int) -> torch.Tensor:
        if self._perm is None or self._perm[0] != epoch:
            self._perm = (epoch, sample_order(self.seed, epoch, self.n))
        return self._perm[1]

    def batch_indices(self, step: int) -> list[int]:
        first = step * self.batch + self.rank * self.per_rank
        return [int(self._perm_of(p // self.n)[p % self.n]) for p in range(first, first + self.per_rank)]

    def __iter__(self):
        for step in range(self.start, self.stop):
            yield self.batch_indices(step)

    def __len__(self) -> int:
        return max(0, self.stop - self.start)


def _item_img(item: Any) -> torch.Tensor:
    img = item["img"] if isinstance(item, dict) else item[0] if isinstance(item, (tuple, list)) else item
    return torch.as_tensor(img)


def _collate_u8(items: list) -> torch.Tensor:
    return torch.stack([_item_img(it) for it in items])  # [N, 3, R, R] uint8


def cache_dataset(ds, resolution: int, max_bytes: int = DEFAULT_CACHE_BYTES, workers: int = 0) -> torch.Tensor | None:
    """Decode a whole dataset into one uint8 tensor [N, 3, R, R] if it fits in `max_bytes`, else None."""
    n = len(ds)
    if n * 3 * resolution * resolution > max_bytes:
        return None
    loader = torch.utils.data.DataLoader(ds, batch_size=256, shuffle=False, num_workers=workers,
                                         collate_fn=_collate_u8)
    out = torch.cat(list(loader)) if n else torch.empty(0, 3, resolution, resolution, dtype=torch.uint8)
    return out


def open_training_data(cfg: TrainConfig, data=None):
    """The training dataset: `data` as given (a Dataset or a uint8 tensor [N,3,R,R]) or opened from cfg.data."""
    if data is not None:
        return data
    if not cfg.data:
        raise GanprintError("no training data: pass --data DIR (a folder of images, e.g. from `ganprint data samples`)")
    if not Path(cfg.data).exists():
        raise GanprintError(f"--data {cfg.data} does not exist; give a folder of images "
                            "(`ganprint data samples DIR` makes one from built-in photos)")
    from ganprint.data.folders import open_image_dataset  # lazily: the data module pulls in image decoding

    return open_image_dataset(cfg.data, cfg.resolution, celeba=cfg.celeba, skip_bad=False)


# --- model set-up ---------------------------------------------------------------------------------


def init_weights(model: nn.Module, scheme: str, seed: int) -> None:
    """Re-initialise `model` deterministically from `seed`.

    "torch" keeps PyTorch's default init (as the original). "he" draws He-normal weights for ReLU with zero
    biases, which keeps the activation scale through the 15-layer encoder and 9-layer decoder; PyTorch's default
    (gain 1/sqrt(3) per layer) shrinks it ~100x, so the encoder's output barely depends on its inputs and the
    bit gradient vanishes (benchmarks/RESULTS-train.md).
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


def pick_device(name: str) -> torch.device:
    """--device auto|cpu|cuda -> torch.device (auto = cuda when available)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise GanprintError("--device cuda was given but no CUDA device is available; use --device cpu")
    if name not in ("cpu", "cuda"):
        raise GanprintError(f"--device must be auto, cpu or cuda, got {name!r}")
    return torch.device(name)


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


def _png_grid(rows: list[torch.Tensor], path: Path) -> None:
    """Write rows of images [n, 3, R, R] in [0, 1] as one PNG (one row per tensor), atomically."""
    from PIL import Image

    grid = torch.cat([torch.cat(list(r.clamp(0, 1)), dim=2) for r in rows], dim=1)  # [3, rows*R, n*R]
    arr = (grid.permute(1, 2, 0).float().numpy() * 255 + 0.5).astype(np.uint8)
    with atomic_path(path) as tmp:
        Image.fromarray(arr).save(tmp, format="PNG")


def write_snapshot(model: StegaModel, clean: torch.Tensor, bits: torch.Tensor, path: Path) -> None:
    """PNG rows: clean | fingerprinted | residual amplified (|x̂ - x| x 10, centred at gray)."""
    with torch.no_grad():
        fp = model.enc(bits, clean).float()
    _png_grid([clean.float(), fp, (0.5 + 10 * (fp - clean.float())).clamp(0, 1)], path)


def export_model(model: StegaModel, path: Path, extra: dict | None = None) -> Path:
    """Write the encoder+decoder export (kind `stega`)."""
    return save_export(path, model, "stega", stega_config_dict(model.cfg), extra=extra)


def export_decoder(model: nn.Module, path: Path, extra: dict | None = None) -> Path:
    """Write a decoder-only export (kind `stega-decoder`) from a StegaModel or StegaDecoderOnly."""
    dec_only = StegaDecoderOnly(model.cfg)
    dec_only.dec.load_state_dict(model.dec.state_dict())
    return save_export(path, dec_only, "stega-decoder", stega_config_dict(model.cfg), extra=extra)


def _check_outdir_config(outdir: Path, cfg: TrainConfig) -> None:
    path = outdir / "config.json"
    if not path.is_file():
        return
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        raise GanprintError(f"{path} is not valid JSON; remove it or use another --outdir") from None
    new = cfg.to_dict()
    diff = sorted(k for k in set(old) | set(new)
                  if k not in RUNTIME_FIELDS and old.get(k, "<unset>") != new.get(k, "<unset>"))
    if diff:
        shown = ", ".join(f"{k}: {old.get(k, '<unset>')!r} -> {new.get(k, '<unset>')!r}" for k in diff)
        raise GanprintError(f"--outdir {outdir} holds a run with a different config ({shown}); "
                            "re-run with the same settings to resume, or choose a new --outdir")


# --- the loop -----------------------------------------------------------------------------------------


def train_stega(
    cfg: TrainConfig,
    outdir: str | os.PathLike,
    data=None,  # Dataset of {"img": uint8 [3,R,R]} items or a uint8 tensor [N,3,R,R]; None = open cfg.data
    device: str | None = None,  # "auto" | "cpu" | "cuda"; None = cfg.device
    workers: int = 0,  # DataLoader worker processes (decoding only; cached data needs none)
    snapshot_every: int = 500,  # steps between snapshots/<step>.png (0 = final only)
    checkpoint_every: int = 1000,  # steps between training-state-*.pt and export-<step>.safetensors (0 = final only)
    log_every: int = 50,  # steps per stats.jsonl row
    cache_bytes: int = DEFAULT_CACHE_BYTES,  # keep decoded images in RAM when the data set fits (0 = never)
    progress: bool | None = None,  # tqdm bar; None = only on a TTY and on rank 0
    callback: Callable[[int, StegaModel], bool] | None = None,  # called on rank 0 after each stats row; True stops
) -> Path:
    """Train (or resume) the fingerprint encoder/decoder; returns the path of the final `model.safetensors`."""
    cfg.validate()
    outdir = Path(outdir)
    dev = pick_device(device or cfg.device)
    dist.init(dev)
    dev = dist.local_device(dev)
    rank, world = dist.get_rank(), dist.get_world_size()
    if cfg.batch_size % world:
        raise GanprintError(f"--batch-size {cfg.batch_size} must be divisible by the number of processes ({world})")
    _check_outdir_config(outdir, cfg)

    ds = open_training_data(cfg, data)
    if isinstance(ds, torch.Tensor):
        cached = ds
    else:  # decoding 64 32-px PNGs costs ~70 ms, a quarter of an idle step: decode once if the set fits in RAM
        cached = cache_dataset(ds, cfg.resolution, cache_bytes, workers) if cache_bytes else None
    n = len(ds)
    if n == 0:
        raise GanprintError(f"--data {cfg.data or '<in-memory>'} holds no images")
    if cached is not None and tuple(cached.shape[1:]) != (3, cfg.resolution, cfg.resolution):
        raise GanprintError(f"training images are {tuple(cached.shape[1:])}, expected (3, {cfg.resolution}, "
                            f"{cfg.resolution}); check --resolution")
    total = cfg.steps if cfg.steps is not None else max(1, cfg.epochs * n // cfg.batch_size)

    model = StegaModel(StegaConfig(cfg.resolution, cfg.fingerprint_length)).to(dev)
    init_weights(model, cfg.init, cfg.seed)
    model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    amp_dtype = _amp_dtype(dev, cfg.amp)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    sched = L2Schedule(cfg)
    step, elapsed = 0, 0.0

    state_path = latest_training_state(outdir)
    if state_path is not None:
        st = load_training_state(state_path)
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["opt"])
        scaler.load_state_dict(st["scaler"])
        sched.load_state_dict(st["sched"])
        step, elapsed = int(st["step"]), float(st["elapsed"])
        log.info("resuming %s at step %d", state_path, step)
    if rank == 0:
        outdir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(outdir / "config.json", cfg.to_dict())
    dist.barrier()

    ddp = model
    if world > 1:
        ddp = nn.parallel.DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None)

    aug = None
    if cfg.augment:
        try:
            from ganprint.perturb.augment import build_augment  # lazily: only immunized training needs it
        except ModuleNotFoundError as e:
            if e.name != "ganprint.perturb.augment":
                raise
            raise GanprintError("--augment needs ganprint.augment, which this installation lacks") from None
        aug = build_augment(cfg.augment, skew=cfg.augment_skew)

    finished_before = step >= total
    sampler = StepBatchSampler(n, cfg.batch_size, cfg.seed, step, total, rank, world)
    if cached is not None:
        batches = (cached[idx] for idx in sampler)
    else:
        batches = iter(torch.utils.data.DataLoader(ds, batch_sampler=sampler, num_workers=workers,
                                                   collate_fn=_collate_u8, persistent_workers=False))
    # A fixed snapshot batch: the first 8 images of the data set with fingerprints of seed `seed`.
    snap_n = min(8, n)
    snap_x = (cached[:snap_n] if cached is not None else _collate_u8([ds[i] for i in range(snap_n)]))
    snap_x = snap_x.to(dev).float().div(255)
    snap_bits = torch.randint(0, 2, (snap_n, cfg.fingerprint_length),
                              generator=torch.Generator().manual_seed(derive_seed(cfg.seed, _TAG_BITS, -1))).float()
    snap_bits = snap_bits.to(dev)

    if progress is None:
        progress = sys.stderr.isatty()
    from tqdm import tqdm

    bar = tqdm(total=total, initial=step, disable=not progress or rank != 0, desc="train", unit="step",
               dynamic_ncols=True)
    acc_sum = torch.zeros(6, dtype=torch.float64)  # loss, bce, l2, bit_acc, mse, bit_acc_aug summed over the interval
    interval_steps, interval_t0 = 0, time.perf_counter()
    per_rank = cfg.batch_size // world
    model.train()
    stopped = False
    while step < total and not stopped:
        t_step = time.perf_counter()
        x = next(batches).to(dev, non_blocking=True).float().div_(255)  # [N, 3, R, R] in [0, 1]
        x = x.contiguous(memory_format=torch.channels_last)
        g = torch.Generator().manual_seed(derive_seed(cfg.seed, _TAG_BITS, rank, step))
        bits = torch.randint(0, 2, (per_rank, cfg.fingerprint_length), generator=g).float().to(dev)
        warm = step < cfg.identity_warmup
        # Decoder polish: the encoder is frozen and its output rounded to 8 bits, as it will be once written as
        # PNG; the decoder alone then learns to read exactly what deployment gives it. PSNR cannot change here.
        polish = step >= total - cfg.decoder_polish
        lr = lr_at(cfg, step, total)
        for group in opt.param_groups:
            group["lr"] = lr
        w_l2 = sched.weight()
        with torch.autocast(dev.type, dtype=amp_dtype or torch.bfloat16, enabled=amp_dtype is not None):
            if polish:
                with torch.no_grad():
                    fp = (model.enc(bits, x).float() * 255).round() / 255
                logits = model.dec(fp)
            elif warm:
                # Identity warm start: the encoder alone learns to reproduce its input (the sigmoid output
                # starts as flat gray, PSNR ~11 dB), so that bits are later embedded into the image, not a gray.
                fp = ddp.module.enc(bits, x) if world > 1 else model.enc(bits, x)
                logits = None
            else:
                fp, logits = ddp(bits, x)
        fp = fp.float()
        l2 = F.mse_loss(fp, x)
        if warm:
            bce = torch.zeros((), device=dev)
            bit_acc = bit_acc_aug = torch.full((), 0.5, device=dev)
            loss = l2
        else:
            logits = logits.float()
            bce = F.binary_cross_entropy_with_logits(logits, bits)
            bit_acc = bit_acc_aug = ((logits > 0).float() == bits).float().mean()
            if aug is not None:
                # Immunized: the decoder reads a perturbed copy too. The clean read stays in the loss and steers
                # the L2 controller, so the fidelity/accuracy balance is set on clean images (what must stay
                # >= 0.99 at >= 30 dB) while the perturbed read buys robustness.
                with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
                    torch.manual_seed(derive_seed(cfg.seed, _TAG_AUG, rank, step))
                    fp_aug = aug(fp, step / max(1, total - 1))
                with torch.autocast(dev.type, dtype=amp_dtype or torch.bfloat16, enabled=amp_dtype is not None):
                    logits_aug = model.dec(fp_aug).float()
                bce = 0.5 * (bce + F.binary_cross_entropy_with_logits(logits_aug, bits))
                bit_acc_aug = ((logits_aug > 0).float() == bits).float().mean()
            loss = cfg.bce_weight * bce + w_l2 * l2
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if (warm or polish) and world > 1:
            # Warm start and polish bypass the DDP wrapper (half the model is idle): average gradients by hand.
            for p in (model.enc if warm else model.dec).parameters():
                if p.grad is not None:
                    p.grad = dist.all_reduce_mean(p.grad)
        scaler.step(opt)
        scaler.update()

        stats = torch.stack([loss.detach(), bce.detach(), l2.detach(), bit_acc.detach(), l2.detach(),
                             bit_acc_aug.detach()]).double().cpu()
        stats = dist.all_reduce_mean(stats)
        if not warm and not polish:
            sched.update(float(stats[3]), float(stats[4]))
        acc_sum += stats
        interval_steps += 1
        step += 1
        elapsed += time.perf_counter() - t_step
        bar.update(1)

        if step % log_every == 0 or step == total:
            m = (acc_sum / interval_steps).tolist()
            dt = time.perf_counter() - interval_t0
            row = {"step": step, "loss": m[0], "bce": m[1], "l2": m[2], "l2_weight": w_l2, "bit_acc": m[3],
                   "psnr": 10 * math.log10(1 / max(m[4], 1e-12)), "lr": lr,
                   "images_per_s": interval_steps * cfg.batch_size / max(dt, 1e-9), "elapsed_s": elapsed}
            if aug is not None:
                row["bit_acc_augmented"] = m[5]
            bar.set_postfix(bit_acc=f"{m[3]:.3f}", psnr=f"{row['psnr']:.1f}")
            if rank == 0:
                append_jsonl(outdir / "stats.jsonl", row)
                if callback is not None:
                    model.eval()
                    stopped = bool(callback(step, model))
                    model.train()
            stopped = bool(dist.all_gather_object(stopped)[0])
            acc_sum.zero_()
            interval_steps, interval_t0 = 0, time.perf_counter()

        last = step == total or stopped
        if rank == 0 and (last or (snapshot_every and step % snapshot_every == 0)):
            model.eval()
            write_snapshot(model, snap_x, snap_bits, outdir / "snapshots" / f"{step:08d}.png")
            model.train()
        if last or (checkpoint_every and step % checkpoint_every == 0):
            if rank == 0:
                save_training_state(outdir, step, {
                    "model": model.state_dict(), "opt": opt.state_dict(), "scaler": scaler.state_dict(),
                    "sched": sched.state_dict(), "step": step, "elapsed": elapsed})
                if not last:
                    export_model(model, outdir / f"export-{step:08d}.safetensors", extra={"ganprint.step": str(step)})
            dist.barrier()
    bar.close()

    final = outdir / "model.safetensors"
    if finished_before and final.is_file() and (outdir / "model-decoder.safetensors").is_file():
        # A re-run of a finished run changes nothing: the exports (and their hashes, which embed runs record) stay.
        log.info("%s already finished at step %d; nothing to do", outdir, step)
        return final
    if rank == 0:
        extra = {"ganprint.step": str(step), "ganprint.train_config": json.dumps(cfg.to_dict(), sort_keys=True)}
        export_model(model, final, extra=extra)
        export_decoder(model, outdir / "model-decoder.safetensors", extra=extra)
        log.info("wrote %s and %s after %d steps", final, outdir / "model-decoder.safetensors", step)
    dist.barrier()
    return final
