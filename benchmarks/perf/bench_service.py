"""Load and faults of `ganprint serve`, measured against real servers on 127.0.0.1 (bounded: fixed request counts
and a time limit per run).

  throughput  /v1/attribute images/s and p50/p99 latency at 1, 8, 32 clients, one and 16 images per request,
              with 1 and 2 uvicorn workers, beside the offline `ganprint attribute` on a folder of the same images
              (2000 by default, so that the command's start-up does not dominate)
  issue       8 clients issuing N models through 2 servers on one PostgreSQL: distinct, >= min distance, none lost
  runtime     PyTorch vs ONNX Runtime decoders: in-process images/s and /v1/attribute at 8 clients
  kill        a server SIGKILLed while 4 clients issue: only complete records, every returned id downloads

The models are stand-ins (service_kit.py beside this script, which the service tests use too: random generator,
fitted decoder); the service's cost does not depend on how well a decoder was trained, only on its size.

  PYTHONPATH=src python benchmarks/perf/bench_service.py --out benchmarks/perf/results/service.json
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

from ganprint.core.files import sha256_file
from ganprint.registry.fingerprints import default_min_distance
from ganprint.registry.store import Registry
from service_kit import SRC, Server, create_database, make_models, postgres_instance  # beside this script

ROOT = SRC.parent  # the repository


def _tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by process `pid` and its descendants (uvicorn workers)."""
    tick = os.sysconf("SC_CLK_TCK")
    stats = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            stats[int(d.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick)  # ppid, cpu
    tree, total = {pid}, 0.0
    for _ in range(3):  # server -> uvicorn supervisor -> workers
        tree |= {p for p, (ppid, _) in stats.items() if ppid in tree}
    for p in tree:
        total += stats.get(p, (0, 0.0))[1]
    return total


async def _load(url: str, images: list[bytes], clients: int, requests: int, limit_s: float,
                pid: int | None = None, per_request: int = 1) -> dict:
    """`clients` concurrent clients send `requests` requests of `per_request` images in all (or stop after
    limit_s); latency is per request."""
    lat: list[float] = []
    errors = 0
    next_i = 0
    deadline = time.perf_counter() + limit_s

    def files(i: int) -> list:
        return [("files", (f"{i}-{j}.png", images[(i * per_request + j) % len(images)], "image/png"))
                for j in range(per_request)]

    async def client(c: httpx.AsyncClient) -> None:
        nonlocal next_i, errors
        while next_i < requests and time.perf_counter() < deadline:
            i = next_i
            next_i += 1
            t = time.perf_counter()
            r = await c.post("/v1/attribute", files=files(i))
            lat.append(time.perf_counter() - t)
            errors += r.status_code != 200

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as c:
        for _ in range(min(4, requests)):  # warm-up
            await c.post("/v1/attribute", files=files(0))
        t0, cpu0, own0 = time.perf_counter(), _tree_cpu(pid) if pid else 0.0, time.process_time()
        await asyncio.gather(*(client(c) for _ in range(clients)))
        wall = time.perf_counter() - t0
        server_cpu, own_cpu = (_tree_cpu(pid) - cpu0 if pid else 0.0), time.process_time() - own0
    a = np.array(lat) * 1000
    n = max(1, len(lat))
    return {"clients": clients, "images_per_request": per_request, "requests": len(lat), "errors": errors,
            "wall_s": round(wall, 2), "images_per_s": round(len(lat) * per_request / wall, 1),
            "p50_ms": round(float(np.percentile(a, 50)), 1), "p99_ms": round(float(np.percentile(a, 99)), 1),
            "server_cpu_ms_per_request": round(1000 * server_cpu / n, 2),
            "server_cpu_ms_per_image": round(1000 * server_cpu / n / per_request, 3),
            "loadgen_cpu_ms_per_request": round(1000 * own_cpu / n, 2)}


def _command(m: dict, folder: Path, out: Path) -> float:
    """Wall seconds of the whole `ganprint attribute` command on `folder` (Python start and imports included)."""
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "ganprint", "-q", "attribute", "--model", str(m["decoder"]),
                    "--registry", m["registry"], "--data", str(folder), "--outdir", str(out), "--device", "cpu"],
                   check=True, env=env, capture_output=True)
    return time.perf_counter() - t


