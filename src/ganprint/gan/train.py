"""StyleGAN2 training loop: non-saturating loss, lazy R1 and path-length regularisation, EMA generator.

One function, `training_loop`, runs the phases Gmain / Greg / Dmain / Dreg of StyleGAN2 (Karras et al. 2020,
Sec. 3-4 and App. B). Under torchrun every phase all-reduces its flattened gradients (no DDP wrappers, because
G and D alternate with lazily applied regularisers); rank 0 writes every file. Resume = re-run the command.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import time
from pathlib import Path
from typing import Iterator

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from ganprint.core import dist
from ganprint.core.artifacts import latest_training_state, load_training_state, save_export, save_training_state
from ganprint.core.errors import GanprintError
from ganprint.core.files import append_jsonl, atomic_write_json
from ganprint.core.images import write_grid
from ganprint.core.runtime import git_sha, resolve_device
from ganprint.core.seeds import derive_seed
from ganprint.gan.config import GanTrainConfig
from ganprint.gan.generate import generate_seeds
from ganprint.nets.stylegan2 import Discriminator, Generator, generator_config_dict

log = logging.getLogger(__name__)

EXPORT_KIND = "stylegan2-G"
_PRELOAD_BYTES = 1 << 30  # data sets smaller than this are decoded once into memory


# ----------------------------------------------------------------------------------------------------------------
# Loss.


class StyleGAN2Loss:
    """Non-saturating logistic loss with lazy R1 (D) and path-length regularisation (G), StyleGAN2 App. B."""

    def __init__(self, G: Generator, D: Discriminator, cfg: GanTrainConfig):
        self.G, self.D, self.cfg = G, D, cfg
        self.pl_mean = torch.zeros([], device=next(G.parameters()).device)  # running mean of path lengths

    def run_G(self, z: torch.Tensor, update_w_avg: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """z -> (img, ws) with style mixing (StyleGAN Sec. 3.1) at probability `style_mixing_prob`."""
        ws = self.G.mapping(z, update_w_avg=update_w_avg)  # [N, num_ws, w_dim]
        if self.cfg.style_mixing_prob > 0:
            num_ws = ws.shape[1]
            cutoff = int(torch.randint(1, num_ws, ()).item()) if num_ws > 1 else num_ws
            if torch.rand(()).item() >= self.cfg.style_mixing_prob:
                cutoff = num_ws
            if cutoff < num_ws:
                ws2 = self.G.mapping(torch.randn_like(z))
                ws = torch.cat([ws[:, :cutoff], ws2[:, cutoff:]], dim=1)
        img = self.G.synthesis(ws, fused=self.cfg.fused_modconv)
        return img, ws

    def accumulate_gradients(self, phase: str, real_img: torch.Tensor, gen_z: torch.Tensor) -> dict[str, float]:
        """Backpropagate the loss of one phase into .grad; returns scalar statistics of the phase."""
        c = self.cfg
        stats: dict[str, float] = {}
        if phase == "Gmain":
            # Non-saturating generator loss: softplus(-D(G(z))).
            img, _ = self.run_G(gen_z, update_w_avg=True)
            logits = self.D(img)
            loss = F.softplus(-logits).mean()
            loss.backward()
            stats["loss/G"] = loss.item()
            stats["scores/fake"] = logits.mean().item()
        elif phase == "Greg":
            # Path-length regularisation (StyleGAN2 Eq. 4), lazily every pl_interval minibatches.
            n = max(gen_z.shape[0] // c.pl_batch_shrink, 1)
            img, ws = self.run_G(gen_z[:n])
            pl_noise = torch.randn_like(img) / math.sqrt(img.shape[2] * img.shape[3])
            (pl_grads,) = torch.autograd.grad((img * pl_noise).sum(), ws, create_graph=True)
            pl_lengths = pl_grads.square().sum(dim=2).mean(dim=1).sqrt()  # [n]
            batch_mean = dist.all_reduce_mean(pl_lengths.mean().detach())
            self.pl_mean.copy_(self.pl_mean.lerp(batch_mean, c.pl_decay))
            penalty = (pl_lengths - self.pl_mean).square()
            loss = penalty.mean() * c.pl_weight
            (loss * c.pl_interval).backward()
            stats["loss/pl"] = penalty.mean().item()
            stats["pl_mean"] = self.pl_mean.item()
        elif phase == "Dmain":
            # softplus(D(G(z))) + softplus(-D(x)).
            with torch.no_grad():
                img, _ = self.run_G(gen_z)
            fake_logits = self.D(img)
            real_logits = self.D(real_img)
            loss = F.softplus(fake_logits).mean() + F.softplus(-real_logits).mean()
            loss.backward()
            stats["loss/D"] = loss.item()
            stats["scores/real"] = real_logits.mean().item()
        elif phase == "Dreg":
            # R1 (Mescheder et al. 2018): gamma/2 * E ||grad_x D(x)||^2 on reals, lazily every r1_interval.
            real = real_img.detach().requires_grad_(True)
            logits = self.D(real)
            (grads,) = torch.autograd.grad(logits.sum(), real, create_graph=True)
            penalty = grads.square().sum(dim=[1, 2, 3])  # [N]
            loss = penalty.mean() * (c.r1_gamma / 2)
            (loss * c.r1_interval).backward()
            stats["loss/r1"] = penalty.mean().item()
        else:
            raise ValueError(f"unknown phase {phase!r}")
        return stats


# ----------------------------------------------------------------------------------------------------------------
# Data.


def _global_index_stream(n_items: int, seed: int, start: int) -> Iterator[int]:
    """Data index of global sample start, start+1, ...: a fresh seeded permutation per epoch (resumable)."""
    pos = start
    while True:
        epoch, off = divmod(pos, n_items)
        perm = torch.randperm(n_items, generator=torch.Generator().manual_seed(derive_seed(seed, 7, epoch)))
        for i in perm[off:].tolist():
            yield i
        pos = (epoch + 1) * n_items


class _RankBatches:
    """Yields index lists of this rank's share of each global batch, from sample `start_nimg` on."""

    def __init__(self, n_items: int, seed: int, start_nimg: int, batch: int, rank: int, world: int):
        self.n_items, self.seed, self.start, self.batch, self.rank, self.world = (
            n_items, seed, start_nimg, batch, rank, world)

    def __iter__(self):
        stream = _global_index_stream(self.n_items, self.seed, self.start)
        per = self.batch // self.world
        while True:
            idx = [next(stream) for _ in range(self.batch)]
            yield idx[self.rank * per: (self.rank + 1) * per]


