"""Why white-box PGD does not move the tiny scalable decoder (RESULTS-collusion.md section 3): its logits and
input gradients on 16 genuine and 16 clean images, and PGD on a clamped logit margin instead of the bit loss.
Usage: python probe_scalable_pgd.py RUNDIR   (the folder of collusion.sh)
"""

import sys

import torch

from ganprint.core.fingerprints import parse_bits
from ganprint.evaluation.adversary import _load
from ganprint.evaluation.sources import load_decoder

R = sys.argv[1]
dec, res, k, _ = load_decoder(R + "/run/scalable-decoder.safetensors")
ref = parse_bits("0x9581e776", k)  # carol's key
x, _ = _load(R + "/img-3", res, ref, 16, "genuine")
c, _ = _load(R + "/real", res, ref, 16, "clean")
for name, t in (("genuine", x), ("clean", c)):
    t = t.clone().requires_grad_(True)
    z = dec(t)
    loss = torch.nn.functional.binary_cross_entropy_with_logits(z.float(), ref.float().expand(len(t), -1))
    (g,) = torch.autograd.grad(loss, t)
    z = z.detach()
    print(f"{name}: |logit| median {float(z.abs().median()):.3f} max {float(z.abs().max()):.3f}, "
          f"mean |grad| {float(g.abs().mean()):.2e}, zero gradients {float((g == 0).float().mean()):.3f}")


def margin_pgd(x: torch.Tensor, eps: float, steps: int, towards: bool) -> torch.Tensor:
    sign, adv, alpha = 2 * ref.float() - 1, x.clone(), 2.5 * eps / steps
    for _ in range(steps):
        adv.requires_grad_(True)
        (g,) = torch.autograd.grad((dec(adv) * sign).clamp(-5, 5).mean(), adv)
        adv = (x + (adv.detach() + (alpha if towards else -alpha) * g.sign() - x).clamp(-eps, eps)).clamp(0, 1)
    return adv


for eps in (4, 8):
    with torch.no_grad():
        removed = ((dec(margin_pgd(x, eps / 255, 20, False)) > 0).long() == ref).float().mean()
    with torch.no_grad():
        forged = ((dec(margin_pgd(c, eps / 255, 20, True)) > 0).long() == ref).float().mean()
    print(f"margin PGD eps {eps}: removed bit accuracy {float(removed):.3f}, forged {float(forged):.3f}")
