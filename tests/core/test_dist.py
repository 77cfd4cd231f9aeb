"""ganprint.core.dist under torchrun (2 CPU processes, gloo): cleanup() ends the process group and its threads."""

import os
import subprocess
import sys
import textwrap

import pytest

# The first optimiser imports torch._dynamo, which imports torch.distributed.nn.functional: after init(), as in every
# trainer. Gloo's worker threads still running at interpreter exit made a rank abort now and then.
SCRIPT = textwrap.dedent("""
    import os, torch
    from ganprint.core import dist
    dist.init(torch.device("cpu"))
    torch.optim.Adam([torch.nn.Parameter(torch.ones(2))])
    total = dist.all_reduce_mean(torch.full((4,), float(dist.get_rank())))
    assert total.tolist() == [0.5] * 4, total
    dist.cleanup()
    names = [open(f"/proc/self/task/{t}/comm").read().strip() for t in os.listdir("/proc/self/task")]
    assert not [n for n in names if "gloo" in n], names  # pt_gloo_runloop, gloo_tcp_loop
    print("rank", dist.get_rank(), "left alone", flush=True)
""")


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="thread names are read from /proc (Linux)")
def test_cleanup_stops_the_gloo_threads(tmp_path):
    script = tmp_path / "cleanup_script.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script)]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert res.stdout.count("left alone") == 2, res.stdout
    assert "still referenced" not in res.stderr
