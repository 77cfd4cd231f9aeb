"""Embed fingerprints into images and detect them: the Python API behind `ganprint embed` / `ganprint detect`.

Both stream the data in batches (memory does not grow with the number of images), use the SAME
preprocessing (centre crop + resize, or the CelebA crop; the original detect skipped it), and split
the files across ranks under torchrun (rank 0 merges one result, in sorted name order). `data` is a
folder (searched recursively), one image file, or a packed data set (`ganprint.packed`).

Output names (embed): an input keeps its path relative to `data` with the extension replaced by
`.png` (`sub/a.jpg` -> `sub/a.png`; dots inside names survive, unlike the original's
`split('.')[0]`). When several inputs would get the same name, compared case-insensitively (`a.jpg`
and `a.png`, or `A.png` and `a.PNG`), each of them keeps its full name and gains `.png`
(`a.jpg.png`, `a.png.png`); any clash that remains appends `~<input index>`.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import posixpath
import sys
from collections import Counter
from pathlib import Path, PurePosixPath

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from ganprint import __version__
from ganprint.artificial.jobs import MIN_IMAGES_PER_DETECT_JOB, MIN_IMAGES_PER_JOB, resolve_jobs
from ganprint.core import dist
from ganprint.core.artifacts import load_export
from ganprint.core.errors import GanprintError
from ganprint.core.files import append_jsonl, atomic_write_json, atomic_write_text, read_jsonl, sha256_file
from ganprint.core.fingerprints import bits_to_str, bits_to_strs, counter_bits, parse_bits, strs_to_bits
from ganprint.core.images import IMAGE_EXTENSIONS, BadImageError, from_tensor01, write_png
from ganprint.core.runtime import resolve_device, resolve_precision
from ganprint.core.stats import count_matches, decode_bits, log10_p_value, match_threshold, p_value
from ganprint.data.folders import collate, one_listing, open_image_dataset
from ganprint.nets.stega import InferenceEncoder

log = logging.getLogger(__name__)

FP_DIR = "fingerprinted_images"
EMBEDDED_TXT = "embedded_fingerprints.txt"
DETECTED_TXT = "detected_fingerprints.txt"
MANIFEST = "manifest.json"
PROGRESS_DIR = ".progress"


# --- shared helpers ---------------------------------------------------------------------------------


# zlib level of the fingerprinted PNGs: lossless at any level; at 1 a 32-px crop encodes in 79 instead of 103 us
# for 1.5 % more bytes than at 6 (benchmarks/png_speed.py).
PNG_LEVEL = 1


def _png_name(relpath: str) -> str:
    """`relpath` with its suffix replaced by .png (as PurePosixPath.with_suffix, by string operations for the usual
    image extensions)."""
    stem, ext = posixpath.splitext(relpath)
    if ext.lower() in IMAGE_EXTENSIONS:
        return stem + ".png"
    return str(PurePosixPath(relpath).with_suffix(".png"))


def output_names(relpaths: list[str]) -> list[str]:
    """Unique `.png` output names for input paths relative to the data root (rule in the module docstring)."""
    names = [_png_name(r) for r in relpaths]
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
    """[K] the original's `--identical_fingerprints` draw: torch.manual_seed(seed); zeros(1, K).random_(0, 2)."""
    g = torch.Generator().manual_seed(int(seed))
    return torch.zeros(1, length).random_(0, 2, generator=g)[0]


def read_fingerprint_txt(path: str | os.PathLike, length: int | None = None) -> dict[str, str]:
    """Read an embedded/detected_fingerprints.txt (`<name> <0/1 bits>` per line) into {name: bits}."""
    path = Path(path)
    if not path.is_file():
        raise GanprintError(
            f"fingerprint list {path} does not exist; pass the embedded_fingerprints.txt of an embed run")
    out = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.rstrip("\n").rsplit(" ", 1)
        if len(parts) != 2 or not parts[1] or set(parts[1]) - {"0", "1"}:
            raise GanprintError(f"{path}:{n}: expected '<name> <0/1 bits>', got {line[:80]!r}")
        if length is not None and len(parts[1]) != length:
            raise GanprintError(
                f"{path}:{n}: {len(parts[1])} bits, but the model decodes {length}; wrong model or list?")
        out[parts[0]] = parts[1]
    return out


