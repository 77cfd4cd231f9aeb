"""The Dockerfile and compose.yaml, checked without Docker: the image runs a real `ganprint serve` as a non-root
user on the CPU torch the Makefile pins; compose gives it a healthy PostgreSQL with a volume, a migrated registry,
and only settings that `ganprint serve` reads. Where a Docker daemon answers, the image is built too (slow)."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from ganprint.cli import main

yaml = pytest.importorskip("yaml", reason="the dev extra: pip install 'ganprint[dev]'")
tomllib = pytest.importorskip("tomllib", reason="Python >= 3.11 reads pyproject.toml")

ROOT = Path(__file__).resolve().parents[2]


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    return [(ln.split(None, 1)[0].upper(), ln.split(None, 1)[1] if " " in ln else "") for ln in lines]


def _command(words: list[str]):
    """The click command that `ganprint <words>` runs (failing when it names none), and its remaining words."""
    cmd = main
    while words and hasattr(cmd, "commands") and words[0] in cmd.commands:
        cmd, words = cmd.commands[words[0]], words[1:]
    assert cmd is not main, f"ganprint {' '.join(words)} is no command"
    return cmd, words


def _serve_envvars() -> set[str]:
    serve = main.commands["serve"]
    return {p.envvar for p in serve.params if isinstance(p.envvar, str)}


def test_the_dockerfile_serves_as_a_non_root_user_on_cpu_torch():
    steps = _instructions()
    kinds = [k for k, _ in steps]
    assert kinds[0] == "FROM" and steps[0][1].startswith("python:3.")
    runs = [a for k, a in steps if k == "RUN"]
    torch_pin = re.search(r'TORCH \?= (\S+)', (ROOT / "Makefile").read_text()).group(1)
    assert any(f"pip install {torch_pin} --index-url https://download.pytorch.org/whl/cpu" in r for r in runs)
    extras = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    (install,) = [r for r in runs if re.search(r'pip install "\.\[', r)]
    assert set(re.search(r"\[([a-z0-9,]+)\]", install).group(1).split(",")) <= extras and "service" in install
    for k, a in steps:  # every COPY source is in the repository
        if k == "COPY":
            assert all((ROOT / src).exists() for src in a.split()[:-1]), a
    users = [a for k, a in steps if k == "USER"]
    assert users and users[-1] not in ("root", "0") and kinds.index("USER") < kinds.index("CMD")
    entry = json.loads(dict(steps)["ENTRYPOINT"])
    cmd = json.loads(dict(steps)["CMD"])
    assert entry == ["ganprint"]
    assert _command(cmd)[0] is main.commands["serve"]
    env = dict(pair.split("=", 1) for k, a in steps if k == "ENV" for pair in shlex.split(a))
    assert {k for k in env if k.startswith("GANPRINT_")} <= _serve_envvars()
    assert env["GANPRINT_PORT"] == dict(steps)["EXPOSE"] and env["GANPRINT_HOST"] == "0.0.0.0"
    assert "/healthz" in dict(steps)["HEALTHCHECK"]
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".git" in ignored and ".venv" in ignored and "*.safetensors" in ignored


def test_compose_runs_the_service_on_a_healthy_postgres_with_a_volume():
    spec = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services, volumes = spec["services"], spec["volumes"]
    pg = services["postgres"]
    assert pg["image"] == "postgres:16" and "pg_isready" in " ".join(pg["healthcheck"]["test"])
    data = [v.split(":") for v in pg["volumes"]]
    assert ["registry", "/var/lib/postgresql/data"] in data and "registry" in volumes
    app = services["ganprint"]
    assert app["build"] == "." and _command(app["command"])[0] is main.commands["serve"]
    env = app["environment"]
    assert set(env) <= _serve_envvars(), set(env) - _serve_envvars()
    url = urlsplit(env["GANPRINT_REGISTRY"])
    assert url.scheme == "postgresql" and url.hostname in services and url.port == 5432
    assert (url.username, url.path[1:]) == (pg["environment"]["POSTGRES_USER"], pg["environment"]["POSTGRES_DB"])
    assert [p.rsplit(":", 1)[1] for p in app["ports"]] == [env["GANPRINT_PORT"]] and env["GANPRINT_HOST"] == "0.0.0.0"
    mounts = [v.split(":")[1] for v in app["volumes"]]
    for key in ("GANPRINT_SCALABLE_DECODER", "GANPRINT_MODELS_DIR"):  # every path lies in a mounted volume
        assert any(env[key].startswith(m) for m in mounts), key
    assert app["depends_on"]["postgres"]["condition"] == "service_healthy"
    migrate = services["registry-migrate"]
    assert app["depends_on"]["registry-migrate"]["condition"] == "service_completed_successfully"
    cmd, rest = _command(migrate["command"])
    assert cmd.name == "migrate" and rest == [env["GANPRINT_REGISTRY"]]


def _docker_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True).returncode == 0


@pytest.mark.slow
@pytest.mark.skipif(not _docker_answers(), reason="no Docker daemon answers here")
def test_the_image_builds_and_names_the_command():
    subprocess.run(["docker", "build", "-t", "ganprint-test", str(ROOT)], check=True)
    out = subprocess.run(["docker", "run", "--rm", "ganprint-test", "serve", "--help"], capture_output=True,
                         text=True, check=True).stdout
    assert "--scalable-decoder" in out
