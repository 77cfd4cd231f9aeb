"""Why white-box PGD does not move the tiny scalable decoder (RESULTS-collusion.md section 3): its logits and
input gradients on 16 genuine and 16 clean images, PGD on a clamped logit margin instead of the bit loss, and an
attack with no budget. Usage: python probe_scalable_pgd.py RUNDIR   (the folder of collusion.sh)
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
    xr, cf = margin_pgd(x, eps / 255, 20, False), margin_pgd(c, eps / 255, 20, True)
    with torch.no_grad():
        removed = ((dec(xr) > 0).long() == ref).float().mean()
        forged = ((dec(cf) > 0).long() == ref).float().mean()
    print(f"margin PGD eps {eps}: removed bit accuracy {float(removed):.3f}, forged {float(forged):.3f}")

# no budget at all: Adam on the pixels of 8 clean photos, 150 steps on the same margin, towards carol's key
adv = c[:8].clone().requires_grad_(True)
opt = torch.optim.Adam([adv], lr=0.01)
for _ in range(150):
    loss = -(dec(adv.clamp(0, 1)) * (2 * ref.float() - 1)).clamp(-5, 5).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
with torch.no_grad():
    out = adv.clamp(0, 1)
    acc = ((dec(out) > 0).long() == ref).float().mean()
    db = -10 * torch.log10((out - c[:8]).pow(2).mean())
print(f"unbounded: forged bit accuracy {float(acc):.3f} at {float(db):.1f} dB")
