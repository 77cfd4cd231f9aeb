"""Training of the scalable fingerprinting GAN (Yu et al., ICLR 2022), single process or torchrun.

One step (StyleGAN2 with lazy regularisation; G and the decoder E minimise the same scalar):
- GEmain: softplus(-D(G(z,c))) + w_const ||G(z,c) - G(z,c')||^2 + w_z ||z - E_z(G(z,c))||^2 + w_c BCE(E_c(G(z,c)), c);
- Greg: G's path length (every `pl_interval` steps), the gradient taken wrt the fingerprint-derived styles;
- Dmain: softplus(D(fake)) + softplus(-D(real)); Dreg: R1 = gamma/2 ||grad D(real)||^2 every `r1_interval` steps.
G_ema is an exponential average of G (half-life `ema_kimg`, ramped up over the first 5 % of images).

Randomness is a pure function of (seed, rank, step), so resuming (re-running the same command) continues the
same stream. Gradients are averaged across ranks by one explicit all-reduce per network (several forward passes
per step and lazily used parameters make DDP wrappers awkward); parameters start identical because every rank
seeds the initialisation alike, and their equality is checked at each snapshot.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from ganprint.core import bounds
from ganprint.core import dist
from ganprint.core.progress import progress_bar, status_line
from ganprint.core.seeds import derive_seed
from ganprint.core.stats import bit_accuracy, decode_bits
from ganprint.nets.scalable import ScalableDecoder, ScalableGenerator, build_discriminator
from ganprint.nets.stylegan2 import quantize_uint8_st
from ganprint.perturb.augment import build_augment, wrap_pm1
from ganprint.scalable.config import RUNTIME_FIELDS, ScalableTrainConfig
from ganprint.training.ema import EMA
from ganprint.training.grids import save_grid, save_reals
from ganprint.training.optim import average_gradients, lazy_adam
from ganprint.training.clock import Clock, Meter, images
from ganprint.training.data import Batches, DrawOrder, open_training_data
from ganprint.training.gan_losses import PathLength, discriminator_loss, generator_loss, r1_backward
from ganprint.training.run import SNAPSHOT_DIR, STATS_FILE, RunFolder, export, start_processes
from ganprint.training.state import TrainingState

log = logging.getLogger(__name__)

G_EXPORT = "scalable-G.safetensors"
E_EXPORT = "scalable-decoder.safetensors"
METRIC_FILE = "metric-bit-accuracy.jsonl"
_GRID_N, _GRID_COLS = 32, 8
_PL_DECAY = 0.01  # the path lengths' running mean: StyleGAN2's decay (the config has no field for it)


# --- the loss -------------------------------------------------------------------------------------------


@dataclass
class StepInputs:
    """What one step's phases share: its position, its draws, and what the first phase produced."""

    step: int
    nimg: int
    real: torch.Tensor  # [B, 3, R, R] in [-1, 1]
    z: torch.Tensor  # [B, z_dim]
    c: torch.Tensor  # [B, K] fingerprints in {0, 1}
    c2: torch.Tensor  # [B, K] other fingerprints, for the consistency term
    fake: torch.Tensor | None = None  # G(z, c), set by GEmain
    w_adv: float = 1.0  # weight of the adversarial terms this step, set by GEmain (0 = D rests)


