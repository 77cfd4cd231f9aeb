"""Run the ORIGINAL ArtificialGANFingerprints scripts, unmodified, on the weights of a ganprint model.

ganprint contains none of the original code. The user names a checkout of ningyu1991/ArtificialGANFingerprints
with --original DIR; this runner starts that checkout's own embed_fingerprints.py and detect_fingerprints.py as
whole processes, as a user would run them, on the CPU (`--cuda -1`).

What those scripts need on a CPU-only machine is made at run time in a temporary folder outside this repository
(tempfile.mkdtemp, removed afterwards), which goes first on their PYTHONPATH; nothing in the checkout is changed:
- the weights: the ganprint `stega` export written in the original checkpoint layout, two torch.save'd
  state_dicts whose keys are ganprint's minus the `enc.` / `dec.` prefix (shared/docs/agf-checkpoint-layout.md);
- sitecustomize.py: torch.load maps tensors to the CPU unless told otherwise (the scripts pass no map_location);
- a stand-in `torchvision` package, only when the interpreter running the scripts has none (torchvision cannot
  be installed next to ganprint's torch): Compose, Resize, CenterCrop, ToTensor, save_image of one image, and
  the ImageFolder name that detect imports, written here with PIL and numpy.

The original detect script reads images as they are (no resize or crop): give it images at the model's size.

    python benchmarks/perf/agf_original_baseline.py embed --original ../ArtificialGANFingerprints \\
        --model runs/fp32/model.safetensors --data photos32/ --outdir orig-emb/
    python benchmarks/perf/agf_original_baseline.py detect --original ../ArtificialGANFingerprints \\
        --model runs/fp32/model.safetensors --data orig-emb/fingerprinted_images --outdir orig-det/
    python benchmarks/perf/agf_original_baseline.py compare orig-det/detected_fingerprints.txt \\
        orig-emb/embedded_fingerprints.txt

embed/detect print one JSON line (wall s, CPU s, peak memory of the process tree). Without --original they
print what to pass and exit 0 (skipped).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

log = logging.getLogger("agf_original_baseline")

SCRIPTS = {"embed": "embed_fingerprints.py", "detect": "detect_fingerprints.py"}
SKIP_MESSAGE = ("skipped: the original ArtificialGANFingerprints scripts are not part of ganprint. To compare "
                "against them, pass --original DIR, a checkout of ningyu1991/ArtificialGANFingerprints "
                "(the folder holding embed_fingerprints.py, detect_fingerprints.py and models.py).")


class OriginalError(Exception):
    """A user error, reported as one line."""


def skip_without_original(original: str | None) -> None:
    """With no --original: say what to pass and exit 0 (the comparison is skipped, not failed)."""
    if not original:
        print(SKIP_MESSAGE)
        sys.exit(0)


def check_original(original: str) -> Path:
    """The checkout folder, or OriginalError naming --original when the scripts are not there."""
    root = Path(original).expanduser().resolve()
    repo = Path(__file__).resolve().parents[2]  # benchmarks/perf/ -> the repository
    if root == repo or repo in root.parents:
        raise OriginalError(f"--original {original} is inside the ganprint repository; keep the checkout outside it "
                            "(ganprint may contain none of the original code)")
    needed = [*SCRIPTS.values(), "models.py"]
    missing = [name for name in needed if not (root / name).is_file()]
    if missing:
        raise OriginalError(f"--original {original}: {', '.join(missing)} not found there; give a checkout of "
                            "ningyu1991/ArtificialGANFingerprints")
    return root


def checkout_commit(root: Path) -> str | None:
    """The checkout's git commit, when it is a git work tree (provenance for result rows)."""
    res = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, check=False)
    return (res.stdout.strip() or None) if res.returncode == 0 else None


# --- weights: a ganprint export in the original layout ------------------------------------------------------


@dataclasses.dataclass
class OriginalWeights:
    encoder: Path
    decoder: Path
    resolution: int
    bits: int