def _offline(m: dict, paths: list[Path], work: Path, count: int) -> dict:
    """`ganprint attribute` on a folder of `count` images (the same images as the server gets, repeated): the whole
    command, the command on one image (its start-up; the difference gives the rate after start-up), and
    `attribute_images()` in-process (no start-up)."""
    from ganprint.scalable.attribute import attribute_images

    folder, one = work / f"offline-{m['root'].name}", work / f"one-{m['root'].name}"
    folder.mkdir()
    one.mkdir()
    for i in range(count):
        (folder / f"{i:05d}.png").write_bytes(paths[i % len(paths)].read_bytes())
    (one / "0.png").write_bytes(paths[0].read_bytes())
    t = time.perf_counter()
    attribute_images(m["decoder"], m["registry"], folder, work / "offline", device="cpu")
    lib = time.perf_counter() - t
    cli_one = _command(m, one, work / "cli-one")
    cli = _command(m, folder, work / "cli")
    return {"images": count, "command_s": round(cli, 2), "command_images_per_s": round(count / cli, 1),
            "command_one_image_s": round(cli_one, 2),
            "command_after_startup_images_per_s": round((count - 1) / max(1e-9, cli - cli_one), 1),
            "library_s": round(lib, 3),
            "library_images_per_s": round(count / lib, 1)}


