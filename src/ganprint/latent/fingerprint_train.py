"""Fine-tuning a latent autoencoder's decoder so that every image it decodes carries a fingerprint c.

Starting from a trained autoencoder, `train_latent_fingerprint` trains the mapping and affine layers of a
`ModulatedAutoencoder` (and, with `train_decoder`, the decoder's own weights) together with a fingerprint decoder,
ganprint's StegaStamp decoder (`StegaDecoderOnly`, export kind "stega-decoder", so attribution, `check`, ONNX and
the service read it as they read artificial fingerprints). A frozen copy of the original autoencoder encodes each
training batch (posterior mean, optionally plus a little latent noise) and decodes the reference x_0 = D(z); for
random fingerprints c the modulated decoder makes x_c = D_c(z), and the loss is

    bit_weight BCE(E(q(x_c)), c) + img_weight MSE(x_c, x_0) + ssim_weight (1 - SSIM(x_c, x_0)),

q the 8-bit rounding of a saved image (straight-through). With `augment` E also reads a perturbed copy (JPEG,
resize, crop, ...), the two bit losses averaged, as in the other trainers. Every draw of a step is a function of
(seed, rank, step), so resuming (re-running the same call) equals an uninterrupted run; gradients are averaged
over ranks by one explicit all-reduce per step under torchrun.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, Subset

from ganprint.core import bounds, dist
from ganprint.core.artifacts import load_export, read_metadata
from ganprint.core.errors import GanprintError
from ganprint.core.progress import progress_bar, status_line
from ganprint.core.seeds import derive_seed
from ganprint.core.stats import bit_accuracy, decode_bits
from ganprint.latent import modulated
from ganprint.latent.autoencoder import EXPORT_KIND as AE_KIND
from ganprint.latent.autoencoder import (AutoencoderConfig, autoencoder_sha256, decode, encode,
                                         read_diffusers_autoencoder)
from ganprint.latent.fingerprint_config import RUNTIME_FIELDS, LatentFingerprintConfig
from ganprint.latent.modulated import ModulatedAutoencoder, from_autoencoder
from ganprint.nets.stega import StegaConfig, StegaDecoderOnly, stega_config_dict
from ganprint.nets.stylegan2 import quantize_uint8_st
from ganprint.perturb.augment import build_augment
from ganprint.training.clock import Clock, Meter, images
from ganprint.training.data import Batches, EpochOrder, decode_all, open_training_data
from ganprint.training.optim import average_gradients
from ganprint.training.run import RunFolder, export, start_processes
from ganprint.training.state import TrainingState

log = logging.getLogger(__name__)

MODEL_EXPORT = "latent-modulated.safetensors"
DECODER_EXPORT = "fingerprint-decoder.safetensors"
DECODER_KIND = "stega-decoder"
_TAG_ORDER, _TAG_STEP, _TAG_AUG, _TAG_EVAL = 11, 12, 13, 14  # seed streams that never overlap


def read_autoencoder(path: str | os.PathLike, name: str = "autoencoder") -> tuple[AutoencoderConfig, torch.nn.Module]:
    """(config, model) of a "latent-autoencoder" export or of a diffusers AutoencoderKL `save_pretrained` folder;
    another kind of export is refused naming `name`."""
    if Path(path).is_dir():
        return read_diffusers_autoencoder(path, name)
    if not Path(path).is_file():
        raise GanprintError(f"`{name}` {path} does not exist; give a {AE_KIND} export (from `ganprint "
                            "train-autoencoder`) or a diffusers AutoencoderKL save_pretrained folder")
    kind = read_metadata(path)["ganprint.kind"]
    if kind != AE_KIND:
        raise GanprintError(f"`{name}` {path} holds a {kind!r} model; it needs a {AE_KIND} export (from `ganprint "
                            "train-autoencoder`) or a diffusers AutoencoderKL save_pretrained folder")
    vae, config, _ = load_export(path, kind=AE_KIND)
    return AutoencoderConfig.from_dict(config["autoencoder"]), vae


def fingerprint_decoder(resolution: int, k: int) -> StegaDecoderOnly:
    """The stega decoder that reads K-bit fingerprints from `resolution`-px images (a power of two >= 16)."""
    r = int(resolution)
    if r < 16 or r & (r - 1):
        raise GanprintError(f"the autoencoder makes {r}-px images; the fingerprint decoder reads sides that are a "
                            "power of two >= 16 (16, 32, 64, ...): give `autoencoder` such a model")
    dec = StegaDecoderOnly(StegaConfig(resolution=r, fingerprint_length=int(k)))
    # He-normal weights, zero biases: PyTorch's default init shrinks the activations layer after layer and starves
    # the bit gradient (measured for the stega trainer: benchmarks/experiments/stega-training/RESULTS-train.md).
    for mod in dec.modules():
        if isinstance(mod, (torch.nn.Conv2d, torch.nn.Linear)):
            torch.nn.init.kaiming_normal_(mod.weight, nonlinearity="relu")
            torch.nn.init.zeros_(mod.bias)
    return dec


def _augments(spec: str | None) -> bool:
    return bool(spec) and spec.strip().lower() != "none"


def _to01(x: torch.Tensor) -> torch.Tensor:
    """Decoded images in [-1, 1] -> [0, 1] as an 8-bit file holds them (rounding straight-through)."""
    return (quantize_uint8_st(x) + 1) / 2


def _psnr(x01: torch.Tensor, y01: torch.Tensor) -> torch.Tensor:
    mse = (x01 - y01).square().flatten(1).mean(1).clamp_min(1e-10)
    return 10 * torch.log10(1 / mse)


class _Run:
    """One run: the frozen original, the modulated copy, the fingerprint decoder, their optimiser and state."""

    def __init__(self, cfg: LatentFingerprintConfig, ae: tuple[AutoencoderConfig, torch.nn.Module], run: RunFolder,
                 dev: torch.device, data: Batches, held: torch.Tensor):
        self.cfg, self.run, self.dev, self.data = cfg, run, dev, data
        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        self.total = round(cfg.kimg * 1000)
        ae_cfg, vae = ae
        self.frozen = vae.to(dev).eval().requires_grad_(False)
        torch.manual_seed(derive_seed(cfg.seed, 0))  # identical initialisation on every rank
        self.model = from_autoencoder(self.frozen, ae_cfg, cfg.modulation()).to(dev).eval()
        self.E = fingerprint_decoder(ae_cfg.resolution, cfg.fingerprint_length).to(dev)
        self.model.autoencoder.requires_grad_(False)
        groups = [{"params": [*self.model.mapping.parameters(), *self.model.affine.parameters()],
                   "lr": cfg.mapping_lr}, {"params": list(self.E.parameters()), "lr": cfg.lr}]
        if cfg.train_decoder:
            dec = [*self.model.autoencoder.decoder.parameters(), *self.model.autoencoder.post_quant_conv.parameters()]
            for p in dec:
                p.requires_grad_(True)
            groups.append({"params": dec, "lr": cfg.decoder_lr})
        self.trained = [p for g in groups for p in g["params"]]
        self.opt = torch.optim.Adam(groups, betas=(0.9, 0.99))
        self.aug = build_augment(cfg.augment, skew=cfg.augment_skew) if _augments(cfg.augment) else None
        # counters: the running training bit accuracy and the images seen when the gate opened (-1: still shut)
        self.state = TrainingState(run.outdir, {"model": self.model, "decoder": self.E, "opt": self.opt},
                                   acc_run=0.5, gate_nimg=-1)
        self.state.restore()
        run.rewind(self.state.step)
        g = torch.Generator().manual_seed(derive_seed(cfg.seed, _TAG_EVAL))
        self.held = held.to(dev)
        self.held_c = torch.randint(0, 2, (len(held), cfg.fingerprint_length), generator=g).float().to(dev)

    def latents(self, img_u8: torch.Tensor, gen: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(latents for the modulated decoder, the frozen original's decode x_0) of a uint8 batch."""
        with torch.no_grad():
            z = encode(self.frozen, img_u8.to(self.dev).float() / 127.5 - 1)
            if gen is not None and self.cfg.latent_noise > 0:
                z = z + self.cfg.latent_noise * torch.randn(z.shape, generator=gen).to(self.dev)
            return z, decode(self.frozen, z)

    def step(self, img_u8: torch.Tensor) -> dict[str, float]:
        cfg, st = self.cfg, self.state
        gen = torch.Generator().manual_seed(derive_seed(cfg.seed, self.rank, st.step, _TAG_STEP))
        z, x0 = self.latents(img_u8, gen)
        c = torch.randint(0, 2, (len(z), cfg.fingerprint_length), generator=gen).float().to(self.dev)
        xc = self.model.decode(z, c)
        x01 = _to01(xc)
        logits = self.E.dec(x01)
        loss_bits = F.binary_cross_entropy_with_logits(logits, c)
        stats = {}
        if self.aug is not None:
            g_aug = torch.Generator().manual_seed(derive_seed(cfg.seed, self.rank, st.step, _TAG_AUG))
            logits_aug = self.E.dec(self.aug(x01, st.nimg / self.total, generator=g_aug))
            loss_bits = 0.5 * (loss_bits + F.binary_cross_entropy_with_logits(logits_aug, c))
            stats["bit_acc_train_augmented"] = bit_accuracy(decode_bits(logits_aug.detach()), c).mean().item()
        loss_img = F.mse_loss(xc, x0)
        ramp = self.gate()
        loss = cfg.bit_weight * loss_bits + ramp * cfg.img_weight * loss_img
        if cfg.ssim_weight > 0:
            import kornia  # the perturbation library's dependency already

            loss_ssim = 1 - kornia.metrics.ssim(x01, ((x0 + 1) / 2).clamp(0, 1), 11).mean()
            loss = loss + ramp * cfg.ssim_weight * loss_ssim
            stats["loss/ssim"] = loss_ssim.item()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        average_gradients(self.trained, fill_missing=True)
        self.opt.step()
        st.step, st.nimg = st.step + 1, st.nimg + cfg.batch_size
        acc = float(dist.all_reduce_mean(bit_accuracy(decode_bits(logits.detach()), c).mean()))
        st.counters["acc_run"] = 0.9 * st.counters["acc_run"] + 0.1 * acc
        stats.update({"loss": loss.item(), "loss/bits": loss_bits.item(), "loss/img": loss_img.item(),
                      "bit_acc_train": acc, "w_img": ramp * cfg.img_weight})
        return stats

    def gate(self) -> float:
        """The image terms' share this step: 0 until the gate opens, then a linear ramp to 1."""
        cfg, st = self.cfg, self.state
        if st.counters["gate_nimg"] < 0:
            if st.counters["acc_run"] < cfg.img_gate_acc and st.nimg < cfg.img_gate_kimg * 1000:
                return 0.0
            st.counters["gate_nimg"] = st.nimg
            log.info("image terms enabled at %.3f kimg (training bit accuracy %.3f)", st.nimg / 1000,
                     st.counters["acc_run"])
        ramp = cfg.img_rampup_kimg * 1000
        return min(1.0, (st.nimg - st.counters["gate_nimg"]) / ramp) if ramp > 0 else 1.0

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Held-out figures: bit accuracy of fingerprinted decodes, PSNR against the original's decode of the same
        latent, and bit accuracy on the original's decodes (no fingerprint: near 0.5)."""
        z, x0 = self.latents(self.held, None)
        x01, ref01 = _to01(self.model.decode(z, self.held_c)), _to01(x0)
        acc = bit_accuracy(decode_bits(self.E.dec(x01)), self.held_c).mean().item()
        acc0 = bit_accuracy(decode_bits(self.E.dec(ref01)), self.held_c).mean().item()
        return {"bit_accuracy": acc, "psnr": _psnr(x01, ref01).mean().item(), "bit_accuracy_original": acc0}

    def tick(self, means: dict[str, float], start_nimg: int, seconds: float, bar=None) -> dict:
        st = self.state
        st.elapsed += seconds
        row = {"kimg": st.nimg / 1000, "step": st.step, "time_s": round(st.elapsed, 2),
               "sec_per_kimg": seconds / max(1e-9, (st.nimg - start_nimg) / 1000), **means, **self.evaluate()}
        self.run.append(row)
        if self.rank == 0:
            if bar is not None:
                bar.set_postfix(bit_acc=f"{row['bit_accuracy']:.3f}", psnr=f"{row['psnr']:.1f}", refresh=False)
            status_line(log, bar, "kimg %.2f  held-out bit accuracy %.4f  PSNR %.2f dB  (original %.3f)  %.1f s/kimg",
                        row["kimg"], row["bit_accuracy"], row["psnr"], row["bit_accuracy_original"],
                        row["sec_per_kimg"])
        return row

    def snapshot(self, final: bool = False) -> None:  # `final`: the Clock passes it; every snapshot is complete
        st, out = self.state, self.run.outdir
        if self.rank == 0:
            meta = st.export_metadata(self.cfg.seed)
            m = self.model
            export(out / MODEL_EXPORT, m, modulated.EXPORT_KIND, modulated.export_config(m.ae_cfg, m.cfg), meta)
            export(out / DECODER_EXPORT, self.E, DECODER_KIND, stega_config_dict(self.E.cfg), meta)
        st.save()
        self.run.write_curves()

    def loop(self, checkpoint_minutes: float) -> dict:
        cfg, st = self.cfg, self.state
        clock = Clock(cfg.batch_size, checkpoint_minutes, tick=images(cfg.tick_kimg),
                      snapshot=images(cfg.snapshot_kimg))
        batches = self.data.stream(st.step)
        meter, row, tick_nimg, tick_t0 = Meter(), {}, st.nimg, time.time()
        with progress_bar(self.total, "train-latent-fingerprint", initial=st.nimg) as bar:
            while st.nimg < self.total:
                meter.add(self.step(next(batches)))
                bar.update(cfg.batch_size)
                done = st.nimg >= self.total
                if clock.due("tick", st.nimg, done):
                    row = self.tick(meter.means(), tick_nimg, time.time() - tick_t0, bar)
                    tick_nimg, tick_t0 = st.nimg, time.time()
                clock.after_step(st.nimg, done, self.snapshot, st.save)
        if not row:
            log.info("%s is already trained to %.3f kimg; nothing to do", self.run.outdir, st.nimg / 1000)
            if not (self.run.outdir / MODEL_EXPORT).exists():
                self.snapshot()
        return row


