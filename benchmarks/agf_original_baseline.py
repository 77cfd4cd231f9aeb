r"""A faithful port of ArtificialGANFingerprints' `embed_fingerprints.py` / `detect_fingerprints.py` (HEAD f4a4bcc),
used only as the speed and memory baseline of `bench_embed_detect.py` on the same CPU.

Kept as in the original (papers.md sections 1.6, 1.7, 1.11):
- `CustomImageFolder`: only *.png, *.jpeg, *.jpg in the top folder, sorted; `PIL.Image.open` without convert.
- embed: transform Resize(res) -> CenterCrop(res) -> ToTensor (or CenterCrop(148) -> Resize(128) for CelebA);
  `torch.manual_seed(seed)`, one 1xK fingerprint, seeded again before the loop, fresh BxK bits per batch unless
  identical; DataLoader(shuffle=False, num_workers=0); no `torch.no_grad()` (outputs are `.detach()`ed);
  every fingerprinted image is accumulated in RAM, then written one `save_image(..., padding=0)` per image to
  `fingerprinted_images/<name.split('.')[0]>.png`, and `embedded_fingerprints.txt`.
- detect: transform ToTensor only (no resize or crop), no no_grad, all images kept in RAM, `detected_fingerprints.txt`.

Replaced because torchvision cannot be installed next to this torch: the transforms and `save_image` by their PIL /
numpy equivalents (same arithmetic: torchvision's Resize on PIL images is antialiased bilinear with the long
side truncated; CenterCrop rounds its offsets; save_image is mul(255).add(0.5).clamp(0, 255) -> uint8 -> PNG).
The networks are ganprint's StegaEncoder/StegaDecoder, which are the original architecture key for key.

Usage (K, resolution and weights are read from a ganprint stega export):
    python benchmarks/agf_original_baseline.py embed --model M.safetensors --data_dir IN --output_dir OUT [--identical]
    python benchmarks/agf_original_baseline.py detect --model M.safetensors \
        --data_dir OUT/fingerprinted_images --output_dir DET
"""

from __future__ import annotations

import argparse
import glob
import os

import numpy as np
import PIL.Image
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from ganprint.checkpoint import load_export


# --- torchvision equivalents (PIL / numpy) ------------------------------------------------------------------


class Resize:
    """torchvision.transforms.Resize(size) for an int size on a PIL image: shorter side -> size, bilinear."""

    def __init__(self, size: int):
        self.size = size

    def __call__(self, img):
        w, h = img.size
        short, long = (w, h) if w <= h else (h, w)
        if short == self.size:
            return img
        new_short, new_long = self.size, int(self.size * long / short)
        new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
        return img.resize((new_w, new_h), PIL.Image.BILINEAR)


class CenterCrop:
    """torchvision.transforms.CenterCrop(size) on a PIL image (offsets rounded as torchvision does)."""

    def __init__(self, size: int):
        self.size = size

    def __call__(self, img):
        w, h = img.size
        top, left = int(round((h - self.size) / 2.0)), int(round((w - self.size) / 2.0))
        return img.crop((left, top, left + self.size, top + self.size))


class ToTensor:
    """torchvision.transforms.ToTensor: PIL HWC uint8 -> float CHW in [0, 1]."""

    def __call__(self, img):
        arr = np.array(img, dtype=np.uint8)
        if arr.ndim == 2:
            arr = arr[:, :, None]
        return torch.from_numpy(arr).permute(2, 0, 1).contiguous().float().div(255)


class Compose:
    def __init__(self, transforms):
        self.transforms = transforms

    def __call__(self, img):
        for t in self.transforms:
            img = t(img)
        return img


def save_image(tensor: torch.Tensor, fp: str, padding: int = 0) -> None:
    """torchvision.utils.save_image for one [3, H, W] tensor (make_grid of one image is the image itself)."""
    ndarr = tensor.mul(255).add_(0.5).clamp_(0, 255).permute(1, 2, 0).to("cpu", torch.uint8).numpy()
    PIL.Image.fromarray(ndarr).save(fp)


# --- the original scripts -----------------------------------------------------------------------------------


def generate_random_fingerprints(fingerprint_size, batch_size=4):
    z = torch.zeros((batch_size, fingerprint_size), dtype=torch.float).random_(0, 2)
    return z


class CustomImageFolder(Dataset):
    def __init__(self, data_dir, transform=None):
        self.data_dir = data_dir
        self.filenames = glob.glob(os.path.join(data_dir, "*.png"))
        self.filenames.extend(glob.glob(os.path.join(data_dir, "*.jpeg")))
        self.filenames.extend(glob.glob(os.path.join(data_dir, "*.jpg")))
        self.filenames = sorted(self.filenames)
        self.transform = transform

    def __getitem__(self, idx):
        filename = self.filenames[idx]
        image = PIL.Image.open(filename)
        if self.transform:
            image = self.transform(image)
        return image, 0

    def __len__(self):
        return len(self.filenames)