def _as_bits(fingerprint, k: int) -> torch.Tensor:
    """A fingerprint given as 0/1 or 0x-hex string, or as a [K] tensor/array of 0/1 -> float [K]."""
    if isinstance(fingerprint, (torch.Tensor, np.ndarray, list, tuple)):
        fingerprint = bits_to_str(np.asarray(fingerprint, dtype=np.float32))
    return parse_bits(str(fingerprint), k)


def _setup(model, resolution, celeba, device, need_encoder, batch_size, precision="fp32"):
    """Check the batch size, load the model, pick the device (initialising torch.distributed under torchrun), the
    resolution and the precision ("fp32" or "bf16", resolved for that device)."""
    if batch_size < 1:
        raise GanprintError(f"--batch-size must be >= 1, got {batch_size}")
    dev = resolve_device(device)
    try:
        prec = resolve_precision(precision, dev)
    except ValueError as e:
        raise GanprintError(str(e)) from None
    dist.init(dev)
    dev = dist.local_device(dev)
    kinds = ("stega",) if need_encoder else ("stega", "stega-decoder")
    if need_encoder:
        from ganprint.core.artifacts import read_metadata

        got = read_metadata(model)["ganprint.kind"]
        if got == "stega-decoder":
            raise GanprintError(f"{model} is a decoder-only export; embedding needs the full 'stega' model")
    module, config, _meta = load_export(model, kind=kinds, device=dev)
    r = int(config["resolution"])
    if resolution is not None and int(resolution) != r:
        raise GanprintError(f"--resolution {resolution} does not match the model's {r}; omit --resolution or pass {r}")
    if celeba and r != 128:
        raise GanprintError(f"--celeba needs a 128-px model, but {model} is {r}-px; drop --celeba")
    return module, config, r, dev, prec


def _net_dtype(precision: str) -> torch.dtype:
    return torch.bfloat16 if precision == "bf16" else torch.float32


def _prepare(net: torch.nn.Module, dev: torch.device, precision: str, prefer_cl: bool = False) -> torch.nn.Module:
    """`net` with its weights in the precision it runs in, in the fastest layout.

    bf16 weights rather than bf16 autocast: the outputs are the same bit for bit (autocast casts the same weights
    and inputs to bf16 at every call), and on one CPU core the 32-px encoder takes 0.87-0.97 instead of 0.95-1.39
    ms/image (batch 64; benchmarks/encoder_speed.py --threads 1, several runs)."""
    return net.to(dtype=_net_dtype(precision), memory_format=_memory_format(dev, prefer_cl))


def _item_names(ds) -> list[str]:
    """Names of a data set's items: paths relative to the folder, a packed set's names, or the index."""
    if hasattr(ds, "relpath"):
        return [ds.relpath(i) for i in range(len(ds))]
    names = list(getattr(ds, "names", None) or [])
    if len(names) == len(ds):
        return [str(x) for x in names]
    return [f"{i:06d}.png" for i in range(len(ds))]


def _num_workers(num_workers):
    # Default 0: with a DataLoader worker *and* several torch threads the main process's peak memory grew with
    # the data set (1k -> 10k 32-px images: 408 -> 627 MB with 1 worker, 413 MB flat with none; measured, see
    # benchmarks/RESULTS-embed-detect.md), for ~8 % wall time. Decoding large photos benefits from --num-workers.
    return 0 if num_workers is None else int(num_workers)


def _io_threads() -> int:
    """Reader / PNG-writer threads per process: 2, or GANPRINT_IO_THREADS (0 = read and write in the calling thread,
    which `--jobs` processes use: there the other processes keep the cores busy, and threads would only contend)."""
    return max(0, int(os.environ.get("GANPRINT_IO_THREADS", "2")))


