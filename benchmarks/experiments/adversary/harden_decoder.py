"""Defence experiment: fine-tune a stega model's decoder (encoder frozen) against forged residuals.

Positives: training crops fingerprinted by the model with KEY (8-bit). Negatives: other training crops with the
registry's own mean high-pass pattern (from REG_IMAGES, images it fingerprinted itself) pasted at a PSNR drawn from
30-46 dB, labelled with fresh random bits, so the decoder learns not to read the content-free pattern.
Usage: python harden_decoder.py MODEL TRAIN_IMAGES REG_IMAGES KEY OUT [STEPS]
"""

import sys

import torch

from ganprint.core.artifacts import load_export, save_export
from ganprint.core.fingerprints import parse_bits
from ganprint.evaluation.adversary import _load, estimate_pattern, to_8bit
from ganprint.nets.stega import stega_config_dict

model_path, train_dir, reg_dir, key_text, out = sys.argv[1:6]
steps = int(sys.argv[6]) if len(sys.argv) > 6 else 300
torch.manual_seed(0)
model, _, _ = load_export(model_path, kind="stega")
key = parse_bits(key_text, model.cfg.fingerprint_length).float()
x_train, _ = _load(train_dir, model.cfg.resolution, key, None, "train")
pattern = estimate_pattern(_load(reg_dir, model.cfg.resolution, key, None, "reg")[0])
unit = float(pattern.pow(2).mean())
opt = torch.optim.Adam(model.dec.parameters(), lr=1e-4)
bce = torch.nn.BCEWithLogitsLoss()
for step in range(steps):
    idx = torch.randint(0, len(x_train), (128,))
    xa, xb = x_train[idx[:64]], x_train[idx[64:]]
    with torch.no_grad():
        gen = to_8bit(model.enc(key.expand(64, -1), xa))
        db = torch.empty(64, 1, 1, 1).uniform_(30, 46)
        forged = to_8bit(xb + torch.sqrt(10 ** (-db / 10) / unit) * pattern)
    noise_bits = torch.randint(0, 2, (64, key.numel())).float()
    loss = bce(model.dec(gen), key.expand(64, -1)) + bce(model.dec(forged), noise_bits)
    opt.zero_grad()
    loss.backward()
    opt.step()
    if step % 50 == 0:
        print(f"step {step} loss {loss.item():.4f}", flush=True)
save_export(out, model, "stega", stega_config_dict(model.cfg))
print("wrote", out)