def _batch_iterator(dataset: Dataset, cfg: GanTrainConfig, start_nimg: int, rank: int, world: int,
                    ) -> Iterator[torch.Tensor]:
    """Infinite uint8 [batch_gpu, 3, R, R] batches; a small data set is decoded once into memory."""
    n = len(dataset)
    if n == 0:
        raise GanprintError("the training data set is empty; check --data")
    first = dataset[0]["img"]
    if tuple(first.shape) != (3, cfg.resolution, cfg.resolution):
        raise GanprintError(f"data set images are {list(first.shape)}, expected [3, {cfg.resolution}, "
                            f"{cfg.resolution}]; check --resolution")
    batches = _RankBatches(n, cfg.seed, start_nimg, cfg.batch_size, rank, world)
    if n * first.numel() <= _PRELOAD_BYTES:
        log.info("loading %d images into memory", n)
        allimg = torch.stack([dataset[i]["img"] for i in range(n)])  # [n, 3, R, R] uint8
        for idx in batches:
            yield allimg[idx]
    else:
        loader = DataLoader(dataset, batch_sampler=batches, num_workers=2, collate_fn=_collate_img,
                            persistent_workers=True)
        for batch in loader:
            yield batch


def _collate_img(items: list[dict]) -> torch.Tensor:
    return torch.stack([it["img"] for it in items])  # [N, 3, R, R]