def write_original_weights(model: str | os.PathLike, dest: Path) -> OriginalWeights:
    """Write a ganprint `stega` export as the original's *_encoder.pth / *_decoder.pth state_dicts.

    The export is read with safetensors alone (tensors plus JSON metadata), so this works across ganprint's
    module layout. Export keys are `enc.<original key>` and `dec.<original key>`.
    """
    import torch
    from safetensors import safe_open

    model = Path(model)
    if not model.is_file():
        raise OriginalError(f"--model {model} does not exist")
    with safe_open(str(model), framework="pt") as f:
        meta = f.metadata() or {}
        names = f.keys()
        tensors = {key: f.get_tensor(key) for key in names}
    if meta.get("ganprint.kind") != "stega":
        raise OriginalError(f"--model {model} is not a ganprint `stega` export with encoder and decoder "
                            f"(kind {meta.get('ganprint.kind')!r}); give the model.safetensors of `ganprint train`")
    config = json.loads(meta["ganprint.config"])
    halves = {}
    for prefix, probe in (("enc.", "secret_dense.weight"), ("dec.", "dense.2.weight")):
        halves[prefix] = {k[len(prefix):]: v.float().contiguous() for k, v in tensors.items() if k.startswith(prefix)}
        if probe not in halves[prefix]:
            raise OriginalError(f"--model {model}: no '{prefix}{probe}' tensor; not the original's architecture")
    dest.mkdir(parents=True, exist_ok=True)
    k = int(config["fingerprint_length"])
    weights = OriginalWeights(dest / f"stegastamp_{k}_encoder.pth", dest / f"stegastamp_{k}_decoder.pth",
                              int(config["resolution"]), k)
    torch.save(halves["enc."], weights.encoder)
    torch.save(halves["dec."], weights.decoder)
    return weights


# --- stand-ins, written at run time outside the repository ---------------------------------------------------

SITECUSTOMIZE = '''"""Written for one run of the original scripts by ganprint's benchmarks/agf_original_baseline.py."""
import functools

import torch

_torch_load = torch.load


@functools.wraps(_torch_load)
def _load_to_cpu(f, *args, **kwargs):
    # the scripts load checkpoints without map_location; this machine has no CUDA
    if not args:
        kwargs.setdefault("map_location", "cpu")
    return _torch_load(f, *args, **kwargs)


torch.load = _load_to_cpu
'''

TV_INIT = '''"""Stand-in torchvision for the original scripts (ganprint's agf_original_baseline.py): only what they use."""
from . import datasets, transforms, utils  # noqa: F401
'''

TV_TRANSFORMS = '''"""PIL-image transforms with torchvision's arithmetic (bilinear antialiased resize, rounded crop offsets)."""
import numpy as np
import PIL.Image
import torch


class Compose:
    def __init__(self, steps):
        self.steps = list(steps)

    def __call__(self, image):
        for step in self.steps:
            image = step(image)
        return image


class Resize:
    """Shorter side to `size`, aspect kept (the longer side truncated to an int)."""

    def __init__(self, size):
        self.size = int(size)

    def __call__(self, image):
        w, h = image.size
        short, long = min(w, h), max(w, h)
        if short == self.size:
            return image
        new_long = self.size * long // short
        return image.resize((self.size, new_long) if w <= h else (new_long, self.size), PIL.Image.BILINEAR)


class CenterCrop:
    def __init__(self, size):
        self.size = int(size)

    def __call__(self, image):
        w, h = image.size
        top, left = round((h - self.size) / 2), round((w - self.size) / 2)
        return image.crop((left, top, left + self.size, top + self.size))


class ToTensor:
    """H x W x C uint8 -> C x H x W float in [0, 1]."""

    def __call__(self, image):
        pixels = np.asarray(image, dtype=np.uint8)
        if pixels.ndim == 2:
            pixels = pixels[:, :, None]
        return torch.from_numpy(pixels.copy()).permute(2, 0, 1).contiguous().float().div(255)
'''

TV_UTILS = '''"""save_image for a single C x H x W image in [0, 1]: 8-bit by round-half-up, then PNG via PIL."""
import PIL.Image
import torch


def save_image(tensor, fp, **kwargs):
    if tensor.dim() == 4 and tensor.size(0) == 1:
        tensor = tensor[0]
    if tensor.dim() != 3:
        raise NotImplementedError("the stand-in save_image writes one image; run the script without --check")
    pixels = torch.clamp(tensor.detach() * 255 + 0.5, 0, 255).to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    PIL.Image.fromarray(pixels.squeeze(2) if pixels.shape[2] == 1 else pixels).save(fp)
'''

TV_DATASETS = '''"""detect_fingerprints.py imports ImageFolder but never uses it."""


class ImageFolder:
    def __init__(self, *args, **kwargs):
        raise NotImplementedError("stand-in torchvision: ImageFolder is not provided")
'''


