"""Collusion helpers for collusion.sh: what two (or more) holders of issued scalable models can make together.

  python collusion.py images MODE OUT DIR_A DIR_B [DIR_C ...]   pixel collusion of images from the same seeds:
      MODE mean (pixel average of all), halves (top half of A, bottom half of B), or w=L (L*A + (1-L)*B)
  python collusion.py weights L OUT A.safetensors B.safetensors  weight interpolation L*A + (1-L)*B of issued models
  python collusion.py table ROOT LISTING                         the table of RESULTS-collusion.md, from the
      attribution rows ROOT/attr-NAME/attributions.jsonl (`ganprint attribute --outdir`; older runs:
      ROOT/attr-NAME.jsonl) and LISTING (`ganprint registry list --json`: the issued keys)
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


# whose outputs each attributed folder holds (for genuine images: the model's own holder; real photos: nobody)
MAKERS = {"img-1": {"alice"}, "img-3": {"carol"}, "real": set(), "mean-abc": {"alice", "bob", "carol"}}


def _attributions(root: Path) -> list[tuple[str, Path]]:
    """(NAME, rows file) of every attributed folder: attr-NAME/attributions.jsonl, or an older run's attr-NAME.jsonl."""
    found = {f.parent.name[5:]: f for f in root.glob("attr-*/attributions.jsonl")}
    found.update({f.stem[5:]: f for f in root.glob("attr-*.jsonl") if f.stem[5:] not in found})
    return sorted(found.items())


def table(root: Path, listing: Path) -> None:
    keys = _keys(listing)
    who = [keys[fp][0] for fp in sorted(keys)]
    print("| images | made by | n | " + " | ".join(f"to {w}" for w in who) + " | unknown | innocent accused | "
          + " | ".join(f"bit acc. vs {w}" for w in who) + " |")
    print("|---|---|---|" + "---|" * (2 * len(who) + 2))
    for name, f in _attributions(root):
        makers = MAKERS.get(name, {"alice", "bob"})
        rows = [json.loads(x) for x in f.read_text().splitlines()]
        att = [keys[r["attributed"]][0] if r["attributed"] != "unknown" else "unknown" for r in rows]
        acc = {keys[fp][0]: np.mean([(_bits(r["decoded"]) == bits).mean() for r in rows])
               for fp, (_, bits) in keys.items()}
        n = len(rows)
        innocent = sum(a not in makers and a != "unknown" for a in att)
        print(f"| {name} | {', '.join(sorted(makers)) or 'nobody'} | {n} | "
              + " | ".join(f"{att.count(w) / n:.3f}" for w in who) + f" | {att.count('unknown') / n:.3f} | "
              f"{innocent} | " + " | ".join(f"{acc[w]:.3f}" for w in who) + " |")
    _agreement(root, keys)


def _agreement(root: Path, keys: dict) -> None:
    """Where the colluders' keys agree, is the common bit read? Where they differ, whose bit is read?"""
    by = {w: bits for w, bits in keys.values()}
    a, b = by["alice"], by["bob"]
    same = a == b
    print(f"\nalice and bob agree on {int(same.sum())} of {len(a)} bits")
    print("| images | agreeing bits read as their common value | differing bits read as alice's |")
    print("|---|---|---|")
    for name, f in _attributions(root):
        if MAKERS.get(name, {"alice", "bob"}) != {"alice", "bob"}:
            continue
        d = np.stack([_bits(json.loads(x)["decoded"]) for x in f.read_text().splitlines()])
        print(f"| {name} | {(d[:, same] == a[same]).mean():.3f} | {(d[:, ~same] == a[~same]).mean():.3f} |")


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