def _to_float(img_u8: torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 [N, 3, R, R] -> float in [-1, 1]."""
    return img_u8.to(device).float() / 127.5 - 1


# ----------------------------------------------------------------------------------------------------------------
# Helpers.


def _reduce_grads(params: list[torch.nn.Parameter]) -> None:
    """All-reduce the gradients of one phase as one flat tensor (mean over ranks), scrubbing NaN/Inf."""
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.flatten() for g in grads])
    if dist.is_dist():
        torch.distributed.all_reduce(flat)
        flat /= dist.get_world_size()
    flat = torch.nan_to_num(flat, nan=0, posinf=1e5, neginf=-1e5)
    offset = 0
    for p in params:
        k = p.numel()
        p.grad = flat[offset: offset + k].view_as(p)
        offset += k


def _make_optimizer(module: torch.nn.Module, lr: float, betas: tuple[float, float], eps: float,
                    reg_interval: int | None) -> torch.optim.Adam:
    # Lazy regularisation (StyleGAN2 App. B): the reg phase runs every k steps, so Adam's lr and betas are
    # rescaled by k / (k + 1) to keep the effective step per minibatch unchanged.
    ratio = reg_interval / (reg_interval + 1) if reg_interval else 1.0
    return torch.optim.Adam(module.parameters(), lr=lr * ratio, betas=(betas[0] ** ratio, betas[1] ** ratio), eps=eps)


def _check_resume_config(outdir: Path, cfg: GanTrainConfig) -> None:
    """Refuse to resume a run whose architecture or batch differs from the saved config.json."""
    path = outdir / "config.json"
    if not path.is_file():
        return
    old = json.loads(path.read_text())
    new = cfg.to_dict()
    keys = ("G", "D", "batch_size", "seed")
    diff = [k for k in keys if old.get(k) != new.get(k)]
    if diff:
        raise GanprintError(f"{outdir} holds a run with different {', '.join(diff)} ({path}); use a new --outdir "
                            f"or the original options to resume")


# ----------------------------------------------------------------------------------------------------------------
# The loop.


def training_loop(cfg: GanTrainConfig, outdir: str | Path, dataset: Dataset, device: str = "auto") -> dict:
    """Train (or resume) a StyleGAN2 on `dataset` (items {"img": uint8 [3, R, R]}) until `cfg.total_kimg`.

    Writes into `outdir` (rank 0): config.json, stats.jsonl, reals.png, fakes<kimg>.png,
    network-<kimg>.safetensors, network-final.safetensors, training-state-*.pt. Returns {"cur_nimg", "outdir",
    "elapsed_s", "G", "D", "G_ema"} (the trained modules of this process).
    """
    cfg.validate()
    outdir = Path(outdir)
    dev = dist.local_device(resolve_device(device))
    if dev.type == "cuda":
        # TF32 off (house style): results match across GPUs and float32 means float32.
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    dist.init(dev)
    rank, world = dist.get_rank(), dist.get_world_size()
    if cfg.batch_size % world:
        raise GanprintError(f"--batch-size {cfg.batch_size} is not divisible by the {world} processes")
    batch_gpu = cfg.batch_size // world
    if rank == 0:
        _check_resume_config(outdir, cfg)
        outdir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(outdir / "config.json", {**cfg.to_dict(), "git_sha": git_sha()})
    dist.barrier()

    # Identical initial weights on every rank: seeded by `seed` only.
    torch.manual_seed(derive_seed(cfg.seed, 0))
    # Channels-last weights and images: oneDNN's convolutions are ~10% faster that way on CPU (measured on the
    # small preset); the layout changes no parameter value and exports are written contiguous.
    mf = torch.channels_last if dev.type == "cpu" else torch.contiguous_format
    G = Generator(cfg.G).to(dev, memory_format=mf).train()
    D = Discriminator(cfg.D).to(dev, memory_format=mf).train()
    G_ema = copy.deepcopy(G).eval().requires_grad_(False)
    loss = StyleGAN2Loss(G, D, cfg)
    g_int = cfg.pl_interval if cfg.pl_weight > 0 else None
    d_int = cfg.r1_interval if cfg.r1_gamma > 0 else None
    opt_G = _make_optimizer(G, cfg.G_lr, cfg.betas, cfg.eps, g_int)
    opt_D = _make_optimizer(D, cfg.D_lr, cfg.betas, cfg.eps, d_int)

    cur_nimg, batch_idx, cur_tick, elapsed = 0, 0, 0, 0.0
    state_path = latest_training_state(outdir)
    if state_path is not None:
        st = load_training_state(state_path)
        G.load_state_dict(st["G"])
        D.load_state_dict(st["D"])
        G_ema.load_state_dict(st["G_ema"])
        opt_G.load_state_dict(st["opt_G"])
        opt_D.load_state_dict(st["opt_D"])
        loss.pl_mean.copy_(st["pl_mean"])
        cur_nimg, batch_idx, cur_tick, elapsed = st["cur_nimg"], st["batch_idx"], st["cur_tick"], st["elapsed"]
        log.info("resuming from %s at %.3f kimg", state_path, cur_nimg / 1000)

    total_nimg = int(round(cfg.total_kimg * 1000))
    tick_nimg = max(int(round(cfg.kimg_per_tick * 1000)), 1)
    snap_nimg = max(int(round(cfg.snapshot_kimg * 1000)), 1)
    grid_seeds = list(range(cfg.grid_seeds))

    data_iter = None
    if rank == 0 and not (outdir / "reals.png").exists():
        reals = torch.stack([dataset[i]["img"] for i in range(min(cfg.grid_seeds, len(dataset)))])
        write_grid(outdir / "reals.png", reals.permute(0, 2, 3, 1).numpy())

    def snapshot(final: bool) -> None:
        kimg = cur_nimg // 1000
        state = {"G": G.state_dict(), "D": D.state_dict(), "G_ema": G_ema.state_dict(),
                 "opt_G": opt_G.state_dict(), "opt_D": opt_D.state_dict(), "pl_mean": loss.pl_mean.cpu(),
                 "cur_nimg": cur_nimg, "batch_idx": batch_idx, "cur_tick": cur_tick, "elapsed": elapsed}
        if rank == 0:
            imgs = generate_seeds(G_ema, grid_seeds, dev, dtype=torch.float32)
            write_grid(outdir / f"fakes{kimg:06d}.png", imgs)
            meta = {"ganprint.train.kimg": f"{cur_nimg / 1000:.3f}", "ganprint.train.seed": str(cfg.seed)}
            cfg_d = generator_config_dict(cfg.G)
            save_export(outdir / f"network-{kimg:06d}.safetensors", G_ema, EXPORT_KIND, cfg_d, meta)
            if final:
                save_export(outdir / "network-final.safetensors", G_ema, EXPORT_KIND, cfg_d, meta)
            save_training_state(outdir, cur_nimg, state)
        dist.barrier()

    log.info("training %s: %d px, batch %d (%d per process x %d), %.3f -> %.3f kimg on %s", cfg.preset,
             cfg.resolution, cfg.batch_size, batch_gpu, world, cur_nimg / 1000, total_nimg / 1000, dev)
    if cur_nimg >= total_nimg:
        if not (outdir / "network-final.safetensors").exists():
            snapshot(final=True)
        return {"cur_nimg": cur_nimg, "outdir": str(outdir), "elapsed_s": elapsed, "G": G, "D": D, "G_ema": G_ema}

    data_iter = _batch_iterator(dataset, cfg, cur_nimg, rank, world)
    tick_start_nimg, tick_start_time = cur_nimg, time.time()
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    phases = [("Gmain", G, opt_G, 1), ("Greg", G, opt_G, g_int), ("Dmain", D, opt_D, 1), ("Dreg", D, opt_D, d_int)]

    while cur_nimg < total_nimg:
        # Randomness of this step is a pure function of (seed, rank, cur_nimg): resume equals no interruption.
        torch.manual_seed(derive_seed(cfg.seed, rank, cur_nimg))
        real = _to_float(next(data_iter), dev).contiguous(memory_format=mf)  # [batch_gpu, 3, R, R]
        if cfg.mirror:
            flip = torch.rand(real.shape[0], device=dev) < 0.5
            real = torch.where(flip[:, None, None, None], real.flip(3), real)
        for name, module, opt, interval in phases:
            if interval is None or batch_idx % interval:
                continue
            gen_z = torch.randn(batch_gpu, cfg.G.z_dim, device=dev)
            other = D if module is G else G
            module.requires_grad_(True)
            other.requires_grad_(False)
            opt.zero_grad(set_to_none=True)
            for k, v in loss.accumulate_gradients(name, real, gen_z).items():
                sums[k] = sums.get(k, 0.0) + v
                counts[k] = counts.get(k, 0) + 1
            params = [p for p in module.parameters()]
            _reduce_grads(params)
            opt.step()
        if world > 1:
            # The w running mean is a buffer updated from each rank's own z: keep the ranks in step.
            G.mapping.w_avg.copy_(dist.all_reduce_mean(G.mapping.w_avg))

        # EMA generator with a half-life of ema_kimg (ramped up early in training).
        ema_nimg = cfg.ema_kimg * 1000
        if cfg.ema_rampup is not None:
            ema_nimg = min(ema_nimg, (cur_nimg + cfg.batch_size) * cfg.ema_rampup)
        beta = 0.5 ** (cfg.batch_size / max(ema_nimg, 1e-8))
        with torch.no_grad():
            for p_ema, p in zip(G_ema.parameters(), G.parameters()):
                p_ema.copy_(p.detach().lerp(p_ema, beta))
            for b_ema, b in zip(G_ema.buffers(), G.buffers()):
                b_ema.copy_(b)

        cur_nimg += cfg.batch_size
        batch_idx += 1
        done = cur_nimg >= total_nimg
        if cur_nimg >= tick_start_nimg + tick_nimg or done:
            now = time.time()
            tick_time = now - tick_start_time
            elapsed += tick_time
            means = {k: sums[k] / counts[k] for k in sums}
            keys = sorted(means)
            red = dist.all_reduce_mean(torch.tensor([means[k] for k in keys], dtype=torch.float64))
            means = dict(zip(keys, red.tolist()))
            sec_per_kimg = tick_time / max((cur_nimg - tick_start_nimg) / 1000, 1e-9)
            cur_tick += 1
            row = {"tick": cur_tick, "kimg": round(cur_nimg / 1000, 3), "sec_per_kimg": round(sec_per_kimg, 3),
                   "elapsed_s": round(elapsed, 1), **{k: round(v, 5) for k, v in means.items()}}
            if rank == 0:
                append_jsonl(outdir / "stats.jsonl", row)
                log.info("tick %-4d kimg %-8.3f sec/kimg %-7.2f " + " ".join(f"{k} {v:.4f}" for k, v in means.items()),
                         cur_tick, cur_nimg / 1000, sec_per_kimg)
            sums, counts = {}, {}
            tick_start_nimg, tick_start_time = cur_nimg, time.time()
        if done or cur_nimg // snap_nimg > (cur_nimg - cfg.batch_size) // snap_nimg:
            snapshot(final=done)

    return {"cur_nimg": cur_nimg, "outdir": str(outdir), "elapsed_s": elapsed, "G": G, "D": D, "G_ema": G_ema}