def write_stand_ins(site: Path, python: str) -> str:
    """Write sitecustomize.py (and torchvision/ when `python` lacks it) into `site`; returns the torchvision used."""
    site.mkdir(parents=True, exist_ok=True)
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    probe = subprocess.run([python, "-c", "import torchvision; print(torchvision.__version__)"],
                           capture_output=True, text=True, check=False)
    if probe.returncode == 0:
        return f"torchvision {probe.stdout.strip()}"
    pkg = site / "torchvision"
    pkg.mkdir(exist_ok=True)
    for name, text in (("__init__", TV_INIT), ("transforms", TV_TRANSFORMS), ("utils", TV_UTILS),
                       ("datasets", TV_DATASETS)):
        (pkg / f"{name}.py").write_text(text)
    return "stand-in (PIL/numpy)"


# --- running the scripts --------------------------------------------------------------------------------------


@dataclasses.dataclass
class OriginalSession:
    """One checkout, one model's weights in the original layout, and the stand-in folder, ready to run."""

    root: Path
    weights: OriginalWeights
    site: Path
    torchvision: str
    python: str

    def env(self, threads: int | None = None) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(self.site), env.get("PYTHONPATH", "")) if p)
        if threads:
            env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
        return env

    def embed_cmd(self, data, outdir, batch_size=64, seed=42, identical=False) -> list[str]:
        cmd = [self.python, str(self.root / SCRIPTS["embed"]), "--encoder_path", str(self.weights.encoder),
               "--data_dir", str(data), "--output_dir", str(outdir), "--image_resolution",
               str(self.weights.resolution), "--batch_size", str(batch_size), "--seed", str(seed), "--cuda", "-1"]
        return cmd + (["--identical_fingerprints"] if identical else [])

    def detect_cmd(self, data, outdir, batch_size=64) -> list[str]:
        return [self.python, str(self.root / SCRIPTS["detect"]), "--decoder_path", str(self.weights.decoder),
                "--data_dir", str(data), "--output_dir", str(outdir), "--image_resolution",
                str(self.weights.resolution), "--batch_size", str(batch_size), "--cuda", "-1"]


@contextlib.contextmanager
def original_session(original: str, model: str | os.PathLike, python: str = sys.executable):
    """Yield an OriginalSession; its temporary folder (weights, stand-ins) is removed on exit."""
    root = check_original(original)
    tmp = Path(tempfile.mkdtemp(prefix="ganprint-agf-original-"))
    try:
        weights = write_original_weights(model, tmp / "weights")
        tv = write_stand_ins(tmp / "site", python)
        log.info("original scripts from %s (R=%d, K=%d, %s)", root, weights.resolution, weights.bits, tv)
        yield OriginalSession(root, weights, tmp / "site", tv, python)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# --- whole-process measurement -------------------------------------------------------------------------------

PAGE_MB = os.sysconf("SC_PAGE_SIZE") / 2**20


def _session_rss_mb(sid: int) -> tuple[float, set[int]]:
    """Summed resident memory (MB) of the live processes of session `sid`, and their pids (from /proc)."""
    total, pids = 0.0, set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid:  # fields[0] is stat field 3 (state): field 6 is the session, 24 the RSS
            total += int(fields[21]) * PAGE_MB
            pids.add(int(entry))
    return total, pids


def _sample_tree(sid: int, stop: threading.Event, interval: float, out: dict) -> None:
    while True:
        rss, pids = _session_rss_mb(sid)
        out["tree_rss_mb"] = max(out.get("tree_rss_mb", 0.0), rss)
        out.setdefault("pids", set()).update(pids)
        if stop.wait(interval):
            return


