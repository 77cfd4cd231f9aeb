"""StyleGAN2 training: non-saturating loss, lazy R1 and path-length regularisation, EMA generator.

`train_gan` runs the phases Gmain / Greg / Dmain / Dreg of StyleGAN2 (Karras et al. 2020, Sec. 3-4 and App. B)
in the shared run folder (ganprint.training). Under torchrun every phase all-reduces its flattened gradients (no
DDP wrappers, because G and D alternate with lazily applied regularisers); rank 0 writes every file. Randomness
is a function of (seed, rank, images seen), so re-running the command resumes the same run.
"""

from __future__ import annotations

import logging
import os
import time

import torch
from torch.utils.data import Dataset

from ganprint.core import bounds
from ganprint.core import dist
from ganprint.core.progress import progress_bar, status_line
from ganprint.core.seeds import derive_seed
from ganprint.gan.config import RUNTIME_FIELDS, GanTrainConfig
from ganprint.gan.generate import generate_seeds
from ganprint.nets.stylegan2 import Discriminator, Generator, generator_config_dict
from ganprint.training.ema import EMA
from ganprint.training.grids import save_grid, save_reals
from ganprint.training.optim import average_gradients, lazy_adam
from ganprint.training.clock import Clock, Meter, images
from ganprint.training.data import Batches, EpochOrder, open_training_data
from ganprint.training.gan_losses import PathLength, discriminator_loss, generator_loss, r1_backward
from ganprint.training.run import SNAPSHOT_DIR, RunFolder, export, start_processes
from ganprint.training.state import TrainingState

log = logging.getLogger(__name__)

EXPORT_KIND = "stylegan2-G"
PRELOAD_BYTES = 1 << 30  # data sets smaller than this are decoded once into memory
_TAG_ORDER = 7  # the data order's seed stream


# ----------------------------------------------------------------------------------------------------------------
# Loss.