def _load(model_path):
    module, config, _ = load_export(model_path, kind=("stega", "stega-decoder"))
    return module, int(config["resolution"]), int(config["fingerprint_length"])


def embed_fingerprints(model_path, data_dir, output_dir, identical=False, celeba=False, batch_size=64, seed=42,
                       device="cpu"):
    """The original embed: returns the number of images written."""
    module, res, k = _load(model_path)
    HideNet = module.enc.to(device)
    if celeba:
        transform = Compose([CenterCrop(148), Resize(res), ToTensor()])
    else:
        transform = Compose([Resize(res), CenterCrop(res), ToTensor()])
    dataset = CustomImageFolder(data_dir, transform=transform)

    all_fingerprinted_images = []
    all_fingerprints = []
    torch.manual_seed(seed)
    fingerprints = generate_random_fingerprints(k, 1)
    fingerprints = fingerprints.view(1, k).expand(batch_size, k)
    fingerprints = fingerprints.to(device)
    dataloader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0)
    torch.manual_seed(seed)
    for images, _ in tqdm(dataloader, disable=True):
        if not identical:
            fingerprints = generate_random_fingerprints(k, batch_size)
            fingerprints = fingerprints.view(batch_size, k)
            fingerprints = fingerprints.to(device)
        images = images.to(device)
        fingerprinted_images = HideNet(fingerprints[: images.size(0)], images)
        all_fingerprinted_images.append(fingerprinted_images.detach().cpu())
        all_fingerprints.append(fingerprints[: images.size(0)].detach().cpu())

    os.makedirs(os.path.join(output_dir, "fingerprinted_images"), exist_ok=True)
    all_fingerprinted_images = torch.cat(all_fingerprinted_images, dim=0).cpu()
    all_fingerprints = torch.cat(all_fingerprints, dim=0).cpu()
    with open(os.path.join(output_dir, "embedded_fingerprints.txt"), "w") as f:
        for idx in range(len(all_fingerprinted_images)):
            image = all_fingerprinted_images[idx]
            fingerprint = all_fingerprints[idx]
            _, filename = os.path.split(dataset.filenames[idx])
            filename = filename.split(".")[0] + ".png"
            save_image(image, os.path.join(output_dir, "fingerprinted_images", f"{filename}"), padding=0)
            fingerprint_str = "".join(map(str, fingerprint.cpu().long().numpy().tolist()))
            f.write(f"{filename} {fingerprint_str}\n")
    return len(all_fingerprinted_images)


def detect_fingerprints(model_path, data_dir, output_dir, batch_size=64, device="cpu"):
    """The original detect (no resize or crop): returns the number of images decoded."""
    module, _res, _k = _load(model_path)
    RevealNet = module.dec.to(device)
    dataset = CustomImageFolder(data_dir, transform=Compose([ToTensor()]))
    all_fingerprinted_images = []
    all_fingerprints = []
    dataloader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0)
    for images, _ in tqdm(dataloader, disable=True):
        images = images.to(device)
        fingerprints = RevealNet(images)
        fingerprints = (fingerprints > 0).long()
        all_fingerprinted_images.append(images.detach().cpu())
        all_fingerprints.append(fingerprints.detach().cpu())
    os.makedirs(output_dir, exist_ok=True)
    all_fingerprints = torch.cat(all_fingerprints, dim=0).cpu()
    with open(os.path.join(output_dir, "detected_fingerprints.txt"), "w") as f:
        for idx in range(len(all_fingerprints)):
            fingerprint = all_fingerprints[idx]
            fingerprint_str = "".join(map(str, fingerprint.cpu().long().numpy().tolist()))
            _, filename = os.path.split(dataset.filenames[idx])
            filename = filename.split(".")[0] + ".png"
            f.write(f"{filename} {fingerprint_str}\n")
    return len(all_fingerprints)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=["embed", "detect"])
    p.add_argument("--model", required=True)
    p.add_argument("--data_dir", required=True)
    p.add_argument("--output_dir", required=True)
    p.add_argument("--identical", action="store_true")
    p.add_argument("--celeba", action="store_true")
    p.add_argument("--batch_size", type=int, default=64)
    p.add_argument("--seed", type=int, default=42)
    a = p.parse_args()
    if a.command == "embed":
        embed_fingerprints(a.model, a.data_dir, a.output_dir, a.identical, a.celeba, a.batch_size, a.seed)
    else:
        detect_fingerprints(a.model, a.data_dir, a.output_dir, a.batch_size)


if __name__ == "__main__":
    main()
