"""What the service benchmark and the service tests run against: small models made in seconds on a CPU, a real
`ganprint serve` process on a free port, and a throw-away PostgreSQL server (no pytest here: the tests wrap these
in fixtures, tests/service/conftest.py and tests/service/postgres.py).

A real scalable decoder takes hours to train (benchmarks/experiments/scalable/RESULTS-scalable.md). The service only
passes images to whichever decoder it is given, so `make_models` makes a stand-in: a random shared generator, an
issued model #1 (to alice) and #2 (to bob), and a random decoder whose output layer is *fitted* (a logistic
regression on its own last features) to read #1's fingerprint from #1's generated images and the complement of it
from a fixed set of clean photos. #1's images are then attributed to #1 and those photos to nobody, through exactly
the code paths a trained decoder would take.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ganprint.core.artifacts import save_export
from ganprint.core.images import read_image
from ganprint.data.samples import write_samples
from ganprint.nets.scalable import ScalableConfig, ScalableDecoder, ScalableGenerator
from ganprint.api import generate
from ganprint.scalable.issue import issue_model

SRC = Path(__file__).resolve().parents[2] / "src"


def make_models(root: Path, resolution: int = 16, bits: int = 32, images: int = 12, photos: int = 24,
                registry: str | None = None) -> dict:
    """Write G, an issued pair, #1's images, clean photos and a fitted decoder under `root`; returns their paths."""
    torch.manual_seed(0)
    levels = [r for r in (4, 8, 16, 32, 64, 128) if r <= resolution]
    cfg = ScalableConfig(resolution=resolution, fingerprint_length=bits, z_dim=8, w_dim=32, mapping_layers=2,
                         channel_base=512, channel_max=32, modulated_res=levels)
    root.mkdir(parents=True, exist_ok=True)
    g_path = save_export(root / "G.safetensors", ScalableGenerator(cfg), "scalable-G", cfg.to_dict())
    reg = registry or str(root / "registry.sqlite")
    # alice's fingerprint starts with the six bits 111110, so its base64 value starts with '+' (a character a query
    # string reads as a space), whatever the other bits; the rest of it is random as every issue's is
    lead = "0xf8" if bits == 32 else None
    first = issue_model(g_path, reg, root / "issued", fingerprint=lead and lead + os.urandom(3).hex(), who="alice")
    second = issue_model(g_path, reg, root / "issued", who="bob")
    gen = generate(first["issued_path"], list(range(images)), root / "alice-images", device="cpu")
    clean = write_samples(root / "photos", resolution=resolution, count=photos, seed=1)
    pos = np.stack([read_image(p) for p in gen])
    neg = np.stack([read_image(p) for p in clean])
    dec_path = root / "scalable-decoder.safetensors"
    save_export(dec_path, _fit(cfg, pos, neg, torch.as_tensor(_bits(first["bits_hex"], bits))),
                "scalable-decoder", cfg.to_dict())
    return {"G": g_path, "decoder": dec_path, "registry": reg, "issued": [first, second],
            "alice_images": gen, "photos": clean, "root": root}


def _bits(hex_text: str, k: int) -> np.ndarray:
    from ganprint.core.fingerprints import parse_bits

    return parse_bits(hex_text, k).numpy()


def _fit(cfg: ScalableConfig, pos: np.ndarray, neg: np.ndarray, f: torch.Tensor) -> ScalableDecoder:
    """A random decoder whose output layer is a logistic regression on its own last features (pos vs neg),
    scaled by +-1 per bit: logits = (2f - 1) * score, so pos images read f and neg images read 1 - f."""
    from sklearn.linear_model import LogisticRegression

    dec = ScalableDecoder(cfg).eval()
    x = torch.from_numpy(np.concatenate([pos, neg])).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    feats = []
    hook = dec.net.epilogue.fc.register_forward_hook(lambda m, i, o: feats.append(o))
    with torch.no_grad():
        dec(x)
    hook.remove()
    h = feats[0].numpy()  # [N, C]
    y = np.r_[np.ones(len(pos)), np.zeros(len(neg))]
    clf = LogisticRegression(C=100.0, max_iter=5000).fit(h, y)
    w = torch.from_numpy(clf.coef_[0]).float()  # [C]
    b = float(clf.intercept_[0])
    out = dec.net.epilogue.out
    sign = 2 * f - 1  # [K]
    with torch.no_grad():
        scale = 10.0  # sharp logits; the sign is what decode_bits reads
        out.weight[cfg.z_dim:] = scale * sign[:, None] * w[None] / out.weight_gain
        out.bias[cfg.z_dim:] = scale * sign * b / out.bias_gain
    return dec