def _split(data: Dataset | torch.Tensor, n_eval: int) -> tuple[Dataset | torch.Tensor, Dataset | torch.Tensor]:
    """(training part, held-out part): the first `n_eval` images (at most a fifth of the set) are held out."""
    n = len(data)
    k = min(n_eval, n // 5)
    if n - k < 1 or k < 1:
        raise GanprintError(f"`data` holds {n} image(s); fingerprint training needs at least 5 (a fifth is held out "
                            "for the figures)")
    if isinstance(data, torch.Tensor):
        return data[k:], data[:k]
    return Subset(data, range(k, n)), Subset(data, range(k))


def train_latent_fingerprint(cfg: LatentFingerprintConfig, autoencoder: str | os.PathLike,
                             data: Dataset | torch.Tensor | str | os.PathLike, outdir: str | os.PathLike,
                             device: str | None = None, checkpoint_minutes: float = 5.0, workers: int = 0) -> dict:
    """Fine-tune the decoder of `autoencoder` (a latent-autoencoder export or a diffusers AutoencoderKL folder) to
    carry fingerprints, on `data` (an image folder, packed data set, Dataset or uint8 tensor at the model's
    resolution), into `outdir`; re-running the same call resumes. Returns the last stats row ({} when the run was
    finished already).

    Writes config.json, log.txt, stats.jsonl (per tick: training losses and the held-out bit accuracy, PSNR and
    bit accuracy on the original decoder's images), curves.png, training-state-<step>.pt, `latent-modulated.
    safetensors` (kind latent-modulated: decode with a fingerprint, or fold one into a plain copy) and
    `fingerprint-decoder.safetensors` (kind stega-decoder).
    """
    cfg.validate()
    bounds.MINUTES.check(checkpoint_minutes, "`checkpoint_minutes`")
    bounds.WORKERS.check(workers, "`workers`")
    path = data if isinstance(data, (str, os.PathLike)) else None
    inputs = [("`autoencoder`", str(autoencoder), "model")]
    dev = start_processes(device or cfg.device, cfg.batch_size)
    ae_cfg, vae = read_autoencoder(autoencoder)
    # The autoencoder's digest: resuming against a retrained one (same path, other weights) is refused.
    record = {**cfg.to_dict(), "autoencoder": str(autoencoder), "autoencoder_sha256": autoencoder_sha256(autoencoder),
              "data": "" if path is None else str(path)}
    run = RunFolder(outdir, record, RUNTIME_FIELDS, data=path, command="train-latent-fingerprint", device=dev,
                    inputs=inputs).check()
    fingerprint_decoder(ae_cfg.resolution, cfg.fingerprint_length)  # refuses a side it cannot read, before writing
    images = open_training_data(data, ae_cfg.resolution, resolution_from="`autoencoder` (it makes images that size)")
    train, held = _split(images, cfg.eval_images)
    order = EpochOrder(len(train), cfg.batch_size, cfg.seed, _TAG_ORDER, dist.get_rank(), dist.get_world_size())
    held_u8 = held if isinstance(held, torch.Tensor) else decode_all(held)
    with run:
        trainer = _Run(cfg, (ae_cfg, vae), run, dev, Batches(train, order, workers), held_u8)
        log.info("fingerprinting the decoder of %s (%d bits, %d px, layers %s%s) for %g kimg on %d process(es), "
                 "batch %d", autoencoder, cfg.fingerprint_length, ae_cfg.resolution, cfg.layers,
                 ", decoder weights trained" if cfg.train_decoder else "", cfg.kimg, trainer.world, cfg.batch_size)
        return trainer.loop(checkpoint_minutes)


def load_trained(outdir: str | os.PathLike, device: str = "cpu") -> tuple[ModulatedAutoencoder, StegaDecoderOnly]:
    """The two exports of a finished run: (modulated autoencoder, fingerprint decoder)."""
    out = Path(outdir)
    model = load_export(out / MODEL_EXPORT, kind=modulated.EXPORT_KIND, device=device)[0]
    dec = load_export(out / DECODER_EXPORT, kind=DECODER_KIND, device=device)[0]
    return model, dec

