"""What decoding an upload costs, by image size and format, and what one request can cost a `ganprint serve` worker
under the old limits (--max-pixels 40 M, no per-request bound) and the new defaults (--max-pixels 4096 x 4096,
--max-request-pixels 4 x 4096 x 4096).

  decode   per image: CPU seconds and peak memory of the service's upload reader (format sniffing, header check,
           decoding, centre crop and resize to 32 px), each case in a fresh process
  request  against real servers on 127.0.0.1: 64 black 8000 x 5000 PNGs (116 KB each) in one request, and the
           largest request the new defaults accept (four 4096 x 4096 PNGs); status, seconds, server CPU and the
           server's peak resident memory

  PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/perf/bench_service_pixels.py \
      --out benchmarks/perf/results/service-pixels.json
"""

from __future__ import annotations

import argparse
import io
import json
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from bench_service import _tree_cpu  # beside this script
from service_kit import SRC, Server, make_models

ROOT = SRC.parent  # the repository

CASES = [("black-png", 8000, 5000), ("black-png", 4096, 4096), ("photo-png", 4096, 4096),
         ("photo-jpg", 4096, 4096), ("photo-jpg", 4000, 3000), ("photo-jpg", 2048, 1536)]


def make_image(kind: str, w: int, h: int) -> bytes:
    """The file bytes of a black image, or a photo-like one (gradients and noise), as PNG or JPEG (quality 90)."""
    if kind.startswith("black"):
        im = Image.new("RGB", (w, h))
    else:
        rng = np.random.default_rng(0)
        ramp = np.linspace(0, 200, w, dtype=np.float32)[None, :] + np.linspace(0, 55, h, dtype=np.float32)[:, None]
        a = np.clip(ramp + rng.normal(0, 8, (h, w)).astype(np.float32), 0, 255).astype(np.uint8)  # [H, W]
        im = Image.fromarray(np.stack([a, a[::-1], a[:, ::-1]], axis=2))  # [H, W, 3]
    buf = io.BytesIO()
    im.save(buf, format="JPEG" if kind.endswith("jpg") else "PNG", **({"quality": 90} if kind.endswith("jpg") else {}))
    return buf.getvalue()


def _rss_mb() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * resource.getpagesize() / 2**20


def _decode_child(path: str) -> None:
    """In a fresh process: decode one file as the service does; print CPU s and the peak growth of resident memory
    (sampled every millisecond) in MB."""
    from ganprint.service.uploads import read_uploads

    read_uploads([("warm-up", io.BytesIO(make_image("black-png", 64, 64)))], {32}, 10**10)  # lazy imports
    data = Path(path).read_bytes()
    base, peak, done = _rss_mb(), [0.0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _rss_mb())
            time.sleep(0.001)

    sampler = threading.Thread(target=sample)
    sampler.start()
    c0 = time.process_time()
    read_uploads([("x", io.BytesIO(data))], {32}, 10**10)
    cpu = time.process_time() - c0
    done.set()
    sampler.join()
    print(json.dumps({"cpu_s": round(cpu, 3), "peak_mb": round(peak[0] - base, 1)}))


def decode(work: Path) -> list[dict]:
    rows = []
    for kind, w, h in CASES:
        path = work / f"{kind}-{w}x{h}"
        path.write_bytes(make_image(kind, w, h))
        out = subprocess.run([sys.executable, __file__, "--decode-child", str(path)], capture_output=True,
                             text=True, check=True).stdout
        rows.append({"image": kind, "size": f"{w}x{h}", "mpx": round(w * h / 1e6, 1),
                     "kb": round(path.stat().st_size / 1e3), **json.loads(out.splitlines()[-1])})
        print(rows[-1], flush=True)
    return rows


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def request(work: Path) -> list[dict]:
    m = make_models(work / "models")
    bomb, largest = make_image("black-png", 8000, 5000), make_image("black-png", 4096, 4096)
    configs = {"old limits": ["--max-pixels", "40000000", "--max-request-pixels", str(10**10)],
               "new defaults": []}
    loads = {"64 x 8000x5000 PNG (116 KB each)": [bomb] * 64, "4 x 4096x4096 PNG": [largest] * 4}
    rows = []
    for name, flags in configs.items():
        for what, images in loads.items():
            srv = Server(["--registry", m["registry"], "--scalable-decoder", str(m["decoder"]), "--rate-limit", "0",
                          *flags],
                         work / f"{name}.log")
            try:
                before_cpu, before_rss = _tree_cpu(srv.proc.pid), _peak_rss_mb(srv.proc.pid)
                files = [("files", (f"{i}.png", b, "image/png")) for i, b in enumerate(images)]
                t0 = time.perf_counter()
                r = httpx.post(srv.url + "/v1/attribute", files=files, timeout=600)
                rows.append({"limits": name, "request": what, "status": r.status_code,
                             "seconds": round(time.perf_counter() - t0, 2),
                             "server_cpu_s": round(_tree_cpu(srv.proc.pid) - before_cpu, 2),
                             "server_peak_rss_mb": round(_peak_rss_mb(srv.proc.pid)),
                             "rss_before_mb": round(before_rss)})
                print(rows[-1], flush=True)
            finally:
                srv.stop()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/perf/results/service-pixels.json")
    ap.add_argument("--only", choices=["decode", "request"], action="append")
    ap.add_argument("--decode-child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.decode_child:
        return _decode_child(args.decode_child)
    parts = args.only or ["decode", "request"]
    out = {}
    with tempfile.TemporaryDirectory(prefix="ganprint-bench-pixels-") as tmp:
        if "decode" in parts:
            out["decode"] = decode(Path(tmp))
        if "request" in parts:
            out["request"] = request(Path(tmp))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