class Server:
    """A `ganprint serve` subprocess on 127.0.0.1 and a free port, with its log file."""

    def __init__(self, args: list[str], log: Path, env: dict | None = None, timeout: float = 120.0):
        import httpx  # the service extra: imported late so that the PostgreSQL helpers need none of it

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        full_env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
                    "OMP_NUM_THREADS": "1", **(env or {})}
        self._logf = open(log, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "ganprint", "serve", "--port", str(self.port), *args],
                                     stdout=self._logf, stderr=subprocess.STDOUT, env=full_env,
                                     start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"server not ready after {timeout} s:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)

    def client(self, **kw) -> httpx.Client:
        """An httpx client on this server's URL."""
        import httpx

        return httpx.Client(base_url=self.url, timeout=60, **kw)

    def stop(self, sig: int | None = None) -> None:
        """Terminate the server (or send `sig` to its process group) and wait for it."""
        if self.proc.poll() is None:
            if sig is None:
                self.proc.terminate()
            else:
                os.killpg(self.proc.pid, sig)  # the server and any uvicorn workers
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait(10)
        self._logf.close()


# --- PostgreSQL: Debian's binaries, started in a temporary folder on a free port. PostgreSQL refuses to run as root
# (CI does), so the server then runs as the `postgres` system user (or `nobody`).


def pg_bin() -> Path | None:
    """The folder of PostgreSQL's initdb and pg_ctl, or None where it is not installed."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    which = shutil.which("initdb")
    return Path(which).parent if which else None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_as() -> dict:
    """subprocess arguments that drop root to an unprivileged user (nothing when not root)."""
    if os.geteuid() != 0:
        return {}
    for name in ("postgres", "nobody"):
        try:
            pw = pwd.getpwnam(name)
        except KeyError:
            continue
        return {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}
    raise RuntimeError("running as root without a `postgres` or `nobody` user to run PostgreSQL as")


@contextlib.contextmanager
def postgres_instance():
    """Start a throw-away PostgreSQL server (as an unprivileged user when root); yields (host, port)."""
    bindir = pg_bin()
    if bindir is None:
        raise RuntimeError("PostgreSQL binaries (initdb, pg_ctl) are not installed: apt-get install postgresql")
    as_user = _run_as()
    root = Path(tempfile.mkdtemp(prefix="ganprint-pg-"))
    if as_user:
        os.chown(root, as_user["user"], as_user["group"])
    env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
    port = free_port()
    data, log = root / "data", root / "server.log"
    run = dict(check=True, capture_output=True, text=True, env=env, cwd=root, timeout=120, **as_user)
    subprocess.run([bindir / "initdb", "-D", data, "-U", "ganprint", "--auth=trust", "-E", "UTF8", "-N"], **run)
    opts = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
    subprocess.run([bindir / "pg_ctl", "-D", data, "-o", opts, "-l", log, "-w", "-t", "60", "start"], **run)
    try:
        yield "127.0.0.1", port
    finally:
        subprocess.run([bindir / "pg_ctl", "-D", data, "-m", "immediate", "-w", "stop"], **{**run, "check": False})
        shutil.rmtree(root, ignore_errors=True)


def create_database(host: str, port: int, name: str) -> str:
    """CREATE DATABASE `name` on the server; returns its URL."""
    import psycopg

    with psycopg.connect(f"postgresql://ganprint@{host}:{port}/postgres", autocommit=True) as con:
        con.execute(f"CREATE DATABASE {name}")
    return f"postgresql://ganprint@{host}:{port}/{name}"