class ScalableLoss:
    """The phases GEmain / Greg / Dmain / Dreg, and the fingerprint gate that holds terms back until the decoder
    reads the fingerprint (running training bit accuracy `acc_run`; `const_start` = images seen when it opened)."""

    def __init__(self, G: ScalableGenerator, E: ScalableDecoder, D: torch.nn.Module, cfg: ScalableTrainConfig,
                 aug, total_nimg: int, device: torch.device):
        self.G, self.E, self.D, self.cfg, self.aug, self.total_nimg = G, E, D, cfg, aug, total_nimg
        self.rank = dist.get_rank()
        self.pl = PathLength(_PL_DECAY, device)
        self.acc_run, self.const_start = 0.5, None

    def gate(self, nimg: int) -> float:
        """0 until the gate opens, then a linear ramp to 1 over `consistency_rampup_kimg`."""
        c = self.cfg
        opens = self.acc_run >= c.consistency_gate_acc or nimg >= c.consistency_gate_kimg * 1000
        if self.const_start is None and opens:
            self.const_start = nimg
            log.info("consistency loss enabled at %.2f kimg (training bit accuracy %.3f)", nimg / 1000, self.acc_run)
        if self.const_start is None:
            return 0.0
        ramp = c.consistency_rampup_kimg * 1000
        return min(1.0, (nimg - self.const_start) / ramp) if ramp > 0 else 1.0

    def due(self, phase: str, b: StepInputs) -> bool:
        """Whether `phase` runs in this step (a closed adversarial gate skips every D pass)."""
        c = self.cfg
        if phase == "GEmain":
            return True
        adv_on = b.w_adv > 0
        if phase == "Greg":
            return adv_on and c.pl_weight > 0 and b.step % c.pl_interval == 0
        if phase == "Dreg":
            return adv_on and c.r1_gamma > 0 and b.step % c.r1_interval == 0
        return adv_on

    def accumulate_gradients(self, phase: str, b: StepInputs) -> dict[str, float]:
        """Backpropagate the loss of one phase into .grad; returns the phase's scalar statistics."""
        run = {"GEmain": self._main_G, "Greg": self._reg_G, "Dmain": self._main_D, "Dreg": self._reg_D}[phase]
        return run(b)

    def _main_G(self, b: StepInputs) -> dict[str, float]:
        c = self.cfg
        gate = self.gate(b.nimg)
        w_const = c.consistency_weight * gate
        w_z = c.latent_weight * (gate if c.gate_latent else 1.0)
        b.w_adv = gate if c.gate_adversarial else 1.0
        fake = b.fake = self.G(b.z, b.c)
        z_hat, logits = self.E(quantize_uint8_st(fake) if c.quantize_read else fake)
        loss_adv = generator_loss(self.D(fake)) if b.w_adv > 0 else torch.zeros([], device=fake.device)
        if w_const > 0:
            loss_const = (fake - self.G(b.z, b.c2)).square().mean()
        else:  # gate closed: the second forward pass only now and then, for the log
            with torch.no_grad():
                loss_const = ((fake - self.G(b.z, b.c2)).square().mean() if b.step % 16 == 0
                              else torch.full([], float("nan")))
        loss_z = (b.z - z_hat).square().mean()
        loss_c = F.binary_cross_entropy_with_logits(logits, b.c)
        stats: dict[str, float] = {}
        if self.aug is not None:
            # As the stega trainer's `augment`: the clean read stays in the loss and drives the gates, the perturbed read buys
            # robustness. Its draws are a pure function of (seed, rank, step), so resuming stays exact.
            g_aug = torch.Generator().manual_seed(derive_seed(c.seed, self.rank, b.step, 2))
            logits_aug = self.E(self.aug(fake, b.nimg / self.total_nimg, generator=g_aug))[1]
            loss_c = 0.5 * (loss_c + F.binary_cross_entropy_with_logits(logits_aug, b.c))
            stats["bit_acc_train_augmented"] = float(
                dist.all_reduce_mean(bit_accuracy(decode_bits(logits_aug.detach()), b.c).mean()))
        loss = b.w_adv * loss_adv + w_z * loss_z + c.bit_weight * loss_c
        if w_const > 0:
            loss = loss + w_const * loss_const
        loss.backward()
        acc_now = float(dist.all_reduce_mean(bit_accuracy(decode_bits(logits.detach()), b.c).mean()))
        self.acc_run = 0.95 * self.acc_run + 0.05 * acc_now
        stats.update({"w_const": w_const, "w_latent": w_z, "w_adv": b.w_adv, "loss/z": loss_z.item(),
                      "loss/bits": loss_c.item(), "bit_acc_train": acc_now})
        if b.w_adv > 0:
            stats["loss/G_adv"] = loss_adv.item()
        if not math.isnan(loss_const.item()):
            stats["loss/const"] = loss_const.item()
        return stats

    def _reg_G(self, b: StepInputs) -> dict[str, float]:
        # Path length on half the batch, wrt the styles the fingerprint drives.
        n = max(1, b.z.shape[0] // 2)
        ws = self.G.mapping(b.c[:n])  # [n, num_ws, w_dim]
        return self.pl.backward(self.G.synthesize(b.z[:n], ws), ws, self.cfg.pl_weight, self.cfg.pl_interval)

    def _main_D(self, b: StepInputs) -> dict[str, float]:
        loss, _ = discriminator_loss(self.D, b.fake, b.real)
        loss.backward()
        return {"loss/D": loss.item()}

    def _reg_D(self, b: StepInputs) -> dict[str, float]:
        return r1_backward(self.D, b.real, self.cfg.r1_gamma, self.cfg.r1_interval)

    def state_dict(self) -> dict:
        return {"pl_mean": self.pl.state_dict()["value"], "acc_run": self.acc_run,
                "const_start": -1 if self.const_start is None else self.const_start}

    def load_state_dict(self, state: dict) -> None:
        self.pl.load_state_dict({"value": state["pl_mean"]})
        self.acc_run = float(state["acc_run"])
        self.const_start = None if int(state["const_start"]) < 0 else int(state["const_start"])


# --- helpers --------------------------------------------------------------------------------------------


def _fingerprint_of(modules: list[torch.nn.Module]) -> str:
    h = hashlib.sha256()
    for m in modules:
        for k, v in sorted(m.state_dict().items()):
            h.update(k.encode())
            h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


@torch.no_grad()
def eval_bit_accuracy(G: ScalableGenerator, E: ScalableDecoder, n: int, seed: int, device: torch.device,
                      batch: int = 64) -> float:
    """Mean per-image bit accuracy of E on n images of G with random z and random fingerprints."""
    g = torch.Generator().manual_seed(int(seed))
    accs = []
    for s in range(0, n, batch):
        m = min(batch, n - s)
        z = torch.randn(m, G.z_dim, generator=g).to(device)
        c = torch.randint(0, 2, (m, G.fingerprint_length), generator=g).float().to(device)
        _, logits = E(G(z, c, noise_mode="random"))
        accs.append(bit_accuracy(decode_bits(logits), c).cpu())
    return float(torch.cat(accs).mean())


# --- the run --------------------------------------------------------------------------------------------


def _bar_figures(row: dict) -> dict[str, str]:
    """The progress bar's figures of a tick's row (and G_ema's bit accuracy once measured)."""
    figures = {"bit_acc": row.get("bit_acc_train", 0), "G_adv": row.get("loss/G_adv", 0), "D": row.get("loss/D", 0)}
    if "bit_accuracy" in row:
        figures["G_ema_acc"] = row["bit_accuracy"]
    return {k: f"{v:.3f}" for k, v in figures.items()}


class _ScalableRun:
    """One run of `train_scalable`: G, E, D, G_ema, their optimisers, the loss and the training state."""

    def __init__(self, cfg: ScalableTrainConfig, run: RunFolder, dev: torch.device, data: Batches, aug):
        self.cfg, self.run, self.dev, self.data = cfg, run, dev, data
        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        self.batch, self.total = cfg.batch_size // self.world, int(cfg.kimg * 1000)
        self.mcfg = mcfg = cfg.model_config()
        torch.manual_seed(derive_seed(cfg.seed, 0xC0FFEE))  # identical initialisation on every rank
        self.G, self.E = ScalableGenerator(mcfg).to(dev), ScalableDecoder(mcfg).to(dev)
        self.D = build_discriminator(mcfg).to(dev)
        self.G.fused = False  # training scales activations; grouped convs only at inference
        self.ema = EMA(self.G, cfg.ema_kimg, rampup=0.05)
        g_int = cfg.pl_interval if cfg.pl_weight > 0 else None
        d_int = cfg.r1_interval if cfg.r1_gamma > 0 else None
        opt_G = lazy_adam(self.G.parameters(), cfg.lr, (0.0, 0.99), 1e-8, g_int)
        opt_E = lazy_adam(self.E.parameters(), cfg.lr, (0.0, 0.99), 1e-8, g_int)  # E uses G's learning rate
        opt_D = lazy_adam(self.D.parameters(), cfg.lr, (0.0, 0.99), 1e-8, d_int)
        self.phases = [("GEmain", (self.G, self.E), (opt_G, opt_E)), ("Greg", (self.G,), (opt_G,)),
                       ("Dmain", (self.D,), (opt_D,)), ("Dreg", (self.D,), (opt_D,))]
        self.loss = ScalableLoss(self.G, self.E, self.D, cfg, aug, self.total, dev)
        self.state = TrainingState(run.outdir, {"G": self.G, "E": self.E, "D": self.D, "G_ema": self.ema,
                                                "opt_G": opt_G, "opt_E": opt_E, "opt_D": opt_D, "loss": self.loss})
        self.state.restore()
        run.rewind(self.state.step)
        gg = torch.Generator().manual_seed(derive_seed(cfg.seed, 777))
        self.grid_z = torch.randn(_GRID_N, mcfg.z_dim, generator=gg).to(dev)
        self.grid_c = torch.randint(0, 2, (_GRID_N, mcfg.fingerprint_length), generator=gg).float().to(dev)
        # The reals' indices are drawn on every rank (gg serves nothing after them); rank 0 writes the grid once.
        save_reals(run.outdir, data, torch.randint(0, len(data), (_GRID_N,), generator=gg), _GRID_COLS)

    def step(self, real_u8: torch.Tensor) -> dict[str, float]:
        """One step on this rank's uint8 batch: its draws, every phase due, the EMA; returns the phases' statistics."""
        cfg, st, dev, n = self.cfg, self.state, self.dev, self.batch
        gen = self.data.order.generator(st.step)  # the generator that drew the batch draws the rest of the step
        torch.manual_seed(derive_seed(cfg.seed, self.rank, st.step, 1))  # per-layer noise draws
        real = real_u8.to(dev).float() / 127.5 - 1  # [B, 3, R, R]
        z = torch.randn(n, self.mcfg.z_dim, generator=gen).to(dev)
        c = torch.randint(0, 2, (n, self.mcfg.fingerprint_length), generator=gen).float().to(dev)
        c2 = torch.randint(0, 2, (n, self.mcfg.fingerprint_length), generator=gen).float().to(dev)
        b = StepInputs(st.step, st.nimg, real, z, c, c2)
        stats: dict[str, float] = {}
        for phase, trained, opts in self.phases:
            if not self.loss.due(phase, b):
                continue
            for m in (self.G, self.E, self.D):
                m.requires_grad_(any(m is t for t in trained))
            for opt in opts:
                opt.zero_grad(set_to_none=True)
            stats.update(self.loss.accumulate_gradients(phase, b))
            for m in trained:
                average_gradients(m.parameters())
            for opt in opts:
                opt.step()
        st.step, st.nimg = st.step + 1, st.nimg + cfg.batch_size
        self.ema.update(self.G, st.nimg, cfg.batch_size)
        return stats

    def tick(self, means: dict[str, float], start_nimg: int, seconds: float, bar=None) -> dict:
        """Close a tick: one stats.jsonl row, the bar's figures and a status line (on the console only without a
        bar; always in log.txt)."""
        st = self.state
        st.elapsed += seconds
        row = {"kimg": st.nimg / 1000, "step": st.step,
               "sec_per_kimg": seconds / max(1e-9, (st.nimg - start_nimg) / 1000), "time_s": st.elapsed,
               "world_size": self.world, **means}
        self.run.append(row)
        if self.rank == 0:
            if bar is not None:
                bar.set_postfix(_bar_figures(row), refresh=False)
            status_line(log, bar, "kimg %.2f  bit_acc_train %.3f  G_adv %.3f  D %.3f  const %.4f  %.1f s/kimg",
                        row["kimg"], row.get("bit_acc_train", 0), row.get("loss/G_adv", 0), row.get("loss/D", 0),
                        row.get("loss/const", 0), row["sec_per_kimg"])
        return row

    def metric(self, row: dict, bar=None) -> None:
        cfg, st = self.cfg, self.state
        if self.rank == 0:
            acc = eval_bit_accuracy(self.ema.module, self.E, cfg.metric_images, derive_seed(cfg.seed, 4242), self.dev)
            self.run.append({"kimg": st.nimg / 1000, "step": st.step, "bit_accuracy": acc,
                             "images": cfg.metric_images, "generator": "G_ema"}, METRIC_FILE)
            status_line(log, bar, "kimg %.2f  bit accuracy (G_ema, %d images, random fingerprints) %.4f",
                        st.nimg / 1000, cfg.metric_images, acc)
            row["bit_accuracy"] = acc
            if bar is not None:
                bar.set_postfix(_bar_figures(row), refresh=False)
        dist.barrier()

    def snapshot(self, final: bool = False) -> None:
        """Check that the ranks agree, write the three grids and both exports, and the training state."""
        prints = dist.all_gather_object(_fingerprint_of([self.G, self.E, self.D]))
        if len(set(prints)) != 1:
            raise RuntimeError(f"ranks diverged: parameter hashes {prints}")
        st, out, G_ema = self.state, self.run.outdir, self.ema.module
        if self.rank == 0:
            with torch.no_grad():
                same_c, same_z = self.grid_c[:1].repeat(_GRID_N, 1), self.grid_z[:1].repeat(_GRID_N, 1)
                for name, z, c in (("arbitrary", self.grid_z, self.grid_c), ("fingerprints-same", self.grid_z, same_c),
                                   ("latents-same", same_z, self.grid_c)):
                    save_grid(out / SNAPSHOT_DIR / f"fakes-{name}-{st.step:08d}.png", G_ema(z, c), _GRID_COLS)
            meta = {"ganprint.kimg": str(st.nimg / 1000), "ganprint.step": str(st.step)}
            export(out / G_EXPORT, G_ema, "scalable-G", self.mcfg.to_dict(), meta)
            export(out / E_EXPORT, self.E, "scalable-decoder", self.mcfg.to_dict(), meta)
        st.save()
        self.run.write_curves()

    def loop(self, checkpoint_minutes: float) -> dict:
        cfg, st = self.cfg, self.state
        clock = Clock(cfg.batch_size, checkpoint_minutes, tick=images(cfg.tick_kimg),
                      snapshot=images(cfg.snapshot_kimg), metric=images(cfg.metric_kimg))
        batches = self.data.stream(st.step)
        meter, row, tick_nimg, tick_t0 = Meter(), {}, st.nimg, time.time()
        with progress_bar(self.total, "train-scalable", initial=st.nimg) as bar:
            while st.nimg < self.total:
                meter.add(self.step(next(batches)))
                bar.update(cfg.batch_size)
                done = st.nimg >= self.total
                if clock.due("tick", st.nimg, done):
                    # Most statistics are this rank's (the bit accuracies all ranks' already).
                    row = self.tick(meter.means(over_ranks=False), tick_nimg, time.time() - tick_t0, bar)
                    tick_nimg, tick_t0 = st.nimg, time.time()
                if clock.due("metric", st.nimg, done):
                    self.metric(row, bar)
                clock.after_step(st.nimg, done, self.snapshot, st.save)
        if not row:
            log.info("%s is already trained to %.1f kimg; nothing to do", self.run.outdir, st.nimg / 1000)
        return row


def train_scalable(cfg: ScalableTrainConfig, outdir: str | os.PathLike, data: Dataset | str | None = None,
                   device: str | None = None, checkpoint_minutes: float = 5.0, workers: int = 0) -> dict:
    """Train (or resume) a scalable fingerprinting GAN into `outdir`; returns the last stats row ({} when the run
    was already finished).

    `data` is a Dataset of {"img": uint8 [3, R, R]} items or a path (None = cfg.data). Writes config.json, log.txt,
    stats.jsonl, metric-bit-accuracy.jsonl, snapshots/ (reals and fakes grids), `scalable-G.safetensors`
    (G_ema), `scalable-decoder.safetensors` and `training-state-<step>.pt` (also every `checkpoint_minutes`).
    `workers` processes decode the images when they do not fit in memory.
    """
    cfg.validate()
    bounds.MINUTES.check(checkpoint_minutes, "`checkpoint_minutes`")
    bounds.WORKERS.check(workers, "`workers`")
    dev = start_processes(device or cfg.device, cfg.batch_size)
    run = RunFolder(outdir, cfg.to_dict(), RUNTIME_FIELDS, data=None if isinstance(data, Dataset) else data or cfg.data,
                    logs=(STATS_FILE, METRIC_FILE), command="train-scalable", device=dev).check()
    # Checked before anything is written: a bad spec must not leave a run folder. G's images are in [-1, 1].
    aug = wrap_pm1(build_augment(cfg.augment, skew=cfg.augment_skew)) if cfg.augment else None
    ds = open_training_data(data if isinstance(data, Dataset) else data or cfg.data, cfg.resolution)
    order = DrawOrder(len(ds), cfg.batch_size // dist.get_world_size(), cfg.seed, dist.get_rank())
    with run:
        trainer = _ScalableRun(cfg, run, dev, Batches(ds, order, workers), aug)
        log.info("training %s (%d-bit fingerprints, %d px) for %g kimg on %d process(es), batch %d", cfg.preset,
                 cfg.fingerprint_length, cfg.resolution, cfg.kimg, trainer.world, cfg.batch_size)
        return trainer.loop(checkpoint_minutes)
