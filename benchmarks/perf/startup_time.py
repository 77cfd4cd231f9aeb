"""How long the CLI takes to start: best-of-N wall seconds of `ganprint --help`, `ganprint detect --help`,
`ganprint check --help` and `python -c "import torch"`, each a fresh process, for the ganprint source tree given
(put first on PYTHONPATH, so that two checkouts can be compared on one machine in one sitting).

    python benchmarks/perf/startup_time.py --src src --repeat 5 --json benchmarks/perf/results/startup.jsonl
    python benchmarks/perf/startup_time.py --src /path/to/other/checkout/src --repeat 5

One JSON row per command: best and median wall s, and the 1-minute load average before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

COMMANDS = {
    "help": ["-m", "ganprint", "--help"],
    "detect-help": ["-m", "ganprint", "detect", "--help"],
    "check-help": ["-m", "ganprint", "check", "--help"],
    "import-torch": ["-c", "import torch"],
    "python": ["-c", "pass"],
}


def timed(argv: list[str], env: dict) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - t0


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--src", required=True, help="the ganprint source tree (the folder holding ganprint/)")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--json", default=None, help="append the rows to this JSONL file")
    a = p.parse_args(argv)
    src = Path(a.src).resolve()
    if not (src / "ganprint" / "__init__.py").is_file():
        sys.exit(f"error: --src {a.src} holds no ganprint/ package")
    env = {**os.environ, "PYTHONPATH": str(src)}
    commit = subprocess.run(["git", "-C", str(src), "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            check=False).stdout.strip() or None
    for name, args in COMMANDS.items():
        load = os.getloadavg()[0]
        walls = [timed([sys.executable, *args], env) for _ in range(a.repeat)]
        row = {"command": name, "best_s": round(min(walls), 3), "median_s": round(statistics.median(walls), 3),
               "repeat": a.repeat, "src": str(src), "commit": commit, "load_avg_1min": round(load, 2),
               "load_avg_1min_after": round(os.getloadavg()[0], 2)}
        print(json.dumps(row))
        if a.json:
            with open(a.json, "a") as f:
                f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
