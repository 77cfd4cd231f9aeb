"""Attribution benchmarks: search speed at scale, and attribution accuracy on planted fingerprints.

    python benchmarks/experiments/scalable/bench_attribution.py speed --issued 1000000 --queries 10000
    python benchmarks/experiments/scalable/bench_attribution.py planted --models 100 --per-model 50
    python benchmarks/experiments/scalable/bench_attribution.py trained --run runs/sc32 --models 100 --per-model 50

`speed`: exact nearest-neighbour search of Q noisy 128-bit queries among N random issued fingerprints, with
faiss IndexBinaryFlat (and the numpy popcount search on a subset of queries, extrapolated per query).
`planted`: N issued fingerprints in a real registry, `per-model` decoded fingerprints each with realistic
decoding noise (per-image bit error rate ~ Beta(2, 38): mean 5%, i.e. bit accuracy 0.95, tail to ~15%),
plus clean images (uniform random bits) and images of non-issued models; attribution at FPR 1e-6.
`trained`: the same with a trained run: every model is issued (folded) from its scalable-G, its images are
generated and decoded with the run's decoder.
Each prints one JSON object (and writes it with --out).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ganprint.core.fingerprints import pack_bits
from ganprint.core.hamming import HammingIndex
from ganprint.nets.scalable import fingerprint_length_of
from ganprint.scalable.attribute import UNKNOWN, attribute_bits
from ganprint.registry.store import Registry


def _noisy(bits: np.ndarray, rng: np.random.Generator, a: float = 2.0, b: float = 38.0) -> tuple[np.ndarray, np.ndarray]:
    """Flip each row's bits at a per-row error rate ~ Beta(a, b); returns (noisy bits, error rates)."""
    rate = rng.beta(a, b, size=(bits.shape[0], 1))
    flips = rng.random(bits.shape) < rate
    return bits ^ flips, rate[:, 0]


def bench_speed(n: int, q: int, k: int, seed: int, numpy_queries: int) -> dict:
    rng = np.random.default_rng(seed)
    db_bits = rng.integers(0, 2, (n, k), dtype=np.uint8)
    db = pack_bits(db_bits)
    owner = rng.integers(0, n, q)
    queries, _ = _noisy(db_bits[owner], rng)
    ids = np.arange(1, n + 1)
    out = {"issued": n, "queries": q, "bits": k, "threads": torch.get_num_threads(),
           "omp_num_threads": os.environ.get("OMP_NUM_THREADS")}
    t = time.perf_counter()
    index = HammingIndex(db, use_faiss=True)
    out["faiss_build_s"] = time.perf_counter() - t
    t = time.perf_counter()
    rows = attribute_bits(torch.from_numpy(queries.astype(np.float32)), ids, db, k, 1e-6, index)
    out["faiss_attribute_s"] = time.perf_counter() - t  # search + p-values + decisions for all queries
    out["backend"] = index.backend
    out["correct"] = float(np.mean([r["attributed"] == int(ids[o]) for r, o in zip(rows, owner)]))
    if numpy_queries:
        npx = HammingIndex(db, use_faiss=False)
        t = time.perf_counter()
        _, dist = npx.search(pack_bits(queries[:numpy_queries]))
        dt = time.perf_counter() - t
        out["numpy_queries"] = numpy_queries
        out["numpy_search_s"] = dt
        out["numpy_extrapolated_s"] = dt / numpy_queries * q
        # Both searches are exact: the nearest distances must agree (indices may differ only on ties).
        out["numpy_distances_equal_faiss"] = bool((dist == [r["hamming"] for r in rows[:numpy_queries]]).all())
    return out


def _evaluate(rows_issued, owners, rows_clean, rows_other, fpr) -> dict:
    attributed = [r["attributed"] for r in rows_issued]
    return {
        "fpr": fpr,
        "issued_images": len(rows_issued),
        "attribution_accuracy": float(np.mean([a == o for a, o in zip(attributed, owners)])),
        "wrongly_attributed": int(sum(a not in (o, UNKNOWN) for a, o in zip(attributed, owners))),
        "issued_images_unknown": int(sum(a == UNKNOWN for a in attributed)),
        "clean_images": len(rows_clean),
        "clean_attributed": int(sum(r["attributed"] != UNKNOWN for r in rows_clean)),
        "other_model_images": len(rows_other),
        "other_model_attributed": int(sum(r["attributed"] != UNKNOWN for r in rows_other)),
        "mean_bit_accuracy_issued": float(np.mean([r["bit_accuracy"] for r in rows_issued])),
        "min_bit_accuracy_issued": float(np.min([r["bit_accuracy"] for r in rows_issued])),
        "max_bit_accuracy_clean": float(np.max([r["bit_accuracy"] for r in rows_clean])) if rows_clean else None,
    }


