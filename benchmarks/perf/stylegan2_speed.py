"""Generator forward speed (ms/image) of `ganprint.nets.stylegan2`, optionally against the same file at a git revision.

Times `Generator(z)` under no_grad at 32 and 64 px with the `small` preset's widths (z 128, 2-layer mapping, channel
base 2048, max 128) and the default ones (z 512, 8 layers, 16384/512), for the unfused (training, float64
generation) and fused (grouped-conv) modulated convolutions. With `--against REV` the file as it was at REV is
loaded beside the current one and the two are timed in alternating rounds with the same weights and inputs, so
that load from other jobs on a shared machine falls on both; the median over rounds is reported. Both the CPU time
of the process (the figure to compare on a loaded machine: other jobs stretch the wall time, much less the CPU
time) and the wall time are given.

    PYTHONPATH=src python benchmarks/perf/stylegan2_speed.py --against 6a748dc --rounds 7 --threads 1
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from ganprint.nets import stylegan2

WIDTHS = {
    "small": {"z_dim": 128, "w_dim": 128, "mapping_layers": 2, "channel_base": 2048, "channel_max": 128},
    "default": {"z_dim": 512, "w_dim": 512, "mapping_layers": 8, "channel_base": 16384, "channel_max": 512},
}
BATCH = {"small": 32, "default": 4}


def load_revision(rev: str):
    """The stylegan2 module as committed at `rev`, imported under another name beside the current one."""
    root = Path(__file__).resolve().parents[2]  # the repository (git show runs there)
    src = subprocess.run(["git", "show", f"{rev}:src/ganprint/nets/stylegan2.py"], cwd=root, check=True,
                         capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp()) / "stylegan2_at_rev.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("stylegan2_at_rev", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def build(module, res: int, width: str, state: dict | None, dtype: torch.dtype) -> torch.nn.Module:
    G = module.Generator(module.GeneratorConfig(img_resolution=res, **WIDTHS[width])).eval()
    if state is not None:  # same weights in both versions (the state-dict keys are shared)
        G.load_state_dict(state)
    return G.to(dtype)


@torch.no_grad()
def time_forward(G: torch.nn.Module, z: torch.Tensor, noise: list[torch.Tensor], fused: bool, reps: int
                 ) -> tuple[float, float]:
    """Median (CPU, wall) ms/image over `reps` forward passes after one warm-up pass."""
    G(z, noise=noise, fused=fused)
    cpu, wall = [], []
    for _ in range(reps):
        c0, w0 = time.process_time(), time.perf_counter()
        G(z, noise=noise, fused=fused)
        cpu.append((time.process_time() - c0) * 1000 / z.shape[0])
        wall.append((time.perf_counter() - w0) * 1000 / z.shape[0])
    return statistics.median(cpu), statistics.median(wall)


def run_case(versions: dict, res: int, width: str, fused: bool, rounds: int, reps: int, dtype: torch.dtype) -> dict:
    torch.manual_seed(0)
    models = {}
    for name, module in versions.items():
        first = next(iter(models.values()), None)
        models[name] = build(module, res, width, None if first is None else first.state_dict(), dtype)
    G = next(iter(models.values()))
    z, noise = stylegan2.seeded_inputs(G, list(range(BATCH[width])))
    z, noise = z.to(dtype), [n.to(dtype) for n in noise]
    per_round = {name: [] for name in models}
    order = list(models)
    for _ in range(rounds):
        for name in order:
            per_round[name].append(time_forward(models[name], z, noise, fused, reps))
        order.reverse()  # neither version always runs on the cache the other warmed
    row = {"res": res, "width": width, "fused": fused, "dtype": str(dtype).removeprefix("torch."),
           "batch": BATCH[width], "threads": torch.get_num_threads()}
    for name, times in per_round.items():
        row[f"{name}_cpu_ms_per_image"] = round(statistics.median(t[0] for t in times), 3)
        row[f"{name}_wall_ms_per_image"] = round(statistics.median(t[1] for t in times), 3)
        row[f"{name}_cpu_rounds"] = [round(t[0], 3) for t in times]
    if len(models) == 2:
        row["cpu_current_over_against"] = round(row["current_cpu_ms_per_image"] / row["against_cpu_ms_per_image"], 3)
    return row


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--against", help="git revision whose nets/stylegan2.py is timed beside the current one")
    ap.add_argument("--resolutions", type=int, nargs="+", default=[32, 64])
    ap.add_argument("--widths", nargs="+", default=list(WIDTHS), choices=list(WIDTHS))
    ap.add_argument("--rounds", type=int, default=5, help="alternating rounds per case")
    ap.add_argument("--reps", type=int, default=3, help="timed forward passes per round (median taken)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--dtype", choices=["float32", "float64"], default="float32",
                    help="float64 (fp64) is what `ganprint generate` runs by default")
    ap.add_argument("--fused", choices=["both", "yes", "no"], default="both")
    ap.add_argument("--out", type=Path, help="append the rows as JSON lines to this file")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    versions = {"current": stylegan2}
    if args.against:
        versions["against"] = load_revision(args.against)
    rows = []
    for res in args.resolutions:
        for width in args.widths:
            for fused in {"both": (False, True), "yes": (True,), "no": (False,)}[args.fused]:
                row = run_case(versions, res, width, fused, args.rounds, args.reps, getattr(torch, args.dtype))
                rows.append(row)
                line = json.dumps(row)
                sys.stdout.write(line + "\n")
                sys.stdout.flush()
                if args.out:
                    with open(args.out, "a") as f:
                        f.write(line + "\n")
    return rows


if __name__ == "__main__":
    main()
