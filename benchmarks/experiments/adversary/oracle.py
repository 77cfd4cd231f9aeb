"""The oracle attack: a black-box attacker who only sees the answers of a real `ganprint serve` on 127.0.0.1.

Removal: from a fingerprinted image until /v1/detect says not detected; forgery: from a clean photo until it says
detected. Two attackers, both batched over the images (one request carries one candidate per image; a query is
one image sent):
- `score` (needs `answer` full): a Square-attack random search on the returned `matches`, an L-inf budget of
  +-eps levels (PSNR >= 20 log10(255 / eps)); a proposal is kept when the matches do not get worse.
- `decision` (works with `answer` decision): a boundary attack (Brendel et al. 2018, written here from the paper's
  description): start from an image on the wanted side (a clean photo for removal, another fingerprinted image
  for forgery), binary-search the line to the target image, then random steps along the boundary that move
  closer to it, kept only when the answer stays on the wanted side.
- `hsja` (decision only too): from the same start, HopSkipJump's steps: the decision's gradient estimated from
  the answers to random probes around the boundary point, a step along it, bisection back to the boundary.
Usage: see oracle.sh. Writes oracle.json and oracle.md under --outdir.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "benchmarks" / "perf"))
from service_kit import Server  # noqa: E402

from ganprint.artificial.register import register_dataset  # noqa: E402
from ganprint.core.fingerprints import parse_bits  # noqa: E402


MAX_FILES = 64  # the servers' --max-files


class Oracle:
    """One verify route of a server as the attacker sees it: per image (on the wanted model's side, matches or None);
    counts queries. /v1/detect: detected, and its matches; /v1/attribute: attributed to the issued model
    `target`, and the matches of the decoded bits with its key `key` (0/1, as the attacker reads it off the decoded
    bits of one of its images)."""

    def __init__(self, client, limit: int, route: str = "detect", target: int | None = None,
                 key: np.ndarray | None = None):
        self.client, self.limit, self.queries, self.seconds = client, limit, 0, 0.0
        self.route, self.target, self.key = route, target, key

    def __call__(self, imgs: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        if len(imgs) > MAX_FILES:  # one request carries at most the server's --max-files images
            parts = [self(imgs[i:i + MAX_FILES]) for i in range(0, len(imgs), MAX_FILES)]
            scores = [m for _, m in parts]
            return (np.concatenate([d for d, _ in parts]),
                    None if any(m is None for m in scores) else np.concatenate(scores))
        files = []
        for i, im in enumerate(imgs):
            buf = io.BytesIO()
            Image.fromarray(im).save(buf, format="PNG")
            files.append(("files", (f"{i}.png", buf.getvalue(), "image/png")))
        t = time.monotonic()
        r = self.client.post(f"/v1/{self.route}", files=files)
        while r.status_code == 429:  # the server's rate limit: wait as told, then ask again
            time.sleep(float(r.headers["Retry-After"]))
            r = self.client.post(f"/v1/{self.route}", files=files)
        self.seconds += time.monotonic() - t
        r.raise_for_status()
        self.queries += len(imgs)
        if self.route == "attribute":
            rows = r.json()["results"]
            det = np.array([row["attributed"] == self.target for row in rows])
            if not all("decoded" in row for row in rows):
                return det, None
            return det, np.array([int((parse_bits(row["decoded"]).numpy() == self.key).sum())
                                  for row in rows])
        rows = [res["datasets"][0] for res in r.json()["results"]]
        det = np.array([row["detected"] for row in rows])
        has = all("matches" in row for row in rows)
        return det, (np.array([row["matches"] for row in rows]) if has else None)


def psnr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per image, in dB (uint8 [N, H, W, C])."""
    mse = ((a.astype(np.float64) - b) ** 2).reshape(len(a), -1).mean(1)
    return 10 * np.log10(255.0 ** 2 / np.maximum(mse, 1e-10))


def square_attack(oracle: Oracle, x0: np.ndarray, want: bool, eps: int, budget: int, rng) -> dict:
    """Random search on the matches within +-eps of x0; `want`: the detected answer the attacker is after.

    Returns, per image, the query (1-based, per image) at which the answer first was `want` (0: never)."""
    n, h, w, c = x0.shape
    sign = -1 if want is False else 1  # removal lowers the matches, forgery raises them
    delta = eps * rng.choice([-1, 1], size=(n, 1, w, c))  # Square attack's stripes
    delta = np.broadcast_to(delta, x0.shape).copy()
    cur = np.clip(x0.astype(int) + delta, 0, 255).astype(np.uint8)
    det, m = oracle(cur)
    if m is None:
        raise SystemExit("the server answers decisions only: the score attack has no matches to climb")
    hit = np.where(det == want, 1, 0)
    for q in range(2, budget + 1):
        side = max(1, int(round(h * 0.3 * (1 - q / (budget + 1)) ** 0.5)))  # patches shrink as in the paper
        cand = delta.copy()
        for i in range(n):
            y, x = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
            cand[i, y:y + side, x:x + side] = eps * rng.choice([-1, 1], size=(1, 1, c))
        img = np.clip(x0.astype(int) + cand, 0, 255).astype(np.uint8)
        todo = hit == 0
        d2, m2 = oracle(img[todo])
        keep = np.zeros(n, bool)
        keep[todo] = sign * (m2 - m[todo]) >= 0
        delta[keep], cur[keep] = cand[keep], img[keep]
        m[todo] = np.where(keep[todo], m2, m[todo])
        newly = np.zeros(n, bool)
        newly[todo] = (d2 == want) & keep[todo]
        hit[newly] = q
        if not (hit == 0).any():
            break
    return {"hit_query": hit.tolist(), "psnr": psnr(cur, x0).tolist()}


def _bisect(oracle: Oracle, target: np.ndarray, adv: np.ndarray, want: bool, steps: int = 8) -> np.ndarray:
    """Per image the point nearest `target` on the segment target -> adv whose answer is still `want`."""
    lo, hi = np.zeros(len(target)), np.ones(len(target))  # fraction of the way to adv: hi is on the wanted side
    t, a = target.astype(np.float64), adv.astype(np.float64)
    for _ in range(steps):
        mid = (lo + hi) / 2
        img = np.rint(t + mid[:, None, None, None] * (a - t)).astype(np.uint8)
        det, _ = oracle(img)
        ok = det == want
        hi, lo = np.where(ok, mid, hi), np.where(ok, lo, mid)
    return np.rint(t + hi[:, None, None, None] * (a - t)).astype(np.uint8)


def boundary_attack(oracle: Oracle, target: np.ndarray, start: np.ndarray, want: bool, budget: int,
                    rng) -> dict:
    """Decision-only: PSNR to `target` of the best wanted-side image after each query count (`trace`)."""
    n, base = len(target), oracle.queries
    det, _ = oracle(start)
    valid = det == want  # a start on the wrong side is a failure for that image
    cur = _bisect(oracle, target, start, want)
    trace = {(oracle.queries - base) // n: np.where(valid, psnr(cur, target), -np.inf)}
    t = target.astype(np.float64)
    step, toward = np.full(n, 0.1), np.full(n, 0.05)
    while (oracle.queries - base) // n < budget:
        d = cur - t
        dist = np.sqrt((d ** 2).reshape(n, -1).sum(1))[:, None, None, None] + 1e-9
        u = rng.standard_normal(d.shape)
        u -= (u * d).reshape(n, -1).sum(1)[:, None, None, None] / dist ** 2 * d  # orthogonal to d
        u *= step[:, None, None, None] * dist / (np.sqrt((u ** 2).reshape(n, -1).sum(1))[:, None, None, None] + 1e-9)
        c = d + u
        c *= dist / np.sqrt((c ** 2).reshape(n, -1).sum(1))[:, None, None, None]  # back onto the sphere
        c *= (1 - toward)[:, None, None, None]
        img = np.clip(np.rint(t + c), 0, 255).astype(np.uint8)
        det, _ = oracle(img)
        ok = (det == want) & valid
        cur[ok] = img[ok]
        toward = np.where(ok, np.minimum(toward * 1.5, 0.5), np.maximum(toward * 0.7, 1e-3))
        step = np.where(ok, np.minimum(step * 1.1, 0.5), np.maximum(step * 0.9, 0.01))
        trace[(oracle.queries - base) // n] = np.where(valid, psnr(cur, target), -np.inf)
    return {"valid": valid.tolist(), "trace": {q: v.tolist() for q, v in trace.items()}}


def _side(oracle: Oracle, imgs: np.ndarray, want: bool) -> np.ndarray:
    return oracle(np.clip(np.rint(imgs), 0, 255).astype(np.uint8))[0] == want


def hsja_one(oracle: Oracle, target: np.ndarray, start: np.ndarray, want: bool, budget: int, rng) -> list:
    """HopSkipJump-style (Chen et al. 2020, from the paper's outline) for one image: (queries used, PSNR) history.

    At the boundary it estimates the gradient of the decision from the answers to `probes` random
    perturbations, steps along it (halving the step until the answer is still `want`), and bisects back."""
    base, t = oracle.queries, target.astype(np.float64)[None]
    if not _side(oracle, start[None], want)[0]:
        return []
    cur = _bisect(oracle, target[None], start[None], want)[0].astype(np.float64)
    hist, it = [(oracle.queries - base, float(psnr(cur[None].astype(np.uint8), target[None])[0]))], 0
    while oracle.queries - base < budget:
        it += 1
        dist = float(np.sqrt(((cur - t[0]) ** 2).sum())) + 1e-9
        probes = min(100, 20 * int(np.sqrt(it)), budget - (oracle.queries - base))
        u = rng.standard_normal((probes, *cur.shape))
        u /= np.sqrt((u ** 2).reshape(probes, -1).sum(1))[:, None, None, None]
        phi = np.where(_side(oracle, cur[None] + 0.1 * dist * u, want), 1.0, -1.0)
        w = phi - phi.mean() if phi.std() > 0 else phi  # the paper's baseline, unless all answers agree
        g = (w[:, None, None, None] * u).sum(0)
        g /= np.sqrt((g ** 2).sum()) + 1e-12
        xi = dist / np.sqrt(it)
        while oracle.queries - base < budget:
            cand = np.clip(cur + xi * g, 0, 255)
            if _side(oracle, cand[None], want)[0]:
                cur = _bisect(oracle, target[None], np.rint(cand)[None].astype(np.uint8), want)[0].astype(np.float64)
                break
            xi /= 2
        hist.append((oracle.queries - base, float(psnr(cur[None].astype(np.uint8), target[None])[0])))
    return hist


def hsja_attack(oracle: Oracle, target: np.ndarray, start: np.ndarray, want: bool, budget: int, rng) -> dict:
    """`hsja_one` per image; the trace holds, per query budget, each image's PSNR then (-inf: none yet)."""
    hists = [hsja_one(oracle, target[i], start[i], want, budget, rng) for i in range(len(target))]
    trace = {}
    for q in (10, 30, 100, 300, 1000):
        trace[q] = [max([p for used, p in h if used <= q], default=-np.inf) for h in hists]
    return {"valid": [bool(h) for h in hists], "trace": trace}


def load(folder: Path, n: int) -> np.ndarray:
    return np.stack([np.asarray(Image.open(f).convert("RGB")) for f in sorted(folder.glob("*.png"))[:n]])


def run_server(args, answer: str, log: Path) -> Server:
    decoder = ["--scalable-decoder" if args.route == "attribute" else "--stega-decoder", str(args.decoder)]
    return Server(["--registry", str(args.registry or args.outdir / "registry.sqlite"), *decoder, "--answer", answer, "--max-files", str(MAX_FILES), "--rate-limit", str(args.rate_limit)], log)


def summarise(res: dict, budgets: list[int], thresholds: list[float]) -> list[dict]:
    """Success rate at each query budget: `score` rows by the first wanted answer, `decision` rows by PSNR."""
    rows = []
    for (attack, goal, answer, eps), r in res.items():
        for q in budgets:
            if attack == "score":
                hit = np.array(r["hit_query"])
                rows.append({"attack": attack, "goal": goal, "answer": answer, "queries": q,
                             "psnr_floor": round(20 * np.log10(255 / eps), 1),
                             "success": float(((hit > 0) & (hit <= q)).mean()),
                             "mean_psnr": float(np.mean(r["psnr"]))})
                continue
            keys = [k for k in r["trace"] if k <= q]
            p = np.array(r["trace"][max(keys)]) if keys else np.full(len(r["valid"]), -np.inf)
            for th in thresholds:
                rows.append({"attack": attack, "goal": goal, "answer": answer, "queries": q, "psnr_floor": th,
                             "success": float((p >= th).mean()),
                             "median_psnr": float(np.median(p)) if np.isfinite(p).any() else None})
    return rows


def attack_server(args, answer: str, fp: np.ndarray, clean: np.ndarray, rng) -> tuple[dict, dict]:
    """Every attack this answer allows, against one server; returns results and the traffic it took."""
    server = run_server(args, answer, args.outdir / f"serve-{answer}.log")
    res, traffic = {}, {"queries": 0, "seconds": 0.0}
    try:
        with server.client() as client:
            oracle = Oracle(client, args.budget, args.route, args.target, parse_bits(args.fingerprint).numpy())
            if answer == "full":
                for eps in args.eps:
                    res[("score", "removal", answer, eps)] = square_attack(oracle, fp, False, eps, args.budget, rng)
                    res[("score", "forgery", answer, eps)] = square_attack(oracle, clean, True, eps, args.budget, rng)
            if answer == "full":
                return res, {"queries": oracle.queries, "seconds": oracle.seconds}
            # Needs no scores, so it does as well against a full answer (the server is deterministic).
            others = np.roll(fp, 1, axis=0)  # the forger's starting point: another output of the model
            res[("decision", "removal", answer, 0)] = boundary_attack(oracle, fp, clean, False, args.budget, rng)
            res[("decision", "forgery", answer, 0)] = boundary_attack(oracle, clean, others, True, args.budget, rng)
            res[("hsja", "removal", answer, 0)] = hsja_attack(oracle, fp, clean, False, args.budget, rng)
            res[("hsja", "forgery", answer, 0)] = hsja_attack(oracle, clean, others, True, args.budget, rng)
            traffic = {"queries": oracle.queries, "seconds": oracle.seconds}
    finally:
        server.stop()
    return res, traffic


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fingerprinted", type=Path, required=True)
    ap.add_argument("--clean", type=Path, required=True)
    ap.add_argument("--decoder", type=Path, required=True, help="stega model or its decoder export")
    ap.add_argument("--fingerprint", required=True)
    ap.add_argument("--images", type=int, default=20)
    ap.add_argument("--budget", type=int, default=1000, help="queries per image")
    ap.add_argument("--eps", type=lambda s: [int(v) for v in s.split(",")], default=[4, 8])
    ap.add_argument("--answers", default="full,decision")
    ap.add_argument("--rate-limit", type=float, default=0.0, help="the servers' --rate-limit (0: none)")
    ap.add_argument("--route", choices=["detect", "attribute"], default="detect",
                    help="detect: --decoder is a stega model, registered as one data set with --fingerprint; "
                         "attribute: --decoder is a scalable decoder and --registry holds the issued models")
    ap.add_argument("--registry", type=Path, default=None, help="with --route attribute: the registry")
    ap.add_argument("--target", type=int, default=None,
                    help="with --route attribute: the fp_id of the issued model whose images --fingerprinted holds "
                         "(its key is --fingerprint)")
    ap.add_argument("--outdir", type=Path, required=True)
    args = ap.parse_args(argv)
    args.outdir.mkdir(parents=True, exist_ok=True)
    if args.route == "attribute" and (args.registry is None or args.target is None):
        raise SystemExit("--route attribute needs --registry and --target")
    if args.route == "detect" and not (args.outdir / "registry.sqlite").exists():
        register_dataset(args.outdir / "registry.sqlite", "demo", args.fingerprint, args.decoder)
    fp, clean = load(args.fingerprinted, args.images), load(args.clean, args.images)
    rng = np.random.default_rng(0)
    res, traffic = {}, {}
    for answer in args.answers.split(","):
        r, traffic[answer] = attack_server(args, answer, fp, clean, rng)
        res.update(r)
    budgets = [b for b in (10, 30, 100, 300, 1000) if b <= args.budget]
    rows = summarise(res, budgets, [30.0, 35.0, 40.0])
    out = {"rows": rows, "traffic": traffic, "images": len(fp), "budget": args.budget,
           "raw": {"|".join(map(str, k)): v for k, v in res.items()}}
    (args.outdir / "oracle.json").write_text(json.dumps(out, indent=1))
    lines = ["| attack | goal | answer | queries/image | PSNR floor (dB) | success | PSNR (dB) |", "|" + "---|" * 7]
    for r in rows:
        p = r.get("mean_psnr", r.get("median_psnr"))
        lines.append(f"| {r['attack']} | {r['goal']} | {r['answer']} | {r['queries']} | {r['psnr_floor']} | "
                     f"{r['success']:.2f} | {'-' if p is None else f'{p:.1f}'} |")
    for a, t in traffic.items():
        lines.append(f"\n{a}: {t['queries']} queries in {t['seconds']:.1f} s of requests "
                     f"({t['queries'] / max(t['seconds'], 1e-9):.0f} images/s, one client, server --rate-limit "
                     f"{args.rate_limit:g})")
    (args.outdir / "oracle.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
