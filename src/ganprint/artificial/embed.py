"""Embed fingerprints into images: the Python API behind `ganprint embed`.

The data is streamed in batches with the preprocessing detect uses (`ganprint.inference.stream`), and split
across ranks under torchrun or `jobs` processes (`ganprint.inference.jobs`; rank 0 merges one result, in sorted
name order). What to do is one `EmbedSpec`, which every rank receives whole. `data` is a folder
(searched recursively), one image file, or a packed data set (`ganprint.data.packed`).

Output names: an input keeps its path relative to `data` with the extension replaced by `.png` (`sub/a.jpg` ->
`sub/a.png`; dots inside names survive, unlike the original's `split('.')[0]`). When several inputs would get the
same name, compared case-insensitively (`a.jpg` and `a.png`, or `A.png` and `a.PNG`), each of them keeps its full
name and gains `.png` (`a.jpg.png`, `a.png.png`); any clash that remains appends `~<input index>`. With
`output_format` same, a PNG, JPEG or WebP input keeps its own name and format.

Resume: an image is done when its PNG exists and a resume record (`ganprint.artificial.records`) or the
embedded_fingerprints.txt holds the bits it must carry; a re-run of the same command redoes only the others. The
output folder's record (`ganprint.core.paths.OutputFolder`) holds the run's identity, every setting that changes an
output byte: a re-run with another one (another `precision`, say) is refused, so outputs are never mixed.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ganprint._version import __version__
from ganprint.artificial.model import setup
from ganprint.artificial.records import (EMBEDDED_TXT, FP_DIR, MANIFEST, format_line, progress_file,
                                         read_fingerprint_txt, read_progress)
from ganprint.core import bounds
from ganprint.core import dist
from ganprint.core.errors import GanprintError
from ganprint.core.files import (atomic_write_json, atomic_write_text, check_writable_dir, output_error,
                                 read_input_json, remove_stale_temporaries, sha256_file)
from ganprint.core.fingerprints import as_bits, bits_to_str, bits_to_strs, counter_bits
from ganprint.core.paths import OutputFolder, check_overlap
from ganprint.core.progress import progress_bar
from ganprint.core.images import BadImageError, from_tensor01, preprocess, psnr_u8
from ganprint.core.specs import Spec, SpecError, spec_of_call
from ganprint.core.stats import count_matches, decode_bits
from ganprint.data.folders import open_image_dataset
from ganprint.inference.jobs import MIN_IMAGES_PER_JOB, plan_jobs, run_jobs
from ganprint.inference.fullsize import add_residual, tiled_encode, tiled_logits
from ganprint.inference.layout import net_dtype, prepare, to_float01
from ganprint.inference.stream import item_names, loader, walk_once
from ganprint.inference.writer import BatchWriter, png_name
from ganprint.nets.stega import InferenceEncoder

log = logging.getLogger(__name__)

KEEP_SIZE_BATCH = 2
OUTPUT_FORMATS = ("png", "same")
KEPT_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")  # what `output_format` same writes in the input's own format

__all__ = ["EmbedSpec", "embed", "original_identical_bits", "output_names", "per_image_bits"]


@dataclass(frozen=True)
class EmbedSpec(Spec):
    """What one embed run is asked to do (the fields are `embed`'s keyword arguments and the command's flags).

    `identical`: one fingerprint for all images (`fingerprint` as 0/1 or 0x-hex, else the original's seeded draw);
    otherwise image i gets `per_image_bits(seed, i)`. `check`: decode the written PNGs and report the mean bit
    accuracy. `precision`: "fp32" (the original's arithmetic), "bf16" (about twice as fast where the hardware has
    it; pixels differ by at most two 8-bit levels) or "auto" (bf16 where native). `jobs`: CPU processes that split
    the images ("auto": one per core for large inputs). `workers`: data-loading worker processes (None: none).
    `keep_size`: write every image at its own size, the fingerprint upsampled onto its centre square
    (`ganprint.inference.fullsize`), instead of the decoder's R x R view. `strength` scales the residual the
    encoder adds (1: the model's own; lower for a higher PSNR, higher for robustness). `tiles` n > 1 (with
    `keep_size`): the centre square fingerprinted as n x n tiles, each with the same bits, so that a detector that
    averages the tiles (`detect`'s `tiles`) reads them at a far lower strength (`ganprint.inference.fullsize`).
    `target_psnr` (dB, with `keep_size`): each image's strength chosen so that its PSNR lands there.
    `output_format`: "png" (lossless RGB PNGs) or, with `keep_size`, "same": each image in its own format (JPEG and
    WebP at quality 95, PNG; other formats as PNG) and a greyscale one kept greyscale (its luma fingerprinted).
    """

    model: str | os.PathLike
    data: str | os.PathLike
    outdir: str | os.PathLike
    resolution: int | None = None
    celeba: bool = False
    identical: bool = False
    fingerprint: str | None = None
    seed: int = 42
    batch_size: int = 64
    device: str = "auto"
    skip_bad: bool = False
    workers: int | None = None
    check: bool = False
    precision: str = "auto"
    jobs: int | str = 1
    keep_size: bool = False
    strength: float = 1.0
    tiles: int = 1
    target_psnr: float | None = None
    output_format: str = "png"

    def __post_init__(self) -> None:
        # `check` is a field here (the command's flag), which hides Spec.check: validate under another name.
        self._validate()

    def _validate(self) -> None:
        bounds.SEED.check(self.seed, "`seed`")
        bounds.BATCH.check(self.batch_size, "`batch_size`")
        if self.resolution is not None:
            bounds.RESOLUTION.check(self.resolution, "`resolution`")
        if self.workers is not None:
            bounds.WORKERS.check(self.workers, "`workers`")
        if self.fingerprint is not None and not self.identical:
            raise SpecError("`fingerprint` sets the one fingerprint of `identical`; add `identical`")
        bounds.STRENGTH.check(self.strength, "`strength`")
        bounds.TILES.check(self.tiles, "`tiles`")
        if self.tiles > 1 and not self.keep_size:
            raise SpecError("`tiles` fingerprints the image at its own size as tiles; add `keep_size`")
        if self.target_psnr is not None:
            bounds.PSNR.check(self.target_psnr, "`target_psnr`")
            if not self.keep_size or self.strength != 1:
                raise SpecError("`target_psnr` sets each image's `strength` at its own size: add `keep_size` and "
                                "drop `strength`")
        if self.output_format not in OUTPUT_FORMATS:
            raise SpecError(f"`output_format` must be one of {', '.join(OUTPUT_FORMATS)}, got {self.output_format!r}")
        if self.output_format == "same" and not self.keep_size:
            raise SpecError("`output_format` same keeps each photo's own format at its own size: add `keep_size`")
        if self.keep_size and self.celeba:
            raise SpecError("`celeba` crops aligned faces to the model's 128 px; `keep_size` keeps the image's own "
                            "size: drop one of them")


def output_names(relpaths: list[str], keep_format: bool = False) -> list[str]:
    """Unique `.png` output names for input paths relative to the data root (rule in the module docstring); with
    `keep_format` a PNG, JPEG or WebP input keeps its own name (and format)."""
    names = [r if keep_format and os.path.splitext(r)[1].lower() in KEPT_SUFFIXES else png_name(r)
             for r in relpaths]
    counts = Counter(n.lower() for n in names)
    names = [f"{r}.png" if counts[n.lower()] > 1 else n for r, n in zip(relpaths, names)]
    for _ in range(3):  # each pass only renames clashing names, adding the unique input index
        counts = Counter(n.lower() for n in names)
        if all(c == 1 for c in counts.values()):
            return names
        names = [f"{n[:-4]}~{i}.png" if counts[n.lower()] > 1 else n for i, n in enumerate(names)]
    raise AssertionError("output_names could not make names unique")  # unreachable: indices are unique


def per_image_bits(seed: int, index: int, length: int) -> torch.Tensor:
    """[K] bits of image `index`: a pure function of (seed, index), so resume and rank splits agree."""
    return counter_bits(seed, [index], length)[0]


def original_identical_bits(seed: int, length: int) -> torch.Tensor:
    """[K] the original's draw for identical fingerprints: torch.manual_seed(seed); zeros(1, K).random_(0, 2)."""
    g = torch.Generator().manual_seed(int(seed))
    return torch.zeros(1, length).random_(0, 2, generator=g)[0]


@walk_once
def embed(*args: Any, spec: EmbedSpec | None = None, **kwargs: Any) -> dict:
    """Fingerprint every image under `data` into `outdir`; returns the summary (also in manifest.json).

    Takes an `EmbedSpec` (in `model`'s place or as `spec`) or its fields as keyword arguments (`model`, `data` and
    `outdir` also by position). Writes `fingerprinted_images/<name>.png`, `embedded_fingerprints.txt`
    (`<name> <bits>`, sorted; names that hold a newline or other control characters are quoted, see
    `ganprint.artificial.records`) and `manifest.json`. Re-running resumes; an `outdir` that is, holds or lies
    inside an input, holds another run (any setting that changes an output byte, the resolved precision and the
    device type included) or files ganprint did not write is refused (`ganprint.core.paths`).
    """
    spec = spec_of_call(EmbedSpec, ("model", "data", "outdir"), args, spec, kwargs)
    out = Path(spec.outdir)
    check_overlap([("`model`", spec.model, "model"), ("`data`", spec.data, "data")], [("`outdir`", out)])
    check_writable_dir(out, "`outdir`")
    n_jobs = plan_jobs(spec.jobs, spec.device, spec.data, spec.model, MIN_IMAGES_PER_JOB)
    if n_jobs > 1:
        return run_jobs(embed_rank, spec, n_jobs)
    return embed_rank(spec)


@dataclass
class _Run:
    """One rank's view of an embed run."""

    out: Path
    fp_dir: str  # joined as strings per image: pathlib costs more than the rest of the per-image Python work
    ds: object
    relpaths: list[str]
    names: list[str]
    k: int
    res: int
    prec: str
    dev: torch.device
    module: torch.nn.Module
    fixed: torch.Tensor | None
    seed: int
    cfg: dict
    manifest: dict
    psnr: list = dataclasses.field(default_factory=lambda: [0.0, 0])  # this rank's sum of finite PSNRs (dB), count

    @property
    def fixed_str(self) -> str | None:
        return bits_to_str(self.fixed) if self.fixed is not None else None

    def expected_bits(self, indices: list[int]) -> list[str]:
        """The bit strings images `indices` must carry, drawn together (one draw per image showed in profiles)."""
        fixed = self.fixed_str
        return [fixed] * len(indices) if fixed else bits_to_strs(counter_bits(self.seed, indices, self.k))

    def recorded(self, pairs: list[tuple[int, tuple[str | None, str] | None]]) -> list[bool]:
        """For (image index, its resume record) pairs: whether the record holds the image with the bits it must
        carry. Bits are drawn only for images with a record of their source, in chunks (memory stays flat)."""
        ok = [False] * len(pairs)
        todo = [(pos, i, rec[1]) for pos, (i, rec) in enumerate(pairs) if rec and rec[0] in (None, self.relpaths[i])]
        for s in range(0, len(todo), 4096):
            chunk = todo[s:s + 4096]
            for (pos, _, got), want in zip(chunk, self.expected_bits([i for _, i, _ in chunk])):
                ok[pos] = got == want
        return ok


def embed_rank(spec: EmbedSpec) -> dict:
    """`embed` in this process: its rank's share of the images (all of them without torchrun or `jobs`)."""
    run = _open_run(spec)
    todo, resumed = _resume(run)
    stats = _embed_batches(run, todo, spec)
    return _merge(run, {**stats, "resumed": resumed}, spec.check)


def _open_run(spec: EmbedSpec) -> _Run:
    """Load the model, list the data, check the output folder and write the manifest of a starting run."""
    module, config, res, dev, prec = setup(spec.model, spec.resolution, spec.celeba, spec.device, need_encoder=True,
                                           batch_size=spec.batch_size, precision=spec.precision)
    k = int(config["fingerprint_length"])
    out = Path(spec.outdir)
    # bad files come back as items; handled later
    ds = open_image_dataset(spec.data, res * spec.tiles, celeba=spec.celeba, skip_bad=True,
                            keep_size=spec.keep_size)
    relpaths = item_names(ds)
    fixed = None
    if spec.identical:
        fixed = as_bits(spec.fingerprint, k) if spec.fingerprint is not None else \
            original_identical_bits(spec.seed, k)
    # The resume identity: every setting that changes a byte of the outputs (precision and device: the arithmetic).
    cfg = {"command": "embed", "model_sha256": sha256_file(spec.model), "model_config": config,
           "data": str(Path(spec.data).resolve()), "resolution": res, "celeba": bool(spec.celeba),
           "seed": int(spec.seed), "identical": bool(spec.identical),
           "fingerprint": bits_to_str(fixed) if fixed is not None else None, "precision": prec, "device": dev.type}
    if spec.keep_size or spec.strength != 1:  # only then: the runs of earlier versions keep their identity
        cfg.update(keep_size=bool(spec.keep_size), strength=float(spec.strength))
    if spec.tiles != 1:
        cfg.update(tiles=int(spec.tiles))
    if spec.target_psnr is not None:
        cfg.update(target_psnr=float(spec.target_psnr))
    if spec.output_format != "png":
        cfg.update(output_format=spec.output_format)
    folder = OutputFolder(out, "`outdir`", "embed", cfg, labels={k: _FLAGS.get(k, f"`{k}`") for k in cfg})
    # Every rank checks before anyone writes, so all ranks agree (and none waits on a failed peer).
    problem = _folder_problem(folder)
    dist.barrier()
    if problem:
        raise GanprintError(problem)
    manifest = {"config": cfg, "model": str(spec.model), "status": "running", "precision": prec,
                "ganprint_version": __version__}
    if dist.get_rank() == 0:
        try:
            folder.claim()
            atomic_write_json(out / MANIFEST, {**(_read_json(out / MANIFEST) or {}), **manifest})
        except OSError as e:
            raise output_error(out / MANIFEST, e) from None
        remove_stale_temporaries(out)  # what writers killed mid-file left behind
    dist.barrier()
    names = output_names(relpaths, spec.output_format == "same")
    return _Run(out, os.fspath(out / FP_DIR), ds, relpaths, names, k, res, prec, dev, module, fixed,
                int(spec.seed), cfg, manifest)


def _read_json(path: Path) -> dict | None:
    try:
        return read_input_json(path, "manifest")
    except (OSError, ValueError):  # GanprintError is a ValueError
        return None


# Identity keys that are not fields of the spec (the others are named as fields).
_FLAGS = {"command": "command", "model_sha256": "`model`", "model_config": "`model`"}


def _folder_problem(folder: OutputFolder) -> str | None:
    """Why `folder` cannot take this embed run (None when it is new, empty, or holds the same run)."""
    try:
        folder.check()
    except GanprintError as e:
        return str(e)
    return None


def _finished(out: Path, k: int) -> dict[str, tuple[str | None, str]]:
    """{name: (source relpath or None, bits)} of images recorded as written, by the txt and all resume records."""
    done: dict[str, tuple[str | None, str]] = {}
    txt = out / EMBEDDED_TXT
    if txt.is_file():
        try:
            done.update({name: (None, b) for name, b in read_fingerprint_txt(txt, k).items()})
        except GanprintError as e:
            log.warning("ignoring unreadable %s while resuming: %s", txt, e)
    done.update(read_progress(out, k))
    return done


def _resume(run: _Run) -> tuple[list[int], int]:
    """This rank's images still to do, and how many of its share are already done."""
    done = _finished(run.out, run.k)
    mine = list(range(dist.get_rank(), len(run.names), dist.get_world_size()))
    todo, resumed = [], 0
    for i, ok in zip(mine, run.recorded([(i, done.get(run.names[i])) for i in mine])):
        if ok and os.path.isfile(os.path.join(run.fp_dir, run.names[i])):
            resumed += 1
        else:
            todo.append(i)
    if resumed:
        log.info("resuming: %d of %d images already fingerprinted", resumed, len(mine))
    return todo, resumed


def _embed_batches(run: _Run, todo: list[int], spec: EmbedSpec) -> dict:
    """Fingerprint, write and record images `todo`; stops at the first unreadable file unless `skip_bad`."""
    progress = progress_file(run.out, dist.get_rank())
    try:
        progress.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise output_error(progress.parent, e) from None
    # bf16 changes the rounding anyway, so it also takes the faster form of the same function; fp32 keeps the
    # original's arithmetic exactly.
    bf16 = run.prec == "bf16"
    enc = prepare(InferenceEncoder(run.module.enc) if bf16 else run.module.enc, run.dev, run.prec, prefer_cl=bf16)
    dec = prepare(run.module.dec, run.dev, run.prec, prefer_cl=True) if spec.check else None
    skipped: list[dict] = []
    error, n_new, acc_sum = None, 0, 0.0
    pbar = progress_bar(len(todo), "embed")
    # Images at their own size: one batch decoded ahead and one being written, so memory is a few images'.
    ahead = 1 if spec.keep_size else 2
    writer, failed = BatchWriter(progress, depth=ahead), True
    try:
        with torch.inference_mode():
            for batch in loader(run.ds, todo, _batch_size(spec), spec.workers, prefetch=ahead) if todo else []:
                skipped += [{"file": run.relpaths[i], "error": err} for i, err in batch["skipped"]]
                idx = batch["index"].tolist()
                if idx:
                    acc_sum += _embed_batch(run, enc, dec, batch["img"], idx, writer, batch.get("full"),
                                            batch.get("grey"))
                    n_new += len(idx)
                pbar.update(len(idx) + len(batch["skipped"]))
                if batch["skipped"] and not spec.skip_bad:
                    error = skipped[-1]["error"]
                    break
        failed = False
    finally:
        writer.close(failed=failed)
        pbar.close()
    return {"skipped": skipped, "new": n_new, "error": error, "acc_sum": acc_sum, "psnr": list(run.psnr)}


def _batch_size(spec: EmbedSpec) -> int:
    # Images at their own size are held whole while their batch is in flight: two at a time bounds the memory.
    return min(spec.batch_size, KEEP_SIZE_BATCH) if spec.keep_size else spec.batch_size


def _embed_batch(run: _Run, enc, dec, img_u8: torch.Tensor, idx: list[int], writer: BatchWriter,
                 full: list | None = None, grey: list | None = None) -> float:
    """Fingerprint one batch (`full`: its images as read, with `keep_size`; `grey`: which of them are stored
    greyscale, kept so with `output_format` same) and hand its images and records to
    `writer`; returns the summed bit accuracy with a decoder (`check`), else 0."""
    k, dtype = run.k, net_dtype(run.prec)
    bits = (run.fixed.expand(len(idx), k) if run.fixed is not None
            else counter_bits(run.seed, idx, k)).to(run.dev)  # [N, K]
    x = to_float01(img_u8, run.dev, dtype, prefer_cl=run.prec == "bf16")  # [N, 3, R, R] in [0, 1]
    tiles = int(run.cfg.get("tiles", 1))
    y = tiled_encode(enc, bits.to(dtype), x, tiles)
    strength, keep = float(run.cfg.get("strength", 1.0)), bool(run.cfg.get("keep_size"))
    if keep:  # what the PNGs hold: each image at its own size (a list), the residual upsampled onto it
        residual = (y.float() - x.float()).cpu()
        u8 = [add_residual(f, residual[j], strength, run.cfg.get("target_psnr")) for j, f in enumerate(full)]
        if run.cfg.get("output_format") == "same":
            u8 = [_luma(a) if g else a for a, g in zip(u8, grey)]  # as detect will read the greyscale file
        view = torch.stack([torch.from_numpy(preprocess(a, run.res * tiles)) for a in u8]) if dec is not None \
            else None
    else:
        u8 = from_tensor01(y if strength == 1 else x + strength * (y - x))  # [N, R, R, 3] uint8
        view = torch.from_numpy(u8)
    originals = full if keep else img_u8.permute(0, 2, 3, 1).numpy()
    for v in (psnr_u8(a, b) for a, b in zip(originals, u8)):
        if math.isfinite(v):  # an image left exactly as it was (strength 0) has no PSNR to average
            run.psnr[0] += v
            run.psnr[1] += 1
    acc = 0.0
    if dec is not None:
        back = to_float01(view.permute(0, 3, 1, 2), run.dev, dtype, prefer_cl=True)
        acc = float(count_matches(decode_bits(tiled_logits(dec, back, tiles).float()), bits).sum()) / k
    fixed = run.fixed_str
    bit_strs = [fixed] * len(idx) if fixed else bits_to_strs(bits.cpu())
    grey_out = grey if run.cfg.get("output_format") == "same" else None
    writer.submit([(os.path.join(run.fp_dir, run.names[i]), u8[j][..., 0] if grey_out and grey_out[j] else u8[j])
                   for j, i in enumerate(idx)],
                  [{"name": run.names[i], "source": run.relpaths[i], "bits": bit_strs[j]} for j, i in enumerate(idx)])
    return acc


def _luma(rgb_u8: np.ndarray) -> np.ndarray:
    """The greyscale image a greyscale file will hold (Pillow's ITU-R 601-2 luma), as RGB with equal channels."""
    grey = np.asarray(Image.fromarray(rgb_u8).convert("L"))
    return np.repeat(grey[..., None], 3, axis=2)


def _listing(run: _Run) -> list[tuple[str, str]]:
    """(name, bits) of every image recorded with the bits it must carry, from the records of all ranks and runs."""
    done = _finished(run.out, run.k)
    wanted = {name: i for i, name in enumerate(run.names)}
    have = [(name, rec) for name, rec in done.items() if name in wanted]
    ok = run.recorded([(wanted[name], rec) for name, rec in have])
    return [(name, rec[1]) for (name, rec), good in zip(have, ok) if good]


def _merge(run: _Run, stats: dict, check: bool) -> dict:
    """Gather every rank's counts; rank 0 writes the sorted listing and the manifest. Raises the first bad-file
    error (finished images are kept), or an error when images are neither listed nor skipped."""
    parts = dist.all_gather_object(stats)
    dist.barrier()
    skipped = sorted((s for p in parts for s in p["skipped"]), key=lambda s: s["file"])
    errors = [p["error"] for p in parts if p["error"]]
    pairs = _listing(run)
    n, n_new = len(run.names), sum(p["new"] for p in parts)
    listed, skipped_files = {name for name, _ in pairs}, {s["file"] for s in skipped}
    missing = [run.names[i] for i in range(n) if run.names[i] not in listed and run.relpaths[i] not in skipped_files]
    status = "failed" if errors else "incomplete" if missing else "complete"
    accuracy = (sum(p["acc_sum"] for p in parts) / n_new) if check and n_new else None
    psnr_sum, psnr_n = sum(p["psnr"][0] for p in parts), sum(p["psnr"][1] for p in parts)
    summary = {
        "outdir": str(run.out), "images": n, "fingerprinted": len(pairs), "new": n_new,
        "resumed": sum(p["resumed"] for p in parts), "skipped": skipped,
        "fingerprint_length": run.k, "resolution": run.res, "identical": run.fixed is not None,
        "fingerprint": run.cfg["fingerprint"], "seed": run.seed, "precision": run.prec,
        "check_bit_accuracy": accuracy, "status": status,
        "mean_psnr": psnr_sum / psnr_n if psnr_n else None,  # of this run's new images, at their own size
        "keep_size": run.cfg.get("keep_size", False), "strength": run.cfg.get("strength", 1.0),
        "tiles": run.cfg.get("tiles", 1), "target_psnr": run.cfg.get("target_psnr"),
    }
    if dist.get_rank() == 0:
        _write_results(run, summary, sorted(format_line(name, bits) for name, bits in pairs))
    dist.barrier()
    if errors:
        raise BadImageError(f"{errors[0]}. Finished images are kept; fix or remove the file, or re-run with `skip_bad`")
    if missing:
        raise GanprintError(f"{len(missing)} of {n} images (e.g. {missing[0]!r}) were not recorded in {run.out}; "
                            "re-run the same command to finish them")
    return summary


def _write_results(run: _Run, summary: dict, lines: list[str]) -> None:
    """Rank 0: embedded_fingerprints.txt and the final manifest, then the log lines."""
    skipped = summary["skipped"]
    counts = {"images": summary["images"], "fingerprinted": len(lines), "new_this_run": summary["new"],
              "resumed": summary["resumed"], "skipped": len(skipped)}
    try:
        atomic_write_text(run.out / EMBEDDED_TXT, "".join(lines))
        atomic_write_json(run.out / MANIFEST, {**run.manifest, "status": summary["status"], "counts": counts,
                                               "skipped": skipped, "check_bit_accuracy": summary["check_bit_accuracy"],
                                               "mean_psnr": summary["mean_psnr"]})
    except OSError as e:
        raise output_error(run.out / EMBEDDED_TXT, e) from None
    log.info("embedded %d of %d images (%d new, %d resumed, %d skipped) into %s", len(lines), summary["images"],
             summary["new"], summary["resumed"], len(skipped), run.out / FP_DIR)
    if run.fixed is not None:
        log.info("fingerprint (%d bits, identical for all images): %s", run.k, run.cfg["fingerprint"])
    if summary["mean_psnr"] is not None:
        log.info("mean PSNR of the new images against their inputs%s: %.2f dB",
                 " (at their own size)" if summary["keep_size"] else "", summary["mean_psnr"])
    if summary["check_bit_accuracy"] is not None:
        log.info("bit accuracy decoded from the written PNGs: %.4f", summary["check_bit_accuracy"])
    for s in skipped:
        log.warning("skipped %s: %s", s["file"], s["error"])
