"""tools/system-deps.sh says which Debian packages it installs, and why, before it runs apt-get."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[2] / "tools" / "system-deps.sh"


@pytest.mark.skipif(os.geteuid() != 0, reason="the script takes the sudo path when not root")
def test_it_names_each_missing_package_and_why_before_apt_get(tmp_path):
    # A PATH with the tools the script calls but no chromium and no ldconfig (so chromium, libGL and GLib count as
    # missing), and an apt-get that records its calls instead of installing (the real one would change this machine).
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    for tool in ("grep", "id", "cat"):
        os.symlink(shutil.which(tool), bin_ / tool)
    calls = tmp_path / "calls"
    (bin_ / "apt-get").write_text(f'#!/bin/bash\necho "apt-get $*" >> {calls}\n')
    (bin_ / "apt-get").chmod(0o755)
    r = subprocess.run([shutil.which("bash"), str(SCRIPT)], capture_output=True, text=True, timeout=60,
                       env={"PATH": str(bin_)})
    assert r.returncode == 0, r.stderr
    said = r.stderr
    assert "chromium: the web page tests drive a headless chromium" in said
    assert "libgl1: opencv-python" in said and "libglib2.0-0: opencv-python" in said
    assert "curl: the docs' service examples" in said and "util-linux: unshare and nsenter" in said
    # the stand-in PATH has no curl, nsenter or ip either, so the docs test's packages count as missing too
    want = "chromium libgl1 libglib2.0-0 curl util-linux iproute2"
    assert "running: apt-get update && apt-get install -y" in said and want in said
    done = calls.read_text().splitlines()
    assert done[0] == "apt-get update -qq" and done[1].endswith(want)
