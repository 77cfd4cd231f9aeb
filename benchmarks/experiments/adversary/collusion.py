"""Collusion helpers for collusion.sh: what two (or more) holders of issued scalable models can make together.

  python collusion.py images MODE OUT DIR_A DIR_B [DIR_C ...]   pixel collusion of images from the same seeds:
      MODE mean (pixel average of all), halves (top half of A, bottom half of B), or w=L (L*A + (1-L)*B)
  python collusion.py weights L OUT A.safetensors B.safetensors  weight interpolation L*A + (1-L)*B of issued models
  python collusion.py table ROOT LISTING                         the table of RESULTS-collusion.md, from the
      attribution rows ROOT/attr-*.jsonl and LISTING (`ganprint registry list --json`: the issued keys)
"""

import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image


def mix_images(mode: str, out: Path, dirs: list[Path]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    names = sorted(p.name for p in dirs[0].glob("seed*.png"))
    for name in names:
        x = np.stack([np.asarray(Image.open(d / name).convert("RGB"), dtype=np.float64) for d in dirs])
        if mode == "mean":
            y = x.mean(0)
        elif mode == "halves":
            y = x[0].copy()
            y[y.shape[0] // 2:] = x[1][y.shape[0] // 2:]
        elif mode.startswith("w="):
            lam = float(mode[2:])
            y = lam * x[0] + (1 - lam) * x[1]
        else:
            raise SystemExit(f"unknown mode {mode!r}")
        Image.fromarray(np.clip(np.round(y), 0, 255).astype(np.uint8)).save(out / name)


def mix_weights(lam: float, out: Path, a: Path, b: Path) -> None:
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    ta, tb = load_file(str(a)), load_file(str(b))
    with safe_open(str(a), "pt") as f:
        meta = dict(f.metadata())
    # The colluders' file claims A's fingerprint in its metadata (generate needs one); attribution never reads it,
    # it decodes the images. The registry id goes: a colluder would not keep it.
    meta.pop("ganprint.fp_id", None)
    mixed = {k: (lam * ta[k].double() + (1 - lam) * tb[k].double()).to(ta[k].dtype) if ta[k].is_floating_point()
             else ta[k] for k in ta}
    save_file(mixed, str(out), metadata=meta)


def _keys(listing: Path) -> dict[int, tuple[str, np.ndarray]]:
    rows = [json.loads(x) for x in listing.read_text().splitlines() if x.strip()]
    return {r["fp_id"]: (r["who"], _bits(r["bits_hex"])) for r in rows}


def _bits(hexs: str, k: int = 32) -> np.ndarray:
    return np.array([int(c) for c in bin(int(hexs, 16))[2:].zfill(k)])


def table(root: Path, listing: Path) -> None:
    keys = _keys(listing)
    colluders = {fp for fp, (who, _) in keys.items() if who in ("alice", "bob")}
    print("| images | n | attributed to a colluder | to an innocent holder | unknown | "
          "mean bit acc. vs alice | vs bob | vs best innocent |")
    print("|---|---|---|---|---|---|---|---|")
    for f in sorted(root.glob("attr-*.jsonl")):
        rows = [json.loads(x) for x in f.read_text().splitlines()]
        att = [r["attributed"] for r in rows]
        acc = {fp: [float((_bits(r["decoded"]) == bits).mean()) for r in rows] for fp, (_, bits) in keys.items()}
        by_who = {keys[fp][0]: np.mean(v) for fp, v in acc.items()}
        innocent = max(np.mean(v) for fp, v in acc.items() if fp not in colluders)
        n = len(rows)
        col = sum(a in colluders for a in att)
        inn = sum(a != "unknown" and a not in colluders for a in att)
        print(f"| {f.stem[5:]} | {n} | {col / n:.3f} | {inn / n:.3f} | {att.count('unknown') / n:.3f} | "
              f"{by_who['alice']:.3f} | {by_who['bob']:.3f} | {innocent:.3f} |")


if __name__ == "__main__":
    cmd, *args = sys.argv[1:]
    if cmd == "images":
        mix_images(args[0], Path(args[1]), [Path(a) for a in args[2:]])
    elif cmd == "weights":
        mix_weights(float(args[0]), Path(args[1]), Path(args[2]), Path(args[3]))
    elif cmd == "table":
        table(Path(args[0]), Path(args[1]))
    else:
        raise SystemExit(__doc__)
