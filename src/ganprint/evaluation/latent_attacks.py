"""Model attacks on an issued latent decoder (a plain autoencoder with one user's fingerprint folded into its decoder),
and how its images are then read and attributed.

The holder of an issued decoder can: fine-tune it on clean images (the reconstruction loss of real images through
the autoencoder, its encoder frozen), swap it for the original, unfingerprinted decoder (which must answer "no
fingerprint": unknown), or quantise / perturb its weights (`ganprint.evaluation.model_attacks.quantize_weights` and
`weight_noise`, plus `to_float16` here). Each attack returns a copy; `read_attacked` decodes latents with it, reads
the fingerprint with the fingerprint decoder and attributes the bits among the issued fingerprints.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ganprint.core.errors import GanprintError
from ganprint.core.stats import decode_bits
from ganprint.inference.scoring import UNKNOWN, attribute_bits
from ganprint.latent.autoencoder import decode, encode

log = logging.getLogger(__name__)


def finetune_decoder(vae: nn.Module, images: torch.Tensor, steps: int, lr: float = 1e-4, batch_size: int = 16,
                     seed: int = 0, every: int = 0,
                     on_checkpoint: Callable[[int, nn.Module], None] | None = None) -> nn.Module:
    """A copy of autoencoder `vae` whose decoder (and post-quant conv) was trained for `steps` Adam steps to
    reconstruct `images` (uint8 [N, 3, R, R]) through the frozen encoder: MSE(D(E(x)), x) in [-1, 1].
    Every `every` steps (and at step 0) `on_checkpoint(step, copy)` sees the copy in eval mode."""
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise GanprintError(f"fine-tuning images must be uint8 [N, 3, R, R], got {images.dtype} {tuple(images.shape)}")
    if steps < 0 or batch_size < 1:
        raise GanprintError(f"`steps` must be >= 0 and `batch_size` >= 1, got {steps} and {batch_size}")
    out = copy.deepcopy(vae).float()
    out.requires_grad_(False)
    trained = [p for name, p in out.named_parameters() if name.startswith(("decoder.", "post_quant_conv."))]
    for p in trained:
        p.requires_grad_(True)
    opt = torch.optim.Adam(trained, lr=lr)
    g = torch.Generator().manual_seed(int(seed))
    x_all = images.to(next(out.parameters()).device).float() / 127.5 - 1
    for step in range(steps + 1):
        if on_checkpoint is not None and every and step % every == 0:
            on_checkpoint(step, out.eval())
        if step == steps:
            break
        x = x_all[torch.randint(0, len(x_all), (batch_size,), generator=g)]
        out.train()
        with torch.no_grad():
            z = encode(out, x)
        loss = F.mse_loss(decode(out, z), x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    out.requires_grad_(False)
    return out.eval()


def swap_decoder(vae: nn.Module, original: nn.Module) -> nn.Module:
    """A copy of `vae` with its decoder (and post-quant conv) replaced by `original`'s: the unfingerprinted decoder."""
    out = copy.deepcopy(vae)
    state = {k: v for k, v in original.state_dict().items() if k.startswith(("decoder.", "post_quant_conv."))}
    if not state:
        raise GanprintError("the original model has no decoder weights (decoder.*): give the original autoencoder")
    own = out.state_dict()
    wrong = [k for k, v in state.items() if k not in own or tuple(v.shape) != tuple(own[k].shape)]
    if wrong:
        raise GanprintError(f"the original autoencoder's decoder is not of this model's config ({wrong[0]} differs): "
                            "give the autoencoder this decoder was fingerprinted from")
    out.load_state_dict(state, strict=False)
    return out.eval()


def to_float16(vae: nn.Module) -> nn.Module:
    """A copy whose weights are rounded to float16 and back (the precision a half-precision deployment keeps)."""
    out = copy.deepcopy(vae)
    with torch.no_grad():
        for p in out.parameters():
            p.copy_(p.half().float())
    return out.eval()


@torch.no_grad()
def decoded_uint8(vae: nn.Module, latents: torch.Tensor, batch_size: int = 64) -> np.ndarray:
    """The images `vae` decodes from scaled latents, as saved: uint8 [N, R, R, 3]."""
    out = []
    for s in range(0, len(latents), batch_size):
        x = decode(vae, latents[s:s + batch_size].to(next(vae.parameters()).device).float())
        out.append(((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy())
    return np.concatenate(out)


def read_attacked(vae: nn.Module, fingerprint_decoder: nn.Module, latents: torch.Tensor, bits: torch.Tensor,
                  fp_id: int, issued: tuple[np.ndarray, np.ndarray], fpr: float = 1e-6) -> dict:
    """How the images of (attacked) decoder `vae` read: mean bit accuracy against its fingerprint `bits` [K], and
    the shares attributed to its own `fp_id`, to another issued fingerprint, or unknown, among `issued` =
    (fp_ids [N], packed bits [N, B]) at per-image `fpr` (Bonferroni-corrected for N).
    `fingerprint_decoder`: a loaded stega-decoder export (`.dec` reads images in [0, 1])."""
    imgs = decoded_uint8(vae, latents)
    with torch.no_grad():
        x = torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 255
        read = decode_bits(fingerprint_decoder.dec(x.to(next(fingerprint_decoder.parameters()).device))).cpu()
    k = read.shape[1]
    acc = (read == bits.reshape(1, -1).float()).float().mean(1)
    rows = attribute_bits(read, issued[0], issued[1], k, fpr)
    own = sum(r["attributed"] == fp_id for r in rows)
    unknown = sum(r["attributed"] == UNKNOWN for r in rows)
    n = len(rows)
    return {"images": n, "bit_accuracy": float(acc.mean()), "attributed_own": own / n, "unknown": unknown / n,
            "attributed_other": (n - own - unknown) / n}
