"""Training of the scalable fingerprinting GAN (papers.md §2.4-2.6), single process or torchrun DDP.

One step (StyleGAN2 with lazy regularisation; G and the decoder E minimise the same scalar):
- G+E: softplus(-D(G(z,c))) + w_const ||G(z,c) - G(z,c')||^2 + w_z ||z - E_z(G(z,c))||^2 + w_c BCE(E_c(G(z,c)), c);
- G path length (every `pl_interval` steps) with the gradient taken wrt the fingerprint-derived styles;
- D: softplus(D(fake)) + softplus(-D(real)); R1 = gamma/2 ||grad D(real)||^2 every `r1_interval` steps.
G_ema is an exponential average of G (half-life `ema_kimg`, ramped up as in StyleGAN2-ADA for short runs).

Randomness is a pure function of (seed, rank, step), so resuming (re-running the same command) continues the
same stream. Gradients are averaged across ranks by an explicit all-reduce (several forward passes per step and
lazily used parameters make DDP wrappers awkward); parameters start identical because every rank seeds the
initialisation alike, and their equality is checked at each snapshot.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ganprint.core import dist
from ganprint.core.artifacts import latest_training_state, load_training_state, save_export, save_training_state
from ganprint.core.errors import GanprintError
from ganprint.core.files import append_jsonl, atomic_write_json
from ganprint.core.runtime import git_sha, resolve_device
from ganprint.core.seeds import derive_seed
from ganprint.core.stats import bit_accuracy, decode_bits
from ganprint.nets.scalable import (
    ScalableConfig,
    ScalableDecoder,
    ScalableGenerator,
    build_discriminator,
    parse_res_range,
)
from ganprint.nets.stylegan2 import quantize_uint8_st

log = logging.getLogger(__name__)

G_EXPORT = "scalable-G.safetensors"
E_EXPORT = "scalable-decoder.safetensors"
METRIC_FILE = "metric-bit-accuracy.jsonl"

# Presets: model widths and loss weights. "paper" follows config-e-Gskip-Dresnet and the released defaults;
# "authors-celeba" is the authors' own CelebA run (consistency weight 0.2, papers.md §2.5); "small" learns on
# 2 CPU cores (narrow, shallow mapping with a faster learning-rate multiplier, no path-length term, batch 8) and
# gates the consistency loss as AGF gates its L2 loss (papers.md §1.4): weight 0 until the training bit accuracy
# (running mean) first reaches `consistency_gate_acc` (or `consistency_gate_kimg` passes), then a linear ramp over
# `consistency_rampup_kimg`. With `gate_adversarial` the adversarial term (and D's training) waits for the same gate:
# G and the decoder first learn the fingerprint alone (~9 s/kimg instead of ~23), then the GAN terms ramp in.
# Measured (benchmarks/RESULTS-scalable.md §3): with only the consistency gated, bit accuracy was 0.569 at 30 kimg;
# with the adversarial term gated too, 0.88 when the gate opened at 40 kimg, 0.84 right after, then 0.95 at 146 kimg.
# Measured without any gate: after 6 kimg (375 steps, ~8 min) bit accuracy was 0.514; decoding the entangled code
# is slow to start, and the second G forward of the consistency term costs ~30%.
# The small preset also gates the latent-reconstruction loss (`gate_latent`): measured over 300 steps of G+E,
# bit accuracy reached 0.60 with the bit loss alone but only 0.51-0.54 with the latent loss added (the decoder's
# narrow head spends itself on z first). Its 4x4 head is 128 wide for 32 + 64 outputs for the same reason.
# Its bit-loss weight is 10 (paper: 2): with 2, the adversarial gradient dominates and bit accuracy was 0.53 at
# 8 kimg (1000 steps), against 0.60 after 300 steps of G+E with the bit loss alone.
PRESETS: dict[str, dict] = {
    "paper": dict(z_dim=512, w_dim=512, mapping_layers=8, mapping_lr_multiplier=0.01, channel_base=16384,
                  channel_max=512, batch_size=16, lr=0.002, consistency_weight=2.0, latent_weight=1.0,
                  bit_weight=2.0, r1_gamma=100.0, r1_interval=16, pl_weight=2.0, pl_interval=4, ema_kimg=10.0,
                  consistency_rampup_kimg=0.0, consistency_gate_acc=0.0, consistency_gate_kimg=0.0, gate_latent=False,
                  gate_adversarial=False, tick_kimg=4.0, snapshot_kimg=120.0, metric_kimg=120.0,
                  metric_images=2000),
    "small": dict(z_dim=32, w_dim=128, mapping_layers=2, mapping_lr_multiplier=1.0, channel_base=1024,
                  channel_max=128, batch_size=8, gate_latent=True, gate_adversarial=True, lr=0.002,
                  consistency_weight=2.0, latent_weight=1.0,
                  bit_weight=10.0, r1_gamma=1.0, r1_interval=16, pl_weight=0.0, pl_interval=4, ema_kimg=1.0,
                  consistency_rampup_kimg=10.0, consistency_gate_acc=0.9, consistency_gate_kimg=40.0, tick_kimg=0.5, snapshot_kimg=5.0, metric_kimg=2.0, metric_images=256),
    "tiny": dict(z_dim=16, w_dim=32, mapping_layers=2, mapping_lr_multiplier=0.1, channel_base=128,
                 channel_max=16, batch_size=4, lr=0.002, consistency_weight=2.0, latent_weight=1.0, bit_weight=2.0,
                 r1_gamma=1.0, r1_interval=2, pl_weight=2.0, pl_interval=2, ema_kimg=0.01,
                 consistency_rampup_kimg=0.008, consistency_gate_acc=0.0, consistency_gate_kimg=0.0,
                 gate_latent=False, gate_adversarial=False, tick_kimg=0.008,
                 snapshot_kimg=0.016, metric_kimg=0.016, metric_images=8),
}
PRESETS["authors-celeba"] = dict(PRESETS["paper"], consistency_weight=0.2)


@dataclass
class ScalableTrainConfig:
    data: str
    outdir: str
    resolution: int = 32
    fingerprint_bits: int = 128
    modulated_res: str = "4-128"
    preset: str = "small"
    kimg: float = 100.0  # total thousands of real images shown to D (summed over ranks)
    seed: int = 0
    device: str = "auto"
    # From the preset unless given (None):
    batch_size: int | None = None  # total over ranks
    lr: float | None = None
    consistency_weight: float | None = None
    consistency_rampup_kimg: float | None = None
    consistency_gate_acc: float | None = None
    consistency_gate_kimg: float | None = None
    gate_adversarial: bool | None = None
    latent_weight: float | None = None
    bit_weight: float | None = None
    r1_gamma: float | None = None
    r1_interval: int | None = None
    pl_weight: float | None = None
    pl_interval: int | None = None
    ema_kimg: float | None = None
    tick_kimg: float | None = None
    snapshot_kimg: float | None = None
    metric_kimg: float | None = None
    metric_images: int | None = None
    # Immunized training (`ganprint.augment` spec, e.g. "jpegd,blur,noise,crop"): the decoder also reads a
    # perturbed copy of each generated image; strength ramps in with training progress.
    augment: str | None = None
    augment_skew: float = 1.0
    # The decoder reads each generated image as saved: clipped and rounded to 8 bits (straight-through gradient).
    # Without it the decoder may rely on values beyond [-1, 1] or below one 8-bit level, which a saved PNG loses.
    quantize_read: bool = False

    def resolved(self) -> dict:
        """The effective settings: the preset overridden by every field given explicitly."""
        if self.preset not in PRESETS:
            raise GanprintError(f"--preset {self.preset!r} is unknown; choose one of {', '.join(PRESETS)}")
        out = dict(PRESETS[self.preset])
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if v is not None or f.name not in out:
                out[f.name] = v
        return out


def _model_config(s: dict) -> ScalableConfig:
    return ScalableConfig(resolution=s["resolution"], fingerprint_bits=s["fingerprint_bits"], z_dim=s["z_dim"],
                          w_dim=s["w_dim"], mapping_layers=s["mapping_layers"],
                          mapping_lr_multiplier=s["mapping_lr_multiplier"], channel_base=s["channel_base"],
                          channel_max=s["channel_max"],
                          modulated_res=parse_res_range(s["modulated_res"], s["resolution"])).validate()


def _allreduce_grads(module: torch.nn.Module) -> None:
    """Average the gradients of `module` over ranks (one flat all-reduce)."""
    if dist.get_world_size() == 1:
        return
    # Every rank runs the same graph, so the same parameters have gradients everywhere.
    params = [p for p in module.parameters() if p.grad is not None]
    flat = dist.all_reduce_mean(torch.cat([p.grad.reshape(-1) for p in params]))
    for p, g in zip(params, flat.split([q.numel() for q in params])):
        p.grad = g.reshape(p.shape).clone()


def _fingerprint_of(modules: list[torch.nn.Module]) -> str:
    h = hashlib.sha256()
    for m in modules:
        for k, v in sorted(m.state_dict().items()):
            h.update(k.encode())
            h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _grid(imgs: torch.Tensor, rows: int) -> np.ndarray:
    """img [N, 3, R, R] in [-1, 1] -> uint8 grid [rows*R, cols*R, 3]."""
    from ganprint.nets.stylegan2 import to_uint8

    u8 = to_uint8(imgs)  # [N, R, R, 3]
    n, r = u8.shape[0], u8.shape[1]
    cols = n // rows
    return u8[:rows * cols].reshape(rows, cols, r, r, 3).transpose(0, 2, 1, 3, 4).reshape(rows * r, cols * r, 3)


def _write_png(path: Path, arr: np.ndarray) -> None:
    from ganprint.core.images import write_png

    write_png(path, arr)


@torch.no_grad()
def eval_bit_accuracy(G: ScalableGenerator, E: ScalableDecoder, n: int, seed: int, device: torch.device,
                      batch: int = 64) -> float:
    """Mean per-image bit accuracy of E on n images of G with random z and random fingerprints (papers.md §2.6)."""
    g = torch.Generator().manual_seed(int(seed))
    accs = []
    for s in range(0, n, batch):
        m = min(batch, n - s)
        z = torch.randn(m, G.z_dim, generator=g).to(device)
        c = torch.randint(0, 2, (m, G.fingerprint_bits), generator=g).float().to(device)
        _, logits = E(G(z, c, noise_mode="random"))
        accs.append(bit_accuracy(decode_bits(logits), c).cpu())
    return float(torch.cat(accs).mean())


def train_scalable(cfg: ScalableTrainConfig) -> dict:
    """Train (or resume) a scalable fingerprinting GAN into `cfg.outdir`; returns the final stats row.

    Writes `stats.jsonl`, `metric-bit-accuracy.jsonl`, image grids, `scalable-G.safetensors` (G_ema),
    `scalable-decoder.safetensors` and resumable `training-state-*.pt`.
    """
    from ganprint.data.folders import open_image_dataset

    s = cfg.resolved()
    device = resolve_device(s["device"])
    dist.init(device)
    device = dist.local_device(device)
    rank, world = dist.get_rank(), dist.get_world_size()
    out = Path(s["outdir"])
    if s["batch_size"] % world:
        raise GanprintError(f"--batch-size {s['batch_size']} must be divisible by the {world} processes")
    batch = s["batch_size"] // world
    if s["kimg"] <= 0:
        raise GanprintError(f"--kimg must be > 0, got {s['kimg']}")
    mcfg = _model_config(s)
    aug = None  # checked before anything is written: a bad spec must not leave a run folder
    if s["augment"]:
        from ganprint.perturb.augment import build_augment, wrap_pm1

        aug = wrap_pm1(build_augment(s["augment"], skew=s["augment_skew"]))  # G's images are in [-1, 1]
    ds = open_image_dataset(s["data"], s["resolution"])
    if len(ds) == 0:
        raise GanprintError(f"--data {s['data']} holds no images")
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
    dist.barrier()

    torch.manual_seed(derive_seed(s["seed"], 0xC0FFEE))  # identical initialisation on every rank
    G = ScalableGenerator(mcfg).to(device)
    E = ScalableDecoder(mcfg).to(device)
    D = build_discriminator(mcfg).to(device)
    G.fused = False  # as StyleGAN2-ADA: training scales activations; grouped convs only at inference
    G_ema = copy.deepcopy(G).eval().requires_grad_(False)
    g_ratio = s["pl_interval"] / (s["pl_interval"] + 1) if s["pl_weight"] > 0 else 1.0
    d_ratio = s["r1_interval"] / (s["r1_interval"] + 1) if s["r1_gamma"] > 0 else 1.0
    opt_kw = lambda r: dict(lr=s["lr"] * r, betas=(0.0, 0.99 ** r), eps=1e-8)  # noqa: E731 - lazy-reg correction
    opt_G = torch.optim.Adam(G.parameters(), **opt_kw(g_ratio))
    opt_E = torch.optim.Adam(E.parameters(), **opt_kw(g_ratio))  # E uses G's learning rate (as the original)
    opt_D = torch.optim.Adam(D.parameters(), **opt_kw(d_ratio))
    step, nimg, pl_mean = 0, 0, torch.zeros([], device=device)
    acc_run, const_start = 0.5, None  # running training bit accuracy; nimg at which the consistency gate opened

    state_path = latest_training_state(out)
    if state_path is not None:
        st = load_training_state(state_path)
        if st.get("settings", {}).get("model") != mcfg.to_dict():
            raise GanprintError(f"{out} holds a run with another model config; use a new --outdir to start afresh")
        for m, k in ((G, "G"), (E, "E"), (D, "D"), (G_ema, "G_ema"), (opt_G, "opt_G"), (opt_E, "opt_E"),
                     (opt_D, "opt_D")):
            m.load_state_dict(st[k])
        step, nimg, pl_mean = int(st["step"]), int(st["nimg"]), st["pl_mean"].to(device)
        acc_run = float(st.get("acc_run", 0.5))
        const_start = None if int(st.get("const_start", -1)) < 0 else int(st["const_start"])
        log.info("resumed from %s at %.1f kimg", state_path, nimg / 1000)

    settings = {"train": s, "model": mcfg.to_dict(), "world_size": world, "git_sha": git_sha()}
    if rank == 0:
        atomic_write_json(out / "training_options.json", settings)
    grid_n, grid_rows = 32, 4
    gg = torch.Generator().manual_seed(derive_seed(s["seed"], 777))
    grid_z = torch.randn(grid_n, mcfg.z_dim, generator=gg).to(device)
    grid_c = torch.randint(0, 2, (grid_n, mcfg.fingerprint_bits), generator=gg).float().to(device)
    if rank == 0 and not (out / "reals.png").exists():
        idx = torch.randint(0, len(ds), (grid_n,), generator=gg)
        reals = torch.stack([ds[int(i)]["img"] for i in idx]).float() / 127.5 - 1  # [N, 3, R, R]
        _write_png(out / "reals.png", _grid(reals, grid_rows))

    total = int(s["kimg"] * 1000)
    tick_start, tick_nimg, t0 = time.time(), nimg, time.time()
    next_tick = _next(nimg, s["tick_kimg"])
    next_snap = _next(nimg, s["snapshot_kimg"])
    next_metric = _next(nimg, s["metric_kimg"])
    acc_stats: dict[str, list[float]] = {}
    last_row: dict = {}
    log.info("training %s (%d-bit fingerprints, %d px) for %g kimg on %d process(es), batch %d",
             s["preset"], mcfg.fingerprint_bits, mcfg.resolution, s["kimg"], world, s["batch_size"])

    while nimg < total:
        gen = torch.Generator().manual_seed(derive_seed(s["seed"], rank, step))
        torch.manual_seed(derive_seed(s["seed"], rank, step, 1))  # per-layer noise draws
        idx = torch.randint(0, len(ds), (batch,), generator=gen)
        real = torch.stack([ds[int(i)]["img"] for i in idx]).to(device).float() / 127.5 - 1  # [B, 3, R, R]
        z = torch.randn(batch, mcfg.z_dim, generator=gen).to(device)
        c = torch.randint(0, 2, (batch, mcfg.fingerprint_bits), generator=gen).float().to(device)
        c2 = torch.randint(0, 2, (batch, mcfg.fingerprint_bits), generator=gen).float().to(device)
        stats = {}

        # --- G + E main ---
        G.requires_grad_(True), E.requires_grad_(True), D.requires_grad_(False)
        if const_start is None and (acc_run >= s["consistency_gate_acc"] or nimg >= s["consistency_gate_kimg"] * 1000):
            const_start = nimg
            log.info("consistency loss enabled at %.2f kimg (training bit accuracy %.3f)", nimg / 1000, acc_run)
        ramp = s["consistency_rampup_kimg"] * 1000
        gate = 0.0 if const_start is None else (min(1.0, (nimg - const_start) / ramp) if ramp > 0 else 1.0)
        w_const = s["consistency_weight"] * gate
        w_z = s["latent_weight"] * (gate if s["gate_latent"] else 1.0)
        w_adv = gate if s["gate_adversarial"] else 1.0
        adv_on = w_adv > 0  # a closed gate skips every D pass (G's adversarial term, D's step, R1, path length)
        fake = G(z, c)
        z_hat, logits = E(quantize_uint8_st(fake) if s["quantize_read"] else fake)
        loss_adv = F.softplus(-D(fake)).mean() if adv_on else torch.zeros([], device=device)
        if w_const > 0:
            loss_const = (fake - G(z, c2)).square().mean()
        else:  # gate closed: skip the second forward pass
            with torch.no_grad():
                loss_const = (fake - G(z, c2)).square().mean() if step % 16 == 0 else torch.full([], float("nan"))
        loss_z = (z - z_hat).square().mean()
        loss_c = F.binary_cross_entropy_with_logits(logits, c)
        if aug is not None:
            # As `train --augment`: the clean read stays in the loss and drives the gates, the perturbed read buys
            # robustness. Its draws are a pure function of (seed, rank, step), so resuming stays exact.
            g_aug = torch.Generator().manual_seed(derive_seed(s["seed"], rank, step, 2))
            logits_aug = E(aug(fake, nimg / total, generator=g_aug))[1]
            loss_c = 0.5 * (loss_c + F.binary_cross_entropy_with_logits(logits_aug, c))
            stats["bit_acc_train_augmented"] = float(
                dist.all_reduce_mean(bit_accuracy(decode_bits(logits_aug.detach()), c).mean()))
        loss = w_adv * loss_adv + w_z * loss_z + s["bit_weight"] * loss_c
        if w_const > 0:
            loss = loss + w_const * loss_const
        opt_G.zero_grad(set_to_none=True), opt_E.zero_grad(set_to_none=True)
        loss.backward()
        _allreduce_grads(G), _allreduce_grads(E)
        opt_G.step(), opt_E.step()
        acc_now = float(dist.all_reduce_mean(bit_accuracy(decode_bits(logits.detach()), c).mean()))
        acc_run = 0.95 * acc_run + 0.05 * acc_now
        stats.update(w_const=w_const, w_latent=w_z, w_adv=w_adv, loss_z=loss_z.item(), loss_bits=loss_c.item(),
                     bit_acc_train=acc_now)
        if adv_on:
            stats["loss_G_adv"] = loss_adv.item()
        if not math.isnan(loss_const.item()):
            stats["loss_const"] = loss_const.item()

        # --- G path-length regularisation (wrt the fingerprint-derived styles) ---
        if s["pl_weight"] > 0 and step % s["pl_interval"] == 0 and adv_on:
            E.requires_grad_(False)
            n_pl = max(1, batch // 2)
            ws = G.mapping(c[:n_pl])  # [n, num_ws, w_dim]
            img = G.synthesize(z[:n_pl], ws)
            pl_noise = torch.randn_like(img) / math.sqrt(img.shape[2] * img.shape[3])
            (grad,) = torch.autograd.grad((img * pl_noise).sum(), ws, create_graph=True)
            lengths = grad.square().sum(2).mean(1).sqrt()  # [n]
            pl_mean = pl_mean.lerp(dist.all_reduce_mean(lengths.detach().mean()), 0.01)
            loss_pl = (lengths - pl_mean).square().mean() * s["pl_weight"] * s["pl_interval"]
            opt_G.zero_grad(set_to_none=True)
            loss_pl.backward()
            _allreduce_grads(G)
            opt_G.step()
            stats["loss_pl"] = loss_pl.item()

        # --- D main (held back with the adversarial term while a gated run learns the fingerprint) ---
        G.requires_grad_(False), E.requires_grad_(False), D.requires_grad_(True)
        if adv_on:
            loss_D = F.softplus(D(fake.detach())).mean() + F.softplus(-D(real)).mean()
            opt_D.zero_grad(set_to_none=True)
            loss_D.backward()
            _allreduce_grads(D)
            opt_D.step()
            stats["loss_D"] = loss_D.item()

        # --- D R1 ---
        if s["r1_gamma"] > 0 and step % s["r1_interval"] == 0 and adv_on:
            real_r = real.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(D(real_r).sum(), real_r, create_graph=True)
            loss_r1 = grad.square().sum(dim=[1, 2, 3]).mean() * (s["r1_gamma"] / 2) * s["r1_interval"]
            opt_D.zero_grad(set_to_none=True)
            loss_r1.backward()
            _allreduce_grads(D)
            opt_D.step()
            stats["loss_r1"] = loss_r1.item()

        # --- EMA (half-life ema_kimg, ramped up over the first 5% images as in StyleGAN2-ADA) ---
        step += 1
        nimg += s["batch_size"]
        ema_nimg = min(s["ema_kimg"] * 1000, nimg * 0.05)
        beta = 0.5 ** (s["batch_size"] / max(ema_nimg, 1e-8))
        with torch.no_grad():
            for p_ema, p in zip(G_ema.parameters(), G.parameters()):
                p_ema.copy_(p.detach().lerp(p_ema, beta))
            for b_ema, b in zip(G_ema.buffers(), G.buffers()):
                b_ema.copy_(b)
        for k, v in stats.items():
            acc_stats.setdefault(k, []).append(v)

        done = nimg >= total
        if nimg >= next_tick or done:
            now = time.time()
            row = {"kimg": nimg / 1000, "step": step, "sec_per_kimg": (now - tick_start) / max(1e-9, (nimg - tick_nimg) / 1000),
                   "time_s": now - t0, "world_size": world}
            row.update({k: float(np.mean(v)) for k, v in acc_stats.items()})
            if rank == 0:
                append_jsonl(out / "stats.jsonl", row)
                log.info("kimg %.2f  bit_acc_train %.3f  G_adv %.3f  D %.3f  const %.4f  %.1f s/kimg", row["kimg"],
                         row.get("bit_acc_train", 0), row.get("loss_G_adv", 0), row.get("loss_D", 0),
                         row.get("loss_const", 0), row["sec_per_kimg"])
            last_row, acc_stats, tick_start, tick_nimg = row, {}, now, nimg
            next_tick = _next(nimg, s["tick_kimg"])

        if nimg >= next_metric or done:
            if rank == 0:
                acc = eval_bit_accuracy(G_ema, E, s["metric_images"], derive_seed(s["seed"], 4242), device)
                append_jsonl(out / METRIC_FILE, {"kimg": nimg / 1000, "step": step, "bit_accuracy": acc,
                                                 "images": s["metric_images"], "generator": "G_ema"})
                log.info("kimg %.2f  bit accuracy (G_ema, %d images, random fingerprints) %.4f", nimg / 1000,
                         s["metric_images"], acc)
                last_row["bit_accuracy"] = acc
            next_metric = _next(nimg, s["metric_kimg"])
            dist.barrier()

        if nimg >= next_snap or done:
            prints = dist.all_gather_object(_fingerprint_of([G, E, D]))
            if len(set(prints)) != 1:
                raise RuntimeError(f"ranks diverged: parameter hashes {prints}")
            if rank == 0:
                kimg_tag = f"{nimg // 1000:06d}"
                with torch.no_grad():
                    _write_png(out / f"fakes-arbitrary-{kimg_tag}.png", _grid(G_ema(grid_z, grid_c), grid_rows))
                    same_c = grid_c[:1].repeat(grid_n, 1)
                    _write_png(out / f"fakes-fingerprints-same-{kimg_tag}.png",
                               _grid(G_ema(grid_z, same_c), grid_rows))
                    same_z = grid_z[:1].repeat(grid_n, 1)
                    _write_png(out / f"fakes-latents-same-{kimg_tag}.png", _grid(G_ema(same_z, grid_c), grid_rows))
                cfg_d = mcfg.to_dict()
                save_export(out / G_EXPORT, G_ema, "scalable-G", cfg_d, {"ganprint.kimg": str(nimg / 1000)})
                save_export(out / E_EXPORT, E, "scalable-decoder", cfg_d, {"ganprint.kimg": str(nimg / 1000)})
                save_training_state(out, step, {
                    "G": G.state_dict(), "E": E.state_dict(), "D": D.state_dict(), "G_ema": G_ema.state_dict(),
                    "opt_G": opt_G.state_dict(), "opt_E": opt_E.state_dict(), "opt_D": opt_D.state_dict(),
                    "step": step, "nimg": nimg, "pl_mean": pl_mean.detach().cpu(), "acc_run": acc_run,
                    "const_start": -1 if const_start is None else const_start,
                    "settings": {"model": mcfg.to_dict()}})
            next_snap = _next(nimg, s["snapshot_kimg"])
            dist.barrier()

    if rank == 0 and not last_row:
        log.info("%s is already trained to %.1f kimg; nothing to do", out, nimg / 1000)
    return last_row


def _next(nimg: int, every_kimg: float) -> int:
    every = max(1, int(round(every_kimg * 1000)))
    return (nimg // every + 1) * every