def run_measured(cmd: list[str], env: dict, log_path: Path, cwd: str | None = None, interval: float = 0.1,
                 ok: tuple[int, ...] = (0,)) -> dict:
    """Run `cmd` to completion; wall s, CPU s and peak memory of the whole process tree.

    The process starts its own session so that its descendants (workers, --jobs processes) can be found in
    /proc. max_process_rss_mb is exact (wait4: the largest single process of the tree); tree_rss_mb is the
    largest sum over the live tree, sampled every `interval` s (pages that forked processes share are counted
    in each of them, so this over-counts such trees). An exit status outside `ok` is an OriginalError.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    sampled: dict = {}
    stop = threading.Event()
    with open(log_path, "w") as logf:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=logf, stderr=subprocess.STDOUT, start_new_session=True)
        sampler = threading.Thread(target=_sample_tree, args=(proc.pid, stop, interval, sampled), daemon=True)
        sampler.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:  # e.g. Ctrl-C: the tree has its own session, so end it here
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            raise
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        stop.set()
        sampler.join()
    if proc.returncode not in ok:
        tail = log_path.read_text(errors="replace")[-3000:]
        raise OriginalError(f"{' '.join(cmd[:3])} ... exited with {proc.returncode} (log {log_path}):\n{tail}")
    return {"wall_s": round(wall, 3), "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
            "max_process_rss_mb": round(usage.ru_maxrss / 1024, 1),
            "tree_rss_mb": round(sampled.get("tree_rss_mb", 0.0), 1), "processes": len(sampled.get("pids", ()))}


# --- outputs ---------------------------------------------------------------------------------------------------


def read_bits(path: str | os.PathLike) -> dict[str, str]:
    """`<name>.png <0/1 string>` lines (the original's and ganprint's text format) as {name: bits}."""
    rows = {}
    for line in Path(path).read_text().splitlines():
        if line.strip():
            name, bits = line.split()
            rows[name] = bits
    return rows


def compare_bits(detected: str | os.PathLike, reference: str | os.PathLike) -> dict:
    """Bit accuracy of `detected` against `reference` over the image names both files hold."""
    got, want = read_bits(detected), read_bits(reference)
    names = sorted(set(got) & set(want))
    if not names:
        raise OriginalError(f"{detected} and {reference} share no image names")
    equal = sum(sum(a == b for a, b in zip(got[n], want[n])) for n in names)
    total = sum(len(want[n]) for n in names)
    same_images = sum(got[n] == want[n] for n in names)
    return {"images": len(names), "bit_accuracy": round(equal / total, 6), "identical_images": same_images,
            "only_in_detected": len(set(got) - set(want)), "only_in_reference": len(set(want) - set(got))}


def _check_sizes(data: str, resolution: int) -> None:
    """The original detect does not resize: refuse images of another size up front."""
    import PIL.Image

    if not Path(data).is_dir():
        raise OriginalError(f"--data {data} is not a folder of images")
    for path in sorted(Path(data).glob("*")):
        if path.suffix.lower() in (".png", ".jpg", ".jpeg"):
            with PIL.Image.open(path) as im:
                if im.size != (resolution, resolution):
                    raise OriginalError(f"--data {data}: {path.name} is {im.size[0]}x{im.size[1]} px; the original "
                                        f"detect does not resize, give images of {resolution}x{resolution} px")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    for name in ("embed", "detect"):
        s = sub.add_parser(name, help=f"run the original {SCRIPTS[name]}")
        s.add_argument("--original", default=None, help="checkout of ningyu1991/ArtificialGANFingerprints")
        s.add_argument("--model", required=True, help="a ganprint `stega` export (model.safetensors)")
        s.add_argument("--data", required=True, help="folder of images (flat: the scripts do not recurse)")
        s.add_argument("--outdir", required=True)
        s.add_argument("--batch-size", type=int, default=64)
        s.add_argument("--threads", type=int, default=None, help="OMP/MKL threads (default: torch's choice)")
        s.add_argument("--original-python", default=sys.executable, help="interpreter that runs the scripts")
        if name == "embed":
            s.add_argument("--seed", type=int, default=42)
            s.add_argument("--identical", action="store_true", help="one fingerprint for all images")
    c = sub.add_parser("compare", help="bit accuracy of a detected_fingerprints.txt against another bits file")
    c.add_argument("detected")
    c.add_argument("reference")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        if a.command == "compare":
            print(json.dumps(compare_bits(a.detected, a.reference)))
            return
        skip_without_original(a.original)
        with original_session(a.original, a.model, a.original_python) as s:
            if a.command == "embed":
                if not Path(a.data).is_dir():
                    raise OriginalError(f"--data {a.data} is not a folder of images")
                cmd = s.embed_cmd(a.data, a.outdir, a.batch_size, a.seed, a.identical)
            else:
                _check_sizes(a.data, s.weights.resolution)
                cmd = s.detect_cmd(a.data, a.outdir, a.batch_size)
            row = run_measured(cmd, s.env(a.threads), Path(a.outdir) / f"{SCRIPTS[a.command]}.log")
            print(json.dumps({"script": SCRIPTS[a.command], "torchvision": s.torchvision, **row}))
    except OriginalError as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