def _loader(ds, indices, batch_size, num_workers, read_threads: int | None = None, prefetch: int = 2):
    """Batches (`data.collate` dicts) of `ds[indices]`, in order.

    With worker processes: a DataLoader. Without (the default): `read_threads` threads decode the next
    `prefetch` batches while the caller runs the network; Pillow and the resize release the GIL, so this
    overlaps real work, and at most `prefetch` decoded batches exist at any time (memory stays flat).
    With 0 read threads the batches are decoded when taken.
    """
    nw = _num_workers(num_workers)
    if nw:
        yield from DataLoader(Subset(ds, indices), batch_size=batch_size, shuffle=False, num_workers=nw,
                              collate_fn=collate, pin_memory=False, persistent_workers=False)
        return
    read_threads = _io_threads() if read_threads is None else read_threads
    if read_threads == 0:
        for i in range(0, len(indices), batch_size):
            yield collate([ds[j] for j in indices[i:i + batch_size]])
        return
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    chunks = iter([indices[i:i + batch_size] for i in range(0, len(indices), batch_size)])
    with ThreadPoolExecutor(read_threads, thread_name_prefix="ganprint-read") as pool:
        def submit(chunk):
            # Each thread decodes a share of the batch; collate happens when the batch is taken.
            parts = [chunk[j::read_threads] for j in range(read_threads)]
            return chunk, [pool.submit(lambda part: {i: ds[i] for i in part}, part) for part in parts if part]

        pending = deque(submit(c) for _, c in zip(range(prefetch), chunks))
        while pending:
            chunk, futures = pending.popleft()
            items: dict = {}
            for f in futures:
                items.update(f.result())
            nxt = next(chunks, None)
            if nxt is not None:
                pending.append(submit(nxt))
            yield collate([items[i] for i in chunk])


def _progress(total, desc):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="img", dynamic_ncols=True,
                disable=dist.get_rank() != 0 or not sys.stderr.isatty())


def _memory_format(dev: torch.device, prefer_cl: bool = False) -> torch.memory_format:
    """channels_last on GPU, with several CPU threads, and for the networks that are faster in it on one thread
    (`prefer_cl`: the decoder, the fused InferenceEncoder); else the plain layout. One thread, 32 px, bf16: a 10k
    embed with the fused InferenceEncoder took 13.9 / 17.6 / 20.0 s in channels_last vs 17.3 / 18.4 / 18.9 s plain
    (benchmarks/embed_variants_ab.py, interleaved rounds: close, kept); the decoder, batch 64, 80-84 vs 87-90
    us/image; the plain StegaEncoder (fp32 path) is faster plain (benchmarks/encoder_speed.py)."""
    if dev.type != "cpu" or prefer_cl or torch.get_num_threads() > 1:
        return torch.channels_last
    return torch.contiguous_format


def _to_float01(img_u8: torch.Tensor, dev: torch.device, dtype: torch.dtype = torch.float32,
                prefer_cl: bool = False) -> torch.Tensor:
    """uint8 [N, 3, R, R] -> [N, 3, R, R] in [0, 1] on `dev` as `dtype` (divided in fp32, then rounded, as autocast
    would), in the layout the networks run fastest on."""
    return img_u8.to(dev).float().div_(255.0).to(dtype).contiguous(memory_format=_memory_format(dev, prefer_cl))


class _BatchWriter:
    """Writes each batch's PNGs on a small thread pool (zlib releases the GIL, so this overlaps the network),
    then appends the batch's progress rows; at most `depth` batches are in flight, so memory stays bounded."""

    def __init__(self, progress: Path, threads: int | None = None, depth: int = 2):
        from collections import deque
        from concurrent.futures import ThreadPoolExecutor

        threads = _io_threads() if threads is None else threads
        self.progress, self.depth = progress, depth
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="ganprint-png") if threads else None
        self.pending: deque = deque()

    def submit(self, items: list[tuple[Path, np.ndarray]], rows: list[dict]) -> None:
        if self.pool is None:  # no threads: write now
            for p, a in items:
                write_png(p, a, PNG_LEVEL)
            append_jsonl(self.progress, rows)
            return
        self.pending.append(([self.pool.submit(write_png, p, a, PNG_LEVEL) for p, a in items], rows))
        while len(self.pending) > self.depth:
            self._finish_one()

    def _finish_one(self) -> None:
        futures, rows = self.pending.popleft()
        for f in futures:
            f.result()
        append_jsonl(self.progress, rows)  # after the PNGs: a row always means a finished file

    def close(self) -> None:
        try:
            while self.pending:
                self._finish_one()
        finally:
            if self.pool is not None:
                self.pool.shutdown(wait=True)