def throughput(work: Path, resolution: int, requests: int, limit_s: float, per_request: list[int],
               offline_images: int) -> dict:
    import torch

    torch.set_num_threads(1)
    m = make_models(work / f"models{resolution}", resolution=resolution, images=64, photos=64)
    paths = list(m["alice_images"]) + list(m["photos"])
    images = [p.read_bytes() for p in paths]
    out = {"resolution": resolution, "offline": _offline(m, paths, work, offline_images), "server": []}
    print(json.dumps(out["offline"]), flush=True)
    for workers in (1, 2):
        srv = Server(["--registry", m["registry"], "--scalable-decoder", str(m["decoder"]), "--workers",
                      str(workers), "--max-files", "64", "--rate-limit", "0"], work / f"server{resolution}-{workers}.log")
        try:
            for per in per_request:
                for clients in (1, 8, 32):
                    n = requests if per == 1 else max(32, requests // 4)
                    row = asyncio.run(_load(srv.url, images, clients, n, limit_s, srv.proc.pid, per))
                    row.update(workers=workers, resolution=resolution)
                    out["server"].append(row)
                    print(json.dumps(row), flush=True)
        finally:
            srv.stop()
    return out


def runtimes(work: Path, requests: int, limit_s: float) -> dict:
    """PyTorch vs ONNX Runtime: decoding in-process (batches of 64, one thread) and /v1/attribute at 8 clients."""
    import torch

    from ganprint.core.artifacts import load_export
    from ganprint.core.images import read_image
    from ganprint.nets.onnx import onnx_runtime_for
    from ganprint.scalable.attribute import decode_images

    torch.set_num_threads(1)
    m = make_models(work / "rt-models", resolution=32, images=64, photos=64)
    paths = list(m["alice_images"]) + list(m["photos"])
    imgs = np.stack([read_image(p) for p in paths])
    dec, _, _ = load_export(m["decoder"], kind="scalable-decoder")
    ort = onnx_runtime_for(m["decoder"], work, threads=1)
    out: dict = {"images": len(imgs)}
    for name, fn in (("torch", lambda: decode_images(dec, imgs, 64, "cpu")), ("onnx", lambda: ort.bits(imgs))):
        fn()
        t = time.perf_counter()
        for _ in range(5):
            fn()
        out[f"{name}_decode_images_per_s"] = round(5 * len(imgs) / (time.perf_counter() - t), 1)
    out["same_bits"] = bool(np.array_equal(decode_images(dec, imgs, 64, "cpu").numpy(), ort.bits(imgs)))
    images = [p.read_bytes() for p in paths]
    for runtime in ("torch", "onnx"):
        srv = Server(["--registry", m["registry"], "--scalable-decoder", str(m["decoder"]), "--runtime", runtime,
                      "--rate-limit", "0"],
                     work / f"rt-{runtime}.log")
        try:
            row = asyncio.run(_load(srv.url, images, 8, requests, limit_s, srv.proc.pid))
        finally:
            srv.stop()
        out[f"{runtime}_server_8_clients"] = row
        print(json.dumps({runtime: row}), flush=True)
    return out


def _issue(url: str, token: str, who: str) -> int:
    r = httpx.post(url + "/v1/issue", json={"who": who}, headers={"Authorization": f"Bearer {token}"}, timeout=120)
    r.raise_for_status()
    return r.json()["id"]


def _check(url: str, returned: list[int]) -> dict:
    rows = Registry(url, create=False).list()
    ids = {r.fp_id for r in rows}
    complete = all(r.issued_path and os.path.exists(r.issued_path) and sha256_file(r.issued_path) == r.issued_sha256
                   for r in rows)
    bits = np.stack([r.bits.numpy() for r in rows]).astype(np.uint8)
    d = np.full((len(rows), len(rows)), 999)
    for i in range(len(rows)):  # row by row: bounded memory for large N
        d[i] = (bits[i][None] != bits).sum(-1)
        d[i, i] = 999
    return {"registry_rows": len(rows), "returned": len(returned), "returned_distinct": len(set(returned)),
            "returned_missing": len(set(returned) - ids), "distinct_fingerprints": len({r.bits_hex for r in rows}),
            "min_pairwise_distance": int(d.min()), "required_min_distance": default_min_distance(bits.shape[1]),
            "all_records_complete": bool(complete)}


def issuing(work: Path, count: int, clients: int, pg: tuple[str, int]) -> dict:
    url = create_database(*pg, "bench_issue")
    m = make_models(work / "issue-models", resolution=32, images=4, photos=4, registry=url)
    token = Registry(url).create_token("bench")
    args = ["--registry", url, "--scalable-decoder", str(m["decoder"]), "--base-model", str(m["G"]),
            "--models-dir", str(work / "issued-shared")]
    servers = [Server(args, work / f"issue{i}.log") for i in range(2)]
    returned: list[int] = []
    errors: list[str] = []
    per_client = count // clients

    def client(i: int) -> None:
        for j in range(per_client):
            try:
                returned.append(_issue(servers[(i + j) % 2].url, token, f"c{i}"))
            except Exception as e:  # noqa: BLE001 - counted
                errors.append(repr(e))

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    for s in servers:
        s.stop()
    res = {"clients": clients, "servers": 2, "requested": per_client * clients, "errors": len(errors),
           "wall_s": round(wall, 1), "issues_per_s": round(len(returned) / wall, 2), **_check(url, returned)}
    print(json.dumps(res), flush=True)
    return res


def kill(work: Path, pg: tuple[str, int], rounds: int) -> dict:
    url = create_database(*pg, "bench_kill")
    m = make_models(work / "kill-models", resolution=32, images=4, photos=4, registry=url)
    token = Registry(url).create_token("bench")
    args = ["--registry", url, "--scalable-decoder", str(m["decoder"]), "--base-model", str(m["G"]),
            "--models-dir", str(work / "issued-kill")]
    returned: list[int] = []
    failed = 0
    for k in range(rounds):
        srv = Server(args, work / f"kill{k}.log")
        stop = threading.Event()

        def client() -> None:
            nonlocal failed
            while not stop.is_set():
                try:
                    returned.append(_issue(srv.url, token, "k"))
                except Exception:  # noqa: BLE001 - the server died under this request
                    failed += 1
                    return

        threads = [threading.Thread(target=client) for _ in range(4)]
        for t in threads:
            t.start()
        time.sleep(1.0 + k * 0.37)  # a different moment in each round
        srv.stop(signal.SIGKILL)
        stop.set()
        for t in threads:
            t.join()
    before = 2  # make_models issued alice's and bob's
    srv = Server(args, work / "kill-final.log")
    downloaded = sum(httpx.get(f"{srv.url}/v1/models/{i}/download", headers={"Authorization": f"Bearer {token}"},
                               timeout=60).status_code == 200 for i in returned)
    srv.stop()
    res = {"rounds": rounds, "requests_cut_by_the_kill": failed, "downloaded": downloaded, **_check(url, returned)}
    res["committed_but_answer_cut"] = res["registry_rows"] - before - len(returned)
    print(json.dumps(res), flush=True)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/perf/results/service.json")
    ap.add_argument("--only", choices=["throughput", "runtime", "issue", "kill"], action="append")
    ap.add_argument("--resolution", type=int, action="append", help="image side(s) [32]")
    ap.add_argument("--requests", type=int, default=400,
                    help="requests per load run (runs of several images per request send a quarter as many)")
    ap.add_argument("--per-request", type=int, action="append", help="images per request, one load run each [1, 16]")
    ap.add_argument("--offline-images", type=int, default=2000,
                    help="folder size for the offline `ganprint attribute` (the same images, repeated)")
    ap.add_argument("--limit-s", type=float, default=60.0, help="time limit per load run")
    ap.add_argument("--issue-count", type=int, default=1000)
    ap.add_argument("--kill-rounds", type=int, default=3)
    a = ap.parse_args()
    only = set(a.only or ["throughput", "runtime", "issue", "kill"])
    res = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load_avg_start": os.getloadavg(),
                       "nice": os.nice(0), "uvicorn": importlib.metadata.version("uvicorn")}}
    with tempfile.TemporaryDirectory(prefix="ganprint-bench-") as tmp:
        work = Path(tmp)
        if "throughput" in only:
            res["throughput"] = [throughput(work, r, a.requests, a.limit_s, a.per_request or [1, 16], a.offline_images)
                                 for r in (a.resolution or [32])]
        if "runtime" in only:
            res["runtime"] = runtimes(work, a.requests, a.limit_s)
        if only & {"issue", "kill"}:
            with postgres_instance() as pg:
                if "issue" in only:
                    res["issue"] = issuing(work, a.issue_count, 8, pg)
                if "kill" in only:
                    res["kill"] = kill(work, pg, a.kill_rounds)
    res["machine"]["load_avg_end"] = os.getloadavg()
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=2) + "\n")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