class StyleGAN2Loss:
    """Non-saturating logistic loss with lazy R1 (D) and path-length regularisation (G), StyleGAN2 App. B."""

    def __init__(self, G: Generator, D: Discriminator, cfg: GanTrainConfig):
        self.G, self.D, self.cfg = G, D, cfg
        self.pl = PathLength(cfg.pl_decay, next(G.parameters()).device)

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
        if phase == "Gmain":
            img, _ = self.run_G(gen_z, update_w_avg=True)
            logits = self.D(img)
            loss = generator_loss(logits)
            loss.backward()
            return {"loss/G": loss.item(), "scores/fake": logits.mean().item()}
        if phase == "Greg":  # lazily every pl_interval minibatches, on a shrunk batch
            img, ws = self.run_G(gen_z[:max(gen_z.shape[0] // c.pl_batch_shrink, 1)])
            return self.pl.backward(img, ws, c.pl_weight, c.pl_interval)
        if phase == "Dmain":
            with torch.no_grad():
                img, _ = self.run_G(gen_z)
            loss, real_logits = discriminator_loss(self.D, img, real_img)
            loss.backward()
            return {"loss/D": loss.item(), "scores/real": real_logits.mean().item()}
        if phase == "Dreg":
            return r1_backward(self.D, real_img, c.r1_gamma, c.r1_interval)
        raise ValueError(f"unknown phase {phase!r}")


def _to_float(img_u8: torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 [N, 3, R, R] -> float in [-1, 1]."""
    return img_u8.to(device).float() / 127.5 - 1


# ----------------------------------------------------------------------------------------------------------------
# The run.


class _GanRun:
    """One run of `train_gan`: G, D, the EMA generator, their optimisers and the training state."""

    def __init__(self, cfg: GanTrainConfig, run: RunFolder, dev: torch.device, data: Batches):
        self.cfg, self.run, self.dev, self.data = cfg, run, dev, data
        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        self.batch_gpu = cfg.batch_size // self.world
        torch.manual_seed(derive_seed(cfg.seed, 0))  # identical initial weights on every rank: seeded by `seed` only
        # Channels-last weights and images: oneDNN's convolutions are ~10% faster that way on CPU; the layout
        # changes no parameter value and exports are written contiguous.
        self.mf = torch.channels_last if dev.type == "cpu" else torch.contiguous_format
        self.G = Generator(cfg.G).to(dev, memory_format=self.mf).train()
        self.D = Discriminator(cfg.D).to(dev, memory_format=self.mf).train()
        self.ema = EMA(self.G, cfg.ema_kimg, cfg.ema_rampup)
        self.loss = StyleGAN2Loss(self.G, self.D, cfg)
        g_int = cfg.pl_interval if cfg.pl_weight > 0 else None
        d_int = cfg.r1_interval if cfg.r1_gamma > 0 else None
        self.opt_G = lazy_adam(self.G.parameters(), cfg.G_lr, cfg.betas, cfg.eps, g_int)
        self.opt_D = lazy_adam(self.D.parameters(), cfg.D_lr, cfg.betas, cfg.eps, d_int)
        self.phases = [("Gmain", self.G, self.opt_G, 1), ("Greg", self.G, self.opt_G, g_int),
                       ("Dmain", self.D, self.opt_D, 1), ("Dreg", self.D, self.opt_D, d_int)]
        self.state = TrainingState(run.outdir, {"G": self.G, "D": self.D, "G_ema": self.ema, "opt_G": self.opt_G,
                                                "opt_D": self.opt_D, "pl_mean": self.loss.pl}, tick=0)
        self.state.restore()
        run.rewind(self.state.step)
        self.total_nimg = int(round(cfg.total_kimg * 1000))

    def step(self, real_u8: torch.Tensor) -> dict[str, float]:
        """One minibatch: every phase due at this step, then the EMA; returns the phases' statistics."""
        cfg, st = self.cfg, self.state
        # Randomness of this step is a pure function of (seed, rank, images seen): resume equals no interruption.
        torch.manual_seed(derive_seed(cfg.seed, self.rank, st.nimg))
        real = _to_float(real_u8, self.dev).contiguous(memory_format=self.mf)  # [batch_gpu, 3, R, R]
        if cfg.mirror:
            flip = torch.rand(real.shape[0], device=self.dev) < 0.5
            real = torch.where(flip[:, None, None, None], real.flip(3), real)
        stats: dict[str, float] = {}
        for name, module, opt, interval in self.phases:
            if interval is None or st.step % interval:
                continue
            gen_z = torch.randn(self.batch_gpu, cfg.G.z_dim, device=self.dev)
            module.requires_grad_(True)
            (self.D if module is self.G else self.G).requires_grad_(False)
            opt.zero_grad(set_to_none=True)
            stats.update(self.loss.accumulate_gradients(name, real, gen_z))
            average_gradients(module.parameters(), fill_missing=True, finite=True)
            opt.step()
        if self.world > 1:
            # The w running mean is a buffer updated from each rank's own z: keep the ranks in step.
            self.G.mapping.w_avg.copy_(dist.all_reduce_mean(self.G.mapping.w_avg))
        self.ema.update(self.G, st.nimg + cfg.batch_size, cfg.batch_size)
        st.step, st.nimg = st.step + 1, st.nimg + cfg.batch_size
        return stats

    def tick(self, means: dict[str, float], start_nimg: int, seconds: float, bar=None) -> None:
        """Close a tick: one stats.jsonl row, and the all-rank means as the bar's figures and a status line (on the
        console only without a bar; always in log.txt)."""
        st = self.state
        st.elapsed += seconds
        sec_per_kimg = seconds / max((st.nimg - start_nimg) / 1000, 1e-9)
        st.counters["tick"] += 1
        self.run.append({"tick": st.counters["tick"], "step": st.step, "kimg": round(st.nimg / 1000, 3),
                         "sec_per_kimg": round(sec_per_kimg, 3), "elapsed_s": round(st.elapsed, 1),
                         **{k: round(v, 5) for k, v in means.items()}})
        if self.rank == 0:
            if bar is not None:
                bar.set_postfix({k.removeprefix("loss/"): f"{v:.3f}" for k, v in means.items()}, refresh=False)
            status_line(log, bar, "tick %-4d kimg %-8.3f sec/kimg %-7.2f " +
                        " ".join(f"{k} {v:.4f}" for k, v in means.items()), st.counters["tick"], st.nimg / 1000,
                        sec_per_kimg)

    def snapshot(self, final: bool) -> None:
        """The fakes grid, the EMA generator's exports and the training state."""
        st, out = self.state, self.run.outdir
        if self.rank == 0:
            imgs = generate_seeds(self.ema.module, list(range(self.cfg.grid_seeds)), self.dev, dtype=torch.float32)
            save_grid(out / SNAPSHOT_DIR / f"fakes-{st.step:08d}.png", imgs)
            meta = st.export_metadata(self.cfg.seed)
            cfg_d = generator_config_dict(self.cfg.G)
            export(out / f"network-{st.nimg // 1000:06d}.safetensors", self.ema.module, EXPORT_KIND, cfg_d, meta)
            if final:
                export(out / "network-final.safetensors", self.ema.module, EXPORT_KIND, cfg_d, meta)
        st.save()
        self.run.write_curves()

    def loop(self, checkpoint_minutes: float) -> None:
        cfg, st = self.cfg, self.state
        clock = Clock(cfg.batch_size, checkpoint_minutes, tick=images(cfg.kimg_per_tick),
                      snapshot=images(cfg.snapshot_kimg))
        batches = self.data.stream(st.step)
        meter, tick_start, tick_t0 = Meter(), st.nimg, time.time()
        with progress_bar(self.total_nimg, "train-gan", initial=st.nimg) as bar:
            while st.nimg < self.total_nimg:
                meter.add(self.step(next(batches)))
                bar.update(cfg.batch_size)
                done = st.nimg >= self.total_nimg
                if clock.due("tick", st.nimg, done):
                    self.tick(meter.means(), tick_start, time.time() - tick_t0, bar)
                    tick_start, tick_t0 = st.nimg, time.time()
                clock.after_step(st.nimg, done, self.snapshot, st.save)

    def result(self) -> dict:
        st = self.state
        return {"cur_nimg": st.nimg, "step": st.step, "outdir": str(self.run.outdir), "elapsed_s": st.elapsed,
                "G": self.G, "D": self.D, "G_ema": self.ema.module}


def train_gan(cfg: GanTrainConfig, outdir: str | os.PathLike, data: Dataset | str | None = None,
              device: str | None = None, checkpoint_minutes: float = 5.0, workers: int = 2) -> dict:
    """Train (or resume) a StyleGAN2 until `cfg.total_kimg`; `data` is a Dataset of {"img": uint8 [3, R, R]} items
    or a path (None = cfg.data), decoded by `workers` processes when it does not fit in memory.

    Writes into `outdir` (rank 0): config.json, log.txt, stats.jsonl, snapshots/reals.png and fakes-<step>.png,
    network-<kimg>.safetensors, network-final.safetensors, training-state-<step>.pt (also every
    `checkpoint_minutes`). Returns {"cur_nimg", "step", "outdir", "elapsed_s", "G", "D", "G_ema"} (this process's
    trained modules).
    """
    cfg.validate()
    bounds.MINUTES.check(checkpoint_minutes, "`checkpoint_minutes`")
    bounds.WORKERS.check(workers, "`workers`")
    dev = start_processes(device or "auto", cfg.batch_size, float32=True)
    run = RunFolder(outdir, cfg.to_dict(), RUNTIME_FIELDS, data=None if isinstance(data, Dataset) else data or cfg.data,
                    command="train-gan", device=dev)
    run.check()
    dataset = open_training_data(data if isinstance(data, Dataset) else data or cfg.data, cfg.resolution)
    order = EpochOrder(len(dataset), cfg.batch_size, cfg.seed, _TAG_ORDER, dist.get_rank(), dist.get_world_size())
    batches = Batches(dataset, order, workers, PRELOAD_BYTES)
    with run:
        trainer = _GanRun(cfg, run, dev, batches)
        save_reals(run.outdir, batches, range(min(cfg.grid_seeds, len(dataset))))
        log.info("training %s: %d px, batch %d (%d per process x %d), %.3f -> %.3f kimg on %s", cfg.preset,
                 cfg.resolution, cfg.batch_size, trainer.batch_gpu, dist.get_world_size(), trainer.state.nimg / 1000,
                 trainer.total_nimg / 1000, dev)
        if trainer.state.nimg >= trainer.total_nimg:
            if not (run.outdir / "network-final.safetensors").exists():
                trainer.snapshot(final=True)
        else:
            trainer.loop(checkpoint_minutes)
        return trainer.result()