def bench_planted(models: int, per_model: int, k: int, seed: int, fpr: float, clean: int) -> dict:
    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory() as tmp:
        reg = Registry(Path(tmp) / "registry.sqlite")
        for _ in range(models):
            reg.issue(fingerprint_length=k)
        ids, packed = reg.packed()
        fps = np.stack([r.bits.numpy().astype(np.uint8) for r in reg.list()])  # [M, K]
        min_dist = min(r.min_distance for r in reg.list()[1:])
    owner = np.repeat(np.arange(models), per_model)
    decoded, rates = _noisy(fps[owner], rng)
    rows = attribute_bits(torch.from_numpy(decoded.astype(np.float32)), ids, packed, k, fpr)
    clean_bits = rng.integers(0, 2, (clean, k), dtype=np.uint8)
    rows_clean = attribute_bits(torch.from_numpy(clean_bits.astype(np.float32)), ids, packed, k, fpr)
    other = rng.integers(0, 2, (models, k), dtype=np.uint8)  # fingerprints of models that were never issued
    other_dec, _ = _noisy(other[np.repeat(np.arange(models), per_model)], rng)
    rows_other = attribute_bits(torch.from_numpy(other_dec.astype(np.float32)), ids, packed, k, fpr)
    out = {"experiment": "planted", "models": models, "per_model": per_model, "bits": k,
           "noise": "per-image bit error rate ~ Beta(2, 38)", "mean_error_rate": float(rates.mean()),
           "max_error_rate": float(rates.max()), "registry_min_distance": int(min_dist)}
    out.update(_evaluate(rows, [int(ids[o]) for o in owner], rows_clean, rows_other, fpr))
    return out


@torch.no_grad()
def bench_trained(run: Path, models: int, per_model: int, seed: int, fpr: float, clean: int, data: str | None) -> dict:
    from ganprint.core.artifacts import load_export
    from ganprint.nets.scalable import fold_fingerprint
    from ganprint.nets.stylegan2 import to_uint8
    from ganprint.scalable.attribute import decode_images

    G, cfg, _ = load_export(run / "scalable-G.safetensors", kind="scalable-G")
    E, _, _ = load_export(run / "scalable-decoder.safetensors", kind="scalable-decoder")
    k = fingerprint_length_of(cfg)
    g = torch.Generator().manual_seed(seed)
    with tempfile.TemporaryDirectory() as tmp:
        reg = Registry(Path(tmp) / "registry.sqlite")
        for _ in range(models):
            reg.issue(fingerprint_length=k)
        ids, packed = reg.packed()
        recs = reg.list()
    rows, owners = [], []
    t = time.perf_counter()
    for rec in recs:
        Gi = fold_fingerprint(G, rec.bits)  # the user's standalone model
        z = torch.randn(per_model, G.z_dim, generator=g)
        imgs = to_uint8(Gi(z))  # [n, R, R, 3] uint8, as saved to disk
        rows += attribute_bits(decode_images(E, imgs), ids, packed, k, fpr)
        owners += [rec.fp_id] * per_model
    gen_s = time.perf_counter() - t
    # "Other model": the shared generator with fingerprints that were never issued.
    other_c = torch.randint(0, 2, (clean, k), generator=g).float()
    other = to_uint8(G(torch.randn(clean, G.z_dim, generator=g), other_c))
    rows_other = attribute_bits(decode_images(E, other), ids, packed, k, fpr)
    # Clean images: real photos from a data set (or, without one, uniform noise images).
    if data:
        from ganprint.data.folders import open_image_dataset

        ds = open_image_dataset(data, int(cfg["resolution"]))
        sel = torch.randint(0, len(ds), (clean,), generator=g)
        real = np.stack([ds[int(i)]["img"].permute(1, 2, 0).numpy() for i in sel])
    else:
        real = torch.randint(0, 256, (clean, cfg["resolution"], cfg["resolution"], 3), generator=g,
                             dtype=torch.uint8).numpy()
    rows_clean = attribute_bits(decode_images(E, real), ids, packed, k, fpr)
    out = {"experiment": "trained", "run": str(run), "models": models, "per_model": per_model, "bits": k,
           "clean_source": data or "uniform noise", "generate_and_decode_s": gen_s}
    out.update(_evaluate(rows, owners, rows_clean, rows_other, fpr))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("speed")
    s.add_argument("--issued", type=int, default=1_000_000)
    s.add_argument("--queries", type=int, default=10_000)
    s.add_argument("--numpy-queries", type=int, default=100)
    for name in ("planted", "trained"):
        q = sub.add_parser(name)
        q.add_argument("--models", type=int, default=100)
        q.add_argument("--per-model", type=int, default=50)
        q.add_argument("--clean", type=int, default=1000)
        q.add_argument("--fpr", type=float, default=1e-6)
        if name == "trained":
            q.add_argument("--run", type=Path, required=True)
            q.add_argument("--data", default=None, help="Real images for the clean set.")
    for q in sub.choices.values():
        q.add_argument("--bits", type=int, default=128)
        q.add_argument("--seed", type=int, default=0)
        q.add_argument("--out", type=Path, default=None)
    a = p.parse_args(argv)
    if a.cmd == "speed":
        res = bench_speed(a.issued, a.queries, a.bits, a.seed, a.numpy_queries)
    elif a.cmd == "planted":
        res = bench_planted(a.models, a.per_model, a.bits, a.seed, a.fpr, a.clean)
    else:
        res = bench_trained(a.run, a.models, a.per_model, a.seed, a.fpr, a.clean, a.data)
    text = json.dumps(res, indent=2)
    print(text)
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