# --- embed ------------------------------------------------------------------------------------------


def _jobs(jobs, device, data, model, min_per_job: int) -> int:
    """Resolve `jobs`. "auto": one process per core for models of at most 64 px when each process gets enough
    images, else 1. At 128 px the network dominates and two threads use the cores as well as two processes
    (embed 52.8 vs 52.4 images/s, 1k images) at half the memory (benchmarks/RESULTS-embed-detect.md)."""
    n = None
    if jobs in (None, "auto") and "WORLD_SIZE" not in os.environ:
        from ganprint.core.artifacts import read_metadata

        res = json.loads(read_metadata(model).get("ganprint.config", "{}")).get("resolution")
        if res is not None and int(res) > 64:
            return 1
        n = len(open_image_dataset(data, res))  # folder or packed set, as the run itself will open it
    return resolve_jobs(jobs, str(device), n, min_per_job)


def _one_listing(fn):
    """Run `fn` with each data folder walked once (`data.one_listing`), also by its `--jobs` processes."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with one_listing():
            return fn(*args, **kwargs)
    return wrapper


@_one_listing
def embed(model, data, outdir, resolution=None, celeba=False, identical=False, fingerprint=None, seed=42,
          batch_size=64, device="auto", skip_bad=False, num_workers=None, check=False, precision="auto",
          jobs=1) -> dict:
    """Fingerprint every image under `data` into `outdir`; returns the summary (also in manifest.json).

    Writes `fingerprinted_images/<name>.png`, `embedded_fingerprints.txt` (`<name> <bits>`, sorted) and
    `manifest.json`. `identical`: one fingerprint for all images (`fingerprint` as 0/1 or 0x-hex, else
    the original's seeded draw); otherwise image i gets `per_image_bits(seed, i)`. Re-running resumes;
    a non-empty `outdir` of another configuration is refused. With `check`, the written PNGs are decoded
    and the mean bit accuracy is reported. `precision`: "fp32" (the original's arithmetic), "bf16" (about twice
    as fast where the hardware has it; pixels differ by at most two 8-bit levels) or "auto" (bf16 where native).
    `jobs`: CPU processes that split the images (`ganprint.parallel`; "auto": one per core for large inputs).
    """
    if fingerprint is not None and not identical:
        raise GanprintError("--fingerprint sets the one fingerprint of --identical; add --identical")
    n_jobs = _jobs(jobs, device, data, model, MIN_IMAGES_PER_JOB)
    if n_jobs > 1:
        from ganprint.artificial.jobs import run_jobs

        return run_jobs("embed", dict(model=model, data=data, outdir=outdir, resolution=resolution, celeba=celeba,
                                      identical=identical, fingerprint=fingerprint, seed=seed, batch_size=batch_size,
                                      device=device, skip_bad=skip_bad, num_workers=num_workers, check=check,
                                      precision=precision), n_jobs)
    module, config, res, dev, prec = _setup(model, resolution, celeba, device, need_encoder=True,
                                            batch_size=batch_size, precision=precision)
    k = int(config["fingerprint_length"])
    rank, world = dist.get_rank(), dist.get_world_size()
    out = Path(outdir)
    if Path(data).is_dir() and out.resolve().is_relative_to(Path(data).resolve()):
        raise GanprintError(f"--outdir {out} is inside --data {data}; a re-run would read its own outputs. "
                            "Choose an --outdir outside the data folder")
    ds = open_image_dataset(data, res, celeba=celeba, skip_bad=True)  # bad files come back as items; handled below
    n = len(ds)
    relpaths = _item_names(ds)
    names = output_names(relpaths)

    fixed = None
    if identical:
        fixed = _as_bits(fingerprint, k) if fingerprint is not None else original_identical_bits(seed, k)
    cfg = {"command": "embed", "model_sha256": sha256_file(model), "model_config": config,
           "data": str(Path(data).resolve()), "resolution": res, "celeba": bool(celeba), "seed": int(seed),
           "identical": bool(identical), "fingerprint": bits_to_str(fixed) if fixed is not None else None}

    # Every rank checks before anyone writes, so all ranks agree (and none waits on a failed peer).
    problem = _outdir_problem(out, cfg)
    dist.barrier()
    if problem:
        raise GanprintError(problem)
    manifest = {"config": cfg, "model": str(model), "status": "running", "precision": prec,
                "ganprint_version": __version__}
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        old = _read_json(out / MANIFEST)
        atomic_write_json(out / MANIFEST, {**(old or {}), **manifest})
    dist.barrier()

    fixed_str = bits_to_str(fixed) if fixed is not None else None

    def expected_bits(indices: list[int]) -> list[str]:
        """The bit strings images `indices` must carry, drawn together (one draw per image cost 50-100 us in
        profiles: benchmarks/RESULTS-embed-detect.md)."""
        return [fixed_str] * len(indices) if fixed_str else bits_to_strs(counter_bits(seed, indices, k))

    def recorded(pairs: list[tuple[int, tuple[str | None, str] | None]]) -> list[bool]:
        """For (image index, its progress record) pairs: whether the record holds the image with the bits it must
        carry. Bits are drawn only for images with a record of their source, in chunks (memory stays flat)."""
        ok = [False] * len(pairs)
        check = [(pos, i, rec[1]) for pos, (i, rec) in enumerate(pairs) if rec and rec[0] in (None, relpaths[i])]
        for s in range(0, len(check), 4096):
            chunk = check[s:s + 4096]
            for (pos, _, got), want in zip(chunk, expected_bits([i for _, i, _ in chunk])):
                ok[pos] = got == want
        return ok

    # Resume: an image is done when its PNG exists and a progress row (or the txt) records its bits.
    done = _finished(out, k)
    fp_dir = os.fspath(out / FP_DIR)  # joined as strings per image: pathlib cost ~1 s per 10k images (RESULTS)
    mine = list(range(rank, n, world))
    todo, resumed = [], 0
    for i, ok in zip(mine, recorded([(i, done.get(names[i])) for i in mine])):
        if ok and os.path.isfile(os.path.join(fp_dir, names[i])):
            resumed += 1
        else:
            todo.append(i)
    if resumed:
        log.info("resuming: %d of %d images already fingerprinted", resumed, len(mine))

    progress = out / PROGRESS_DIR / f"embed-rank{rank}.jsonl"
    progress.parent.mkdir(parents=True, exist_ok=True)
    dtype = _net_dtype(prec)
    # bf16 changes the rounding anyway, so it also takes the faster form of the same function; fp32 keeps the
    # original's arithmetic exactly.
    enc = _prepare(InferenceEncoder(module.enc) if prec == "bf16" else module.enc, dev, prec, prefer_cl=prec == "bf16")
    dec = _prepare(module.dec, dev, prec, prefer_cl=True) if check else None
    skipped: list[dict] = []
    error = None
    n_new, acc_sum = 0, 0.0
    pbar = _progress(len(todo), "embed")
    writer = _BatchWriter(progress)
    try:
        with torch.inference_mode():
            for batch in _loader(ds, todo, batch_size, num_workers) if todo else []:
                for i, err in batch["skipped"]:
                    skipped.append({"file": relpaths[i], "error": err})
                idx = batch["index"].tolist()
                if idx:
                    bits = (fixed.expand(len(idx), k) if fixed is not None
                            else counter_bits(seed, idx, k)).to(dev)  # [N, K]
                    x = _to_float01(batch["img"], dev, dtype, prefer_cl=prec == "bf16")  # [N, 3, R, R] in [0, 1]
                    u8 = from_tensor01(enc(bits.to(dtype), x))  # [N, R, R, 3] uint8: what the PNGs hold
                    if dec is not None:
                        back = _to_float01(torch.from_numpy(u8).permute(0, 3, 1, 2), dev, dtype, prefer_cl=True)
                        logits = dec(back).float()
                        acc_sum += float(count_matches(decode_bits(logits), bits).sum()) / k
                    bit_strs = [fixed_str] * len(idx) if fixed_str else bits_to_strs(bits.cpu())
                    writer.submit([(os.path.join(fp_dir, names[i]), u8[j]) for j, i in enumerate(idx)],
                                  [{"name": names[i], "source": relpaths[i], "bits": bit_strs[j]}
                                   for j, i in enumerate(idx)])
                    n_new += len(idx)
                pbar.update(len(idx) + len(batch["skipped"]))
                if batch["skipped"] and not skip_bad:
                    error = skipped[-1]["error"]
                    break
    finally:
        writer.close()
    pbar.close()

    # Merge (rank 0) from the progress rows of all ranks and all runs.
    parts = dist.all_gather_object({"skipped": skipped, "new": n_new, "resumed": resumed, "error": error,
                                    "acc_sum": acc_sum})
    dist.barrier()
    skipped = sorted((s for p in parts for s in p["skipped"]), key=lambda s: s["file"])
    errors = [p["error"] for p in parts if p["error"]]
    done = _finished(out, k)
    wanted = {names[i]: i for i in range(n)}
    have = [(name, rec) for name, rec in done.items() if name in wanted]
    ok = recorded([(wanted[name], rec) for name, rec in have])
    lines = sorted(f"{name} {rec[1]}" for (name, rec), good in zip(have, ok) if good)
    n_new = sum(p["new"] for p in parts)
    summary = {
        "outdir": str(out), "images": n, "fingerprinted": len(lines), "new": n_new,
        "resumed": sum(p["resumed"] for p in parts), "skipped": skipped,
        "fingerprint_length": k, "resolution": res, "identical": bool(identical),
        "fingerprint": cfg["fingerprint"], "seed": int(seed), "precision": prec,
        "check_bit_accuracy": (sum(p["acc_sum"] for p in parts) / n_new) if check and n_new else None,
        "status": "failed" if errors else "complete",
    }
    if rank == 0:
        atomic_write_text(out / EMBEDDED_TXT, "".join(line + "\n" for line in lines))
        atomic_write_json(out / MANIFEST, {**manifest, "status": summary["status"], "counts": {
            "images": n, "fingerprinted": len(lines), "new_this_run": n_new, "resumed": summary["resumed"],
            "skipped": len(skipped)}, "skipped": skipped, "check_bit_accuracy": summary["check_bit_accuracy"]})
        log.info("embedded %d of %d images (%d new, %d resumed, %d skipped) into %s", len(lines), n,
                 n_new, summary["resumed"], len(skipped), out / FP_DIR)
        if fixed is not None:
            log.info("fingerprint (%d bits, identical for all images): %s", k, cfg["fingerprint"])
        if summary["check_bit_accuracy"] is not None:
            log.info("bit accuracy decoded from the written PNGs: %.4f", summary["check_bit_accuracy"])
        for s in skipped:
            log.warning("skipped %s: %s", s["file"], s["error"])
    dist.barrier()
    if errors:
        raise BadImageError(f"{errors[0]}. Finished images are kept; fix or remove the file, or re-run with --skip-bad")
    return summary


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _outdir_problem(out: Path, cfg: dict) -> str | None:
    """Why `out` cannot take this embed run (None when empty, missing, or made by the same configuration)."""
    if not out.exists():
        return None
    if not out.is_dir():
        return f"--outdir {out} is a file; pass a folder"
    if not any(out.iterdir()):
        return None
    old = _read_json(out / MANIFEST)
    if old is None or "config" not in old:
        return f"--outdir {out} is not empty and holds no ganprint embed manifest; use a new --outdir"
    diff = sorted(key for key in set(cfg) | set(old["config"]) if cfg.get(key) != old["config"].get(key))
    if diff:
        return (f"--outdir {out} holds an embed run with a different configuration ({', '.join(diff)} differ); "
                "use a new --outdir, or repeat the original flags to resume it")
    return None


def _finished(out: Path, k: int) -> dict[str, tuple[str | None, str]]:
    """{name: (source relpath or None, bits)} of images recorded as written, by the txt and all progress files."""
    done: dict[str, tuple[str | None, str]] = {}
    txt = out / EMBEDDED_TXT
    if txt.is_file():
        try:
            done.update({name: (None, b) for name, b in read_fingerprint_txt(txt, k).items()})
        except GanprintError as e:
            log.warning("ignoring unreadable %s while resuming: %s", txt, e)
    for p in sorted((out / PROGRESS_DIR).glob("embed-rank*.jsonl")):
        for row in read_jsonl(p):
            done[row["name"]] = (row.get("source"), row["bits"])
    return done


# --- detect -----------------------------------------------------------------------------------------


@_one_listing
def detect(model, data, outdir, resolution=None, celeba=False, fingerprint=None, embedded=None, fpr=1e-6,
           batch_size=64, device="auto", skip_bad=False, num_workers=None, precision="auto", jobs=1,
           scale_search=None) -> dict:
    """Decode the fingerprint of every image under `data`; returns the summary (also in summary.json).

    Writes `detected_fingerprints.txt` (`<name> <bits>`, sorted), `detections.jsonl` and `summary.json` in
    `outdir`. With a reference (`fingerprint` for all images, or `embedded`: an embedded_fingerprints.txt
    matched by name) each row gets bit_accuracy, matches, p_value, log10_p and detected
    (matches >= match_threshold(K, fpr)). `precision` and `jobs` as in `embed`. `scale_search` ("auto" or
    fractions; `ganprint.resync`) also decodes each image after undoing candidate crops and keeps the most
    confident decoding (rows then carry the chosen `scale`); p-values stay exact.
    """
    from ganprint.evaluation.scale_search import ScaleSearch, parse_scales

    scales = parse_scales(scale_search)
    if fingerprint is not None and embedded is not None:
        raise GanprintError("pass either --fingerprint or --embedded, not both")
    if not 0 < fpr < 1:
        raise GanprintError(f"--fpr must be in (0, 1), got {fpr}")
    n_jobs = _jobs(jobs, device, data, model, MIN_IMAGES_PER_DETECT_JOB)
    if n_jobs > 1:
        from ganprint.artificial.jobs import run_jobs

        return run_jobs("detect", dict(model=model, data=data, outdir=outdir, resolution=resolution, celeba=celeba,
                                       fingerprint=fingerprint, embedded=embedded, fpr=fpr, batch_size=batch_size,
                                       device=device, skip_bad=skip_bad, num_workers=num_workers,
                                       precision=precision, scale_search=scale_search), n_jobs)
    module, config, res, dev, prec = _setup(model, resolution, celeba, device, need_encoder=False,
                                            batch_size=batch_size, precision=precision)
    k = int(config["fingerprint_length"])
    rank, world = dist.get_rank(), dist.get_world_size()
    out = Path(outdir)
    ref_all = _as_bits(fingerprint, k) if fingerprint is not None else None
    ref_map = read_fingerprint_txt(embedded, k) if embedded is not None else None
    threshold = match_threshold(k, fpr)
    ds = open_image_dataset(data, res, celeba=celeba, skip_bad=True)
    n = len(ds)
    relpaths = _item_names(ds)

    ref_all_str = bits_to_str(ref_all) if ref_all is not None else None

    def reference(i: int) -> str | None:
        if ref_all_str is not None:
            return ref_all_str
        if ref_map is None:
            return None
        name = relpaths[i]
        return ref_map.get(name) or ref_map.get(_png_name(name))

    # p-values by table lookup: one scipy call per possible match count instead of two per batch
    p_table, logp_table = p_value(np.arange(k + 1), k), log10_p_value(np.arange(k + 1), k)
    dtype = _net_dtype(prec)
    dec = _prepare(module.dec, dev, prec, prefer_cl=True)
    # The candidates are unzoomed in fp32 and rounded to the network's dtype after, as under autocast; unzoom keeps
    # the input's layout (full_like), so they need no other conversion.
    search = ScaleSearch(lambda t: dec(t.to(dtype)).float(), scales) if scales is not None else None
    # Each rank serialises its own rows (name, JSONL line, txt line, bit accuracy or None, detected or None), so
    # rank 0 only sorts and joins them.
    rows: list[tuple] = []
    skipped, error = [], None
    mine = list(range(rank, n, world))
    pbar = _progress(len(mine), "detect")
    with torch.inference_mode():
        for batch in _loader(ds, mine, batch_size, num_workers):
            for i, err in batch["skipped"]:
                skipped.append({"file": relpaths[i], "error": err})
            idx = batch["index"].tolist()
            if idx:
                if search is not None:
                    logits = search(_to_float01(batch["img"], dev, prefer_cl=True))  # from [N, 3, R, R] fp32
                else:
                    logits = dec(_to_float01(batch["img"], dev, dtype, prefer_cl=True)).float()  # [N, K]
                bits = decode_bits(logits).cpu()  # [N, K]
                bit_strs = bits_to_strs(bits)
                chosen = search.last_scales.tolist() if search is not None else None
                refs = [reference(i) for i in idx]
                have = [j for j, r in enumerate(refs) if r is not None]
                stats = {}
                if have:
                    m = count_matches(bits[have], strs_to_bits([refs[j] for j in have], k)).numpy()  # [M]
                    stats = dict(zip(have, zip(m.tolist(), p_table[m].tolist(), logp_table[m].tolist())))
                for j, i in enumerate(idx):
                    row = {"name": relpaths[i], "bits": bit_strs[j]}
                    if chosen is not None:
                        row["scale"] = chosen[j]
                    acc = det = None
                    if j in stats:
                        matches, p, lp = stats[j]
                        acc, det = matches / k, bool(matches >= threshold)
                        row.update({"bit_accuracy": acc, "matches": int(matches), "p_value": float(p),
                                    "log10_p": float(lp), "detected": det})
                    rows.append((relpaths[i], json.dumps(row) + "\n", f"{relpaths[i]} {bit_strs[j]}\n", acc, det))
            pbar.update(len(idx) + len(batch["skipped"]))
            if batch["skipped"] and not skip_bad:
                error = skipped[-1]["error"]
                break
    pbar.close()

    parts = dist.all_gather_object({"rows": rows, "skipped": skipped, "error": error})
    errors = [p["error"] for p in parts if p["error"]]
    if errors:
        raise BadImageError(f"{errors[0]}. Fix or remove the file, or re-run with --skip-bad")
    rows = sorted((r for p in parts for r in p["rows"]), key=lambda r: r[0])
    skipped = sorted((s for p in parts for s in p["skipped"]), key=lambda s: s["file"])
    scored = [r for r in rows if r[3] is not None]
    summary = {
        "outdir": str(out), "model": str(model), "data": str(data), "images": len(rows), "skipped": skipped,
        "fingerprint_length": k, "resolution": res, "celeba": bool(celeba), "fpr": fpr, "match_threshold": threshold,
        "reference": ("fingerprint" if ref_all is not None
                      else f"embedded:{embedded}" if ref_map is not None else None),
        "with_reference": len(scored),
        "mean_bit_accuracy": float(np.mean([r[3] for r in scored])) if scored else None,
        "detected": sum(r[4] for r in scored),
        "detected_rate": float(np.mean([r[4] for r in scored])) if scored else None,
        "precision": prec, "scale_search": list(scales) if scales is not None else None,
        "ganprint_version": __version__,
    }
    if ref_map is not None and len(scored) < len(rows):
        log.warning("%d of %d images have no entry in %s", len(rows) - len(scored), len(rows), embedded)
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / DETECTED_TXT, "".join(r[2] for r in rows))
        atomic_write_text(out / "detections.jsonl", "".join(r[1] for r in rows))
        atomic_write_json(out / "summary.json", summary)
        if scored:
            log.info("detect: %d images, mean bit accuracy %.4f, detected %d (%.1f %%) at FPR %g (>= %d of %d bits)",
                     len(rows), summary["mean_bit_accuracy"], summary["detected"], 100 * summary["detected_rate"],
                     fpr, threshold, k)
        else:
            log.info("detect: decoded %d images (no reference given, so no detection decision)", len(rows))
        for s in skipped:
            log.warning("skipped %s: %s", s["file"], s["error"])
    dist.barrier()
    return summary
