"""The fault suite: every command against a table of hostile inputs.

Each case must end, within a time limit, with exit status 1 (a GanprintError: the command ran and refused the input)
or 2 (click refused a flag before the command ran: click's convention for usage errors), a short message on stderr
that names the flag or the path, and no traceback. Cheap cases run in-process with click's CliRunner under an alarm;
the cases that could hang or exhaust memory (FIFOs, /dev/zero), and those that must log a warning, run as real
subprocesses with a timeout.

Read-only outputs are simulated under /sys, which refuses new files even to root (tests run as root here, where
permission bits do not stop writes). A full disk is a real one: a small tmpfs, mounted by the test and filled up.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from ganprint.cli import main
from ganprint.core.artifacts import save_export
from ganprint.nets.stylegan2 import Generator, GeneratorConfig, generator_config_dict
from ganprint.scalable.issue import issue_model
from tests.conftest import write_image_folder
from tests.latent import kit as latent_kit
from tests.scalable.test_scalable import _export as scalable_export

TIME_LIMIT = 60
RO_NEW = "/sys/ganprint-fault-test"  # cannot be created, even by root
RO_DIR = "/sys/kernel"  # exists, no new file can be made in it
SRC = str(Path(__file__).resolve().parents[1] / "src")


def _rewrite_metadata(src: Path, dst: Path, **changes) -> Path:
    with safe_open(str(src), "pt") as f:
        meta = dict(f.metadata())
    meta.update(changes)
    save_file(load_file(str(src)), str(dst), metadata=meta)
    return dst


def _nan_copy(src: Path, dst: Path) -> Path:
    with safe_open(str(src), "pt") as f:
        meta = dict(f.metadata())
    state = load_file(str(src))
    name = next(k for k, v in state.items() if v.is_floating_point())
    state[name] = torch.full_like(state[name], float("nan"))
    save_file(state, str(dst), metadata=meta)
    return dst


@pytest.fixture(scope="module")
def F(tmp_path_factory, tiny_stega_model, tiny_stega_decoder):
    """Every fixture path the table refers to, by name."""
    root = tmp_path_factory.mktemp("faults")
    f: dict[str, str] = {"stega": str(tiny_stega_model), "dec": str(tiny_stega_decoder)}
    write_image_folder(root / "imgs", n=3)
    f["imgs"] = str(root / "imgs")
    torch.manual_seed(0)
    cfg = GeneratorConfig(img_resolution=16, z_dim=8, w_dim=8, mapping_layers=2, channel_base=128, channel_max=16)
    f["G"] = str(save_export(root / "G.safetensors", Generator(cfg), "stylegan2-G", generator_config_dict(cfg)))
    from ganprint.latent.autoencoder import AutoencoderConfig, build_autoencoder, export_config

    ae = AutoencoderConfig(16, (32, 32), 1, 4, 32, mid_attention=False)
    f["AE"] = str(save_export(root / "AE.safetensors", build_autoencoder(ae), "latent-autoencoder",
                              export_config(ae)))
    from ganprint.diffusion.config import NoiseConfig, UNetConfig
    from ganprint.diffusion.model import build_unet
    from ganprint.latent.model import LatentDiffusion
    from ganprint.latent.model import export_config as latent_config

    unet, noise = UNetConfig(8, (32, 32), (False, False), head_dim=32, in_channels=4), NoiseConfig()
    ldm = LatentDiffusion(build_unet(unet), build_autoencoder(ae), noise)
    f["LDM"] = str(save_export(root / "LDM.safetensors", ldm, "latent-diffusion", latent_config(unet, noise, ae)))
    (root / "sc").mkdir()
    sg, sd = scalable_export(root / "sc")
    f["SG"], f["SD"] = str(sg), str(sd)
    f["reg"] = str(root / "reg.sqlite")
    issue_model(sg, root / "reg.sqlite", root / "issued", who="test")
    latent = latent_kit.write_models(root / "latent")  # a shared latent-modulated model and its stega-decoder
    f["LM"], f["LD"] = str(latent["shared"]), str(latent["decoder"])
    (root / "afile").write_text("not a folder\n")
    f["file"] = str(root / "afile")
    f["under_file"] = str(root / "afile" / "sub")
    f["missing"] = str(root / "missing")
    f["dir"] = str(root / "imgs")
    f["out"] = str(root / "out")
    (root / "torn_run").mkdir()  # a run folder whose one training state was cut short
    dry = CliRunner().invoke(main, [*_argv(TRAIN_DIFF, f), "--outdir", str(root / "torn_run"), "--dry-run"])
    (root / "torn_run" / "config.json").write_text(dry.stdout)  # the run's config, as a run would record it
    (root / "torn_run" / "training-state-00000001.pt").write_bytes(b"PK\x03\x04 torn")
    f["torn_run"] = str(root / "torn_run")
    # Damaged models
    (root / "empty.safetensors").write_bytes(b"")
    f["m_empty"] = str(root / "empty.safetensors")
    data = Path(tiny_stega_model).read_bytes()
    (root / "trunc.safetensors").write_bytes(data[: len(data) // 2])
    f["m_trunc"] = str(root / "trunc.safetensors")
    (root / "text.safetensors").write_text("hello\n")
    f["m_text"] = str(root / "text.safetensors")
    f["m_abc"] = str(_rewrite_metadata(Path(tiny_stega_model), root / "abc.safetensors", **{"ganprint.format": "abc"}))
    f["m_cfg"] = str(_rewrite_metadata(Path(tiny_stega_model), root / "cfg.safetensors",
                                       **{"ganprint.config": "{not json"}))
    f["m_nan"] = str(_nan_copy(Path(tiny_stega_model), root / "nan.safetensors"))
    f["G_nan"] = str(_nan_copy(Path(f["G"]), root / "Gnan.safetensors"))
    f["SD_nan"] = str(_nan_copy(sd, root / "SDnan.safetensors"))
    (root / "dir.safetensors").mkdir()
    f["m_dir"] = str(root / "dir.safetensors")
    # Registries: not SQLite, and hand-edited copies of a good one
    (root / "reg_text.sqlite").write_text("not a database\n")
    f["reg_text"] = str(root / "reg_text.sqlite")
    for name, sql in _EDITED_REGISTRIES.items():
        f[name] = str(_edited_copy(root / "reg.sqlite", root / f"{name}.sqlite", sql))
    # Registry exports that must not be read: a FIFO, a device, one too large to be a registry (sparse)
    os.mkfifo(root / "dump_fifo.json")
    os.symlink("/dev/zero", root / "dump_zero.json")
    with open(root / "dump_huge.json", "wb") as fh:
        fh.truncate(3 << 30)
    for key in ("dump_fifo", "dump_zero", "dump_huge"):
        f[key] = str(root / f"{key}.json")
    os.symlink("/dev/zero", root / "fps_zero.txt")
    f["fps_zero"] = str(root / "fps_zero.txt")
    # Image folders with one bad member each, next to a good image
    for name, make in _BAD_IMAGES.items():
        d = root / f"bad_{name}"
        write_image_folder(d, n=1)
        make(d / "bad.png")
        f[f"bad_{name}"] = str(d)
    # Fingerprint lists
    (root / "fps_short.txt").write_text("img00.png 0101\n")
    f["fps_short"] = str(root / "fps_short.txt")
    os.mkfifo(root / "fps_fifo.txt")
    f["fps_fifo"] = str(root / "fps_fifo.txt")
    return f


# Hand edits of a registry: a missing table or column, a value of the wrong type, unreadable meta values.
_EDITED_REGISTRIES = {
    "reg_no_table": "DROP TABLE fingerprints",
    "reg_no_column": "ALTER TABLE fingerprints DROP COLUMN notes",
    "reg_blob_who": "UPDATE fingerprints SET who = x'00ff'",
    "reg_short_packed": "UPDATE fingerprints SET packed = x'0000000000'",
    "reg_bad_bits": "UPDATE meta SET value = 'eight' WHERE key = 'fingerprint_length'",
    "reg_bad_schema": "UPDATE meta SET value = '2x' WHERE key = 'schema_version'",
    "reg_negative_schema": "UPDATE meta SET value = '-1' WHERE key = 'schema_version'",
}


def _edited_copy(src: Path, dst: Path, sql: str) -> Path:
    with sqlite3.connect(src) as a, sqlite3.connect(dst) as b:
        a.backup(b)  # SQLite copies it (the file itself is never opened by anything else)
        b.execute(sql)
    a.close()
    b.close()
    return dst


def _truncated_png(p: Path) -> None:
    write_image_folder(p.parent / "tmp", n=1)
    data = next((p.parent / "tmp").glob("*.png")).read_bytes()
    p.write_bytes(data[: len(data) // 2])
    for q in (p.parent / "tmp").iterdir():
        q.unlink()
    (p.parent / "tmp").rmdir()


_BAD_IMAGES = {
    "fifo": lambda p: os.mkfifo(p),
    "zero": lambda p: os.symlink("/dev/zero", p),
    "urandom": lambda p: os.symlink("/dev/urandom", p),
    "empty": lambda p: p.write_bytes(b""),
    "text": lambda p: p.write_text("this is not an image\n"),
    "trunc": _truncated_png,
    "dir": lambda p: p.mkdir(),
    "dangling": lambda p: os.symlink("/nonexistent/x.png", p),
}

# (id, argv with {name} fields from F, outcome, words of which the message must contain one: 'a|b').
# Outcome 1: refused (exit 1 from ganprint, or exit 2 where click's own flag checks caught it first); 0: the command
# ends normally and warns about the bad input.
S, D = "{stega}", "{dec}"
EMBED = ["embed", "--model", S, "--outdir", "{out}/e", "--device", "cpu", "--jobs", "1"]
DETECT = ["detect", "--model", D, "--outdir", "{out}/d", "--device", "cpu", "--jobs", "1", "--fpr", "0.01",
          "--fingerprint", "0" * 8]
TRAIN = ["train", "--data", "{imgs}", "--resolution", "32", "--fingerprint-length", "8", "--steps", "2",
         "--batch-size", "2", "--device", "cpu"]
TRAIN_GAN = ["train-gan", "--data", "{imgs}", "--resolution", "32", "--preset", "small", "--kimg", "0.004",
             "--batch-size", "2", "--device", "cpu"]
TRAIN_SC = ["train-scalable", "--data", "{imgs}", "--resolution", "16", "--fingerprint-length", "8", "--modulated-res",
            "4-16", "--preset", "tiny", "--kimg", "0.004", "--device", "cpu"]
TRAIN_DIFF = ["train-diffusion", "--data", "{imgs}", "--preset", "tiny-16", "--kimg", "0.004", "--batch-size", "2",
              "--device", "cpu"]
TRAIN_AE = ["train-autoencoder", "--data", "{imgs}", "--preset", "ae-smoke", "--kimg", "0.004", "--batch-size", "2",
            "--holdout", "1", "--device", "cpu"]
TRAIN_LDM = ["train-latent", "--data", "{imgs}", "--autoencoder", "{AE}", "--preset", "ldm-smoke", "--kimg", "0.004",
             "--batch-size", "2", "--device", "cpu"]
TRAIN_LFP = ["train-latent-fingerprint", "--autoencoder", "{AE}", "--data", "{imgs}", "--preset", "lfp-smoke", "--kimg",
             "0.004", "--device", "cpu"]
GEN = ["generate", "--model", "{G}", "--seeds", "0-1", "--device", "cpu"]
PACK = ["dataset", "from-images", "--data"]
ISSUE = ["issue", "--model", "{SG}", "--registry", "{out}/r.sqlite"]
ATTR = ["attribute", "--model", "{SD}", "--registry", "{reg}", "--data", "{imgs}", "--fpr", "0.01", "--device",
        "cpu"]
EVAL = ["evaluate", "--model", D, "--data", "{imgs}", "--fingerprint", "0" * 8, "--attacks", "none", "--fpr", "0.01",
        "--device", "cpu"]

CASES = [
    # Output paths: parent is a file, cannot be created, exists read-only
    *[(f"{cmd[0]}-{flag[2:]}-{kind}", [*cmd, flag, path], 1, flag)
      for cmd, flag in ((TRAIN, "--outdir"), (TRAIN_GAN, "--outdir"), (TRAIN_SC, "--outdir"), (TRAIN_DIFF, "--outdir"),
                        (TRAIN_AE, "--outdir"), (TRAIN_LDM, "--outdir"), (GEN, "--outdir"), (ISSUE, "--models-dir"))
      for kind, path in (("under-file", "{under_file}"), ("is-file", "{file}"), ("ro-new", RO_NEW),
                         ("ro-dir", RO_DIR))],
    *[(f"{name}-outdir-{kind}", [*cmd[:cmd.index("--outdir")], *cmd[cmd.index("--outdir") + 2:], "--data", "{imgs}",
                                 "--outdir", path], 1, "--outdir")
      for name, cmd in (("embed", EMBED), ("detect", DETECT))
      for kind, path in (("under-file", "{under_file}"), ("is-file", "{file}"), ("ro-new", RO_NEW),
                         ("ro-dir", RO_DIR))],
    *[(f"evaluate-outdir-{kind}", [*EVAL, "--outdir", path], 1, "--outdir")
      for kind, path in (("under-file", "{under_file}"), ("is-file", "{file}"), ("ro-new", RO_NEW))],
    *[(f"attribute-outdir-{kind}", [*ATTR, "--outdir", path], 1, "--outdir")
      for kind, path in (("under-file", "{under_file}"), ("is-file", "{file}"), ("ro-new", RO_NEW),
                         ("ro-dir", RO_DIR))],
    # the older --out FILE, kept for one release
    *[(f"attribute-out-{kind}", [*ATTR, "--out", path], 1, "--out")
      for kind, path in (("under-file", "{under_file}/a.jsonl"), ("ro-new", RO_NEW + "/a.jsonl"),
                         ("ro-dir", RO_DIR + "/a.jsonl"))],
    ("attribute-out-is-dir", [*ATTR, "--out", "{dir}"], 1, "--out"),
    *[(f"issue-registry-{kind}", ["issue", "--model", "{SG}", "--models-dir", "{out}/i", "--registry", path], 1,
       "registry") for kind, path in (("under-file", "{under_file}/r.sqlite"), ("ro-new", RO_NEW + "/r.sqlite"),
                                      ("not-a-db", "{reg_text}"))],
    *[(f"data-samples-{kind}", ["data", "samples", "--outdir", path, "--count", "2"], 1, "--outdir")
      for kind, path in (("under-file", "{under_file}"), ("is-file", "{file}"), ("ro-new", RO_NEW))],
    *[(f"from-images-out-{kind}", [*PACK, "{imgs}", "--outdir", path, "--resolution", "16"], 1, "--outdir")
      for kind, path in (("under-file", "{under_file}"), ("is-file", "{file}"), ("ro-new", RO_NEW))],
    *[(f"export-out-{kind}", ["export", "--model", S, path], 1, "OUT")
      for kind, path in (("under-file", "{under_file}/d.safetensors"), ("ro-new", RO_NEW + "/d.safetensors"),
                         ("is-dir", "{dir}"))],
    *[(f"import-agf-out-{kind}", ["import-agf", "--encoder", "{file}", "--decoder", "{file}", path], 1, "OUT")
      for kind, path in (("under-file", "{under_file}/m.safetensors"), ("ro-new", RO_NEW + "/m.safetensors"))],
    # Missing inputs, a folder where a file is expected and the other way round
    ("embed-model-missing", [*EMBED, "--model", "{missing}", "--data", "{imgs}"], 1, "--model|missing"),
    ("embed-model-dir", [*EMBED, "--model", "{m_dir}", "--data", "{imgs}"], 1, "--model"),
    ("embed-data-missing", [*EMBED, "--data", "{missing}"], 1, "missing"),
    ("embed-data-file", [*EMBED, "--data", "{file}"], 1, "afile"),
    ("train-data-missing", [*TRAIN, "--data", "{missing}", "--outdir", "{out}/t1"], 1, "--data"),
    ("train-data-file", [*TRAIN, "--data", "{file}", "--outdir", "{out}/t2"], 1, "afile"),
    ("train-gan-data-missing", [*TRAIN_GAN, "--data", "{missing}", "--outdir", "{out}/t3"], 1, "missing"),
    ("train-scalable-data-file", [*TRAIN_SC, "--data", "{file}", "--outdir", "{out}/t4"], 1, "afile"),
    ("train-diffusion-data-missing", [*TRAIN_DIFF, "--data", "{missing}", "--outdir", "{out}/t5"], 1, "--data"),
    ("train-diffusion-data-file", [*TRAIN_DIFF, "--data", "{file}", "--outdir", "{out}/t6"], 1, "afile"),
    ("train-diffusion-state-torn", [*TRAIN_DIFF, "--outdir", "{torn_run}"], 1, "training-state-00000001.pt"),
    *[(f"train-diffusion-resume-from-{m}", [*TRAIN_DIFF, "--resume-from", "{%s}" % m, "--outdir", "{out}/dr"], 1,
       name) for m, name in (("missing", "missing"), ("m_empty", "empty"), ("G", "G.safetensors"))],
    ("train-autoencoder-data-missing", [*TRAIN_AE, "--data", "{missing}", "--outdir", "{out}/ae1"], 1, "--data"),
    ("train-autoencoder-holdout-all", [*TRAIN_AE, "--holdout", "3", "--outdir", "{out}/ae2"], 1, "--holdout"),
    ("train-autoencoder-preset-unknown", [*TRAIN_AE, "--preset", "huge", "--outdir", "{out}/ae3"], 1, "--preset"),
    ("train-autoencoder-norm-groups-indivisible", [*TRAIN_AE, "--norm-groups", "24", "--outdir", "{out}/ae4"], 1,
     "multiple of norm_groups 24"),
    ("train-autoencoder-norm-groups-and-resume", [*TRAIN_AE, "--norm-groups", "8", "--resume-from", "{G}",
                                                  "--outdir", "{out}/ae5"], 1, "--norm-groups"),
    *[(f"train-autoencoder-resume-from-{m}", [*TRAIN_AE, "--resume-from", "{%s}" % m, "--outdir", "{out}/aer"], 1,
       name) for m, name in (("missing", "missing"), ("m_empty", "empty"), ("G", "G.safetensors"),
                             ("dir", "config.json"))],
    ("train-latent-data-file", [*TRAIN_LDM, "--data", "{file}", "--outdir", "{out}/l1"], 1, "afile"),
    *[(f"train-latent-autoencoder-{m}", [*TRAIN_LDM, "--autoencoder", "{%s}" % m, "--outdir", "{out}/l2"], 1,
       name) for m, name in (("missing", "missing"), ("m_empty", "empty"), ("G", "--autoencoder"))],
    *[(f"train-latent-resume-from-{m}", [*TRAIN_LDM, "--resume-from", "{%s}" % m, "--outdir", "{out}/lr"], 1,
       name) for m, name in (("missing", "missing"), ("AE", "--resume-from"), ("dir", "config.json"))],
    ("generate-decoder-not-latent", [*GEN, "--decoder", "{AE}", "--outdir", "{out}/g0"], 1, "--decoder"),
    ("generate-model-missing", [*GEN, "--model", "{missing}", "--outdir", "{out}/g1"], 1, "missing"),
    ("generate-model-dir", [*GEN, "--model", "{m_dir}", "--outdir", "{out}/g2"], 1, "dir.safetensors"),
    ("attribute-data-missing", [*ATTR, "--data", "{missing}", "--outdir", "{out}/a1"], 1, "--data"),
    ("attribute-registry-missing", [*ATTR, "--registry", "{missing}", "--outdir", "{out}/a2"], 1,
     "--registry|missing"),
    ("attribute-registry-not-db", [*ATTR, "--registry", "{reg_text}", "--outdir", "{out}/a3"], 1, "reg_text"),
    ("registry-list-missing", ["registry", "list", "{missing}"], 1, "REGISTRY"),
    ("registry-list-not-db", ["registry", "list", "{reg_text}"], 1, "reg_text"),
    ("registry-list-dir", ["registry", "list", "{dir}"], 1, "REGISTRY"),
    ("evaluate-data-missing", [*EVAL, "--data", "{missing}", "--outdir", "{out}/v1"], 1, "missing"),
    ("from-images-src-missing", [*PACK, "{missing}", "--outdir", "{out}/p1", "--resolution", "16"],
     1, "--data|missing"),
    ("from-images-src-file", [*PACK, "{file}", "--outdir", "{out}/p2", "--resolution", "16"], 1, "afile"),
    ("export-model-missing", ["export", "--model", "{missing}", "{out}/x1.safetensors"], 1, "--model|missing"),
    ("import-agf-missing", ["import-agf", "--encoder", "{missing}", "{out}/x2.safetensors"], 1, "--encoder"),
    ("import-agf-not-torch", ["import-agf", "--encoder", "{file}", "--decoder", "{file}", "{out}/x3.safetensors"], 1,
     "afile"),
    ("detect-embedded-fifo", [*DETECT[:-2], "--data", "{imgs}", "--embedded", "{fps_fifo}"], 1, "fps_fifo"),
    ("detect-embedded-short", [*DETECT[:-2], "--data", "{imgs}", "--embedded", "{fps_short}"], 1, "fps_short"),
    # Hand-edited registries: one line naming the registry on every command that reads one
    *[(f"{cmd}-{reg}", [a.replace("REG", "{%s}" % reg) for a in argv], 1, reg)
      for reg in ("reg_text", *_EDITED_REGISTRIES)
      for cmd, argv in (("registry-list", ["registry", "list", "REG"]),
                        ("registry-export", ["registry", "export", "REG", "{out}/export-%s.json" % reg]),
                        ("attribute", [*ATTR, "--registry", "REG", "--outdir", "{out}/a-%s" % reg]),
                        ("issue", ["issue", "--model", "{SG}", "--registry", "REG", "--models-dir",
                                   "{out}/i-%s" % reg]),
                        ("serve", ["serve", "--registry", "REG", "--scalable-decoder", "{SD}", "--port", "0"]))
      if (cmd, reg) not in (("registry-list", "reg_text"), ("attribute", "reg_text"))],  # cases of their own above
    # Damaged models and models of the wrong kind
    *[(f"embed-{m}", [*EMBED, "--model", "{%s}" % m, "--data", "{imgs}"], 1, m.split("_")[1])
      for m in ("m_empty", "m_trunc", "m_text", "m_abc", "m_cfg", "m_nan")],
    *[(f"detect-{m}", [*DETECT, "--model", "{%s}" % m, "--data", "{imgs}"], 1, m.split("_")[1])
      for m in ("m_empty", "m_trunc", "m_abc", "m_nan")],
    ("embed-wrong-kind", [*EMBED, "--model", "{G}", "--data", "{imgs}"], 1, "G.safetensors"),
    ("detect-wrong-kind", [*DETECT, "--model", "{SD}", "--data", "{imgs}"], 1, "E.safetensors"),
    *[(f"generate-{m}", [*GEN, "--model", "{%s}" % m, "--outdir", "{out}/g-%s" % m], 1, m.split("_")[-1])
      for m in ("m_empty", "m_trunc", "m_abc", "m_cfg", "G_nan", "stega")],
    *[(f"attribute-{m}", [*ATTR, "--model", "{%s}" % m, "--outdir", "{out}/a-%s" % m], 1, m.split("_")[-1])
      for m in ("m_empty", "m_abc", "SD_nan", "stega")],
    *[(f"issue-{m}", ["issue", "--model", "{%s}" % m, "--registry", "{out}/ri-%s.sqlite" % m, "--models-dir",
                      "{out}/i-%s" % m], 1, m.split("_")[-1]) for m in ("m_empty", "m_cfg", "G", "dec")],
    *[(f"evaluate-{m}", [*EVAL, "--model", "{%s}" % m, "--outdir", "{out}/v-%s" % m], 1, m.split("_")[-1])
      for m in ("m_empty", "m_abc", "m_nan", "G")],
    *[(f"export-{m}", ["export", "--model", "{%s}" % m, "{out}/x-%s.safetensors" % m], 1, m.split("_")[-1])
      for m in ("m_empty", "m_cfg", "m_nan", "G")],
    # Bad image files, without --skip-bad
    *[(f"embed-image-{b}", [*EMBED, "--data", "{bad_%s}" % b, "--outdir", "{out}/eb-%s" % b], 1, "bad.png")
      for b in _BAD_IMAGES if b not in ("fifo", "zero", "urandom", "dir")],
    *[(f"detect-image-{b}", [*DETECT, "--data", "{bad_%s}" % b, "--outdir", "{out}/db-%s" % b], 1, "bad.png")
      for b in ("empty", "text", "trunc")],
    *[(f"{cmd[0]}-image-{b}", [*cmd, "--data", "{bad_%s}" % b, "--outdir", "{out}/%s-tb-%s" % (cmd[0], b)], 1,
       "bad.png") for cmd in (TRAIN, TRAIN_DIFF) for b in ("empty", "text")],
    *[(f"attribute-image-{b}", [*ATTR, "--data", "{bad_%s}" % b, "--outdir", "{out}/ab-%s" % b], 1, "bad.png")
      for b in ("empty", "text")],
    # Bad fingerprints
    *[(f"{name}-fingerprint-{kind}", [*cmd, "--fingerprint", fp], 1, "fingerprint")
      for name, cmd in (("embed", [*EMBED, "--data", "{imgs}", "--identical"]),
                        ("detect", [*DETECT, "--data", "{imgs}"]),
                        ("evaluate", [*EVAL, "--outdir", "{out}/vf"]),
                        ("generate", ["generate", "--model", "{SG}", "--outdir", "{out}/gf", "--seeds", "0"]),
                        ("issue", [*ISSUE, "--models-dir", "{out}/if"]))
      for kind, fp in (("short", "0101"), ("long", "0" * 200), ("hex-long", "0x" + "f" * 40), ("ternary", "0120" * 4),
                       ("garbage", "hello"), ("empty", ""))],
    # Unusable --fpr
    *[(f"{name}-fpr-{fpr}", [*cmd, "--fpr", fpr], 1, "--fpr")
      for name, cmd in (("detect", [*DETECT, "--data", "{imgs}"]),
                        ("attribute", [*ATTR, "--outdir", "{out}/af"]),
                        ("metrics-threshold", ["metrics", "threshold", "--fingerprint-length", "8"]))
      for fpr in ("0", "1e-300", "2", "nan", "-1") if (name, fpr) != ("metrics-threshold", "1e-300")],
    # Counts, resolutions, seeds
    *[(f"train-scalable-resolution-{r}", [*TRAIN_SC, "--resolution", r, "--outdir", "{out}/sr"], 1, "--resolution")
      for r in ("-32", "0", "24")],
    *[(f"train-resolution-{r}", [*TRAIN, "--resolution", r, "--outdir", "{out}/tr"], 1, "--resolution")
      for r in ("-32", "0", "24")],
    ("train-gan-resolution-bad", [*TRAIN_GAN, "--resolution", "-32", "--preset", "32", "--outdir", "{out}/gr"], 1,
     "--resolution"),
    *[(f"train-diffusion-resolution-{r}", [*TRAIN_DIFF, "--resolution", r, "--outdir", "{out}/dres"], 1,
       "--resolution") for r in ("-32", "0", "25")],  # 25: tiny-16's UNet halves the image once
    ("train-diffusion-preset-unknown", [*TRAIN_DIFF, "--preset", "huge", "--outdir", "{out}/dp"], 1, "--preset"),
    *[(f"train-steps-{n}", [*TRAIN, "--steps", n, "--outdir", "{out}/ts"], 1, "--steps") for n in ("-1", "0")],
    *[(f"train-batch-{n}", [*TRAIN, "--batch-size", n, "--outdir", "{out}/tb"], 1, "--batch-size")
      for n in ("-1", "0")],
    *[(f"train-gan-kimg-{n}", [*TRAIN_GAN, "--kimg", n, "--outdir", "{out}/gk"], 1, "--kimg") for n in ("-1", "nan")],
    *[(f"train-scalable-kimg-{n}", [*TRAIN_SC, "--kimg", n, "--outdir", "{out}/sk"], 1, "--kimg")
      for n in ("-1", "nan")],
    *[(f"train-diffusion-kimg-{n}", [*TRAIN_DIFF, "--kimg", n, "--outdir", "{out}/dk"], 1, "--kimg")
      for n in ("-1", "nan")],
    *[(f"train-diffusion-batch-{n}", [*TRAIN_DIFF, "--batch-size", n, "--outdir", "{out}/db"], 1, "--batch-size")
      for n in ("-1", "0")],
    *[(f"train-scalable-bits-{n}", [*TRAIN_SC, "--fingerprint-length", n, "--outdir", "{out}/sb"], 1,
       "--fingerprint-length") for n in ("0", "-4")],
    *[(f"generate-batch-{n}", [*GEN, "--batch-size", n, "--outdir", "{out}/gb"], 1, "--batch-size")
      for n in ("0", "-1")],
    *[(f"generate-seeds-{s}", [*GEN, "--seeds", s, "--outdir", "{out}/gs"], 1, "--seeds")
      for s in ("abc", "5-2", "-3", "", "1,,2", "0-99999999999")],
    ("evaluate-seeds-garbage", ["evaluate", "--model", "{SD}", "--generator", "{SG}", "--seeds", "x", "--outdir",
                                "{out}/vs", "--fpr", "0.01", "--attacks", "none", "--device", "cpu"], 1, "--seeds"),
    *[(f"data-samples-{flag}-{n}", ["data", "samples", "--outdir", "{out}/ds", flag, n], 1, flag)
      for flag in ("--count", "--resolution") for n in ("0", "-5")],
    *[(f"from-images-resolution-{n}", [*PACK, "{imgs}", "--outdir", "{out}/pr", "--resolution", n], 1,
       "--resolution") for n in ("0", "-16", "24")],
    ("from-images-limit-neg", [*PACK, "{imgs}", "--outdir", "{out}/pn", "--resolution", "16",
                               "--limit", "-1"], 1, "--limit"),
    ("metrics-pvalue-matches-over", ["metrics", "pvalue", "--fingerprint-length", "8", "--matches", "9"], 1,
     "--matches"),
    ("metrics-pvalue-bits-zero", ["metrics", "pvalue", "--fingerprint-length", "0", "--matches", "0"], 1,
     "--fingerprint-length"),
    ("metrics-threshold-keys-zero", ["metrics", "threshold", "--fingerprint-length", "8", "--keys", "0"], 1, "--keys"),
    # Devices and plain bad flags
    *[(f"{name}-device-cuda", [*cmd, "--device", "cuda"], 1, "cuda")
      for name, cmd in (("embed", [*EMBED, "--data", "{imgs}"]), ("generate", [*GEN, "--outdir", "{out}/gc"]),
                        ("train", [*TRAIN, "--outdir", "{out}/tc"]), ("attribute", [*ATTR, "--outdir", "{out}/ac"]),
                        ("train-scalable", [*TRAIN_SC, "--outdir", "{out}/sc"]),
                        ("train-diffusion", [*TRAIN_DIFF, "--outdir", "{out}/dc"]))],
    ("embed-device-bogus", [*EMBED, "--data", "{imgs}", "--device", "tpu"], 1, "--device"),
    ("demo-steps-zero", ["demo", "--outdir", "{out}/demo", "--steps", "0"], 1, "--steps"),
    ("demo-unknown-flag", ["demo", "--bogus"], 1, "--bogus"),
    ("demo-device-bogus", ["demo", "--outdir", "{out}/demo2", "--device", "tpu"], 1, "--device"),
    ("demo-outdir-under-file", ["demo", "--outdir", "{under_file}"], 1, "--outdir"),
    ("unknown-command", ["frobnicate"], 1, "frobnicate"),
    # Numbers that are NaN, infinite, huge or out of range: refused before any work (tests/cli/test_params.py tries
    # every numeric flag; these are the reported cases and their kin, run against real inputs)
    *[(f"train-lr-{v}", [*TRAIN, "--lr", v, "--outdir", "{out}/tl"], 1, "--lr") for v in ("inf", "nan", "-inf", "1e30",
                                                                                        "0")],
    *[(f"generate-trunc-{v}", [*GEN, "--trunc", v, "--outdir", "{out}/gt"], 1, "--trunc") for v in ("nan", "1e30",
                                                                                                    "inf", "-5")],
    *[(f"attribute-batch-{v}", [*ATTR, "--batch-size", v, "--outdir", "{out}/ab"], 1, "--batch-size")
      for v in ("-1", "0", "1000000000")],
    *[(f"{cmd[0]}-batch-huge", [*cmd, "--batch-size", "1000000000", "--outdir", "{out}/bh"], 1, "--batch-size")
      for cmd in (TRAIN, TRAIN_GAN, TRAIN_DIFF, GEN, EVAL, [*EMBED, "--data", "{imgs}"])],
    *[(f"{cmd[0]}-kimg-inf", [*cmd, "--kimg", "inf", "--outdir", "{out}/ki"], 1, "--kimg")
      for cmd in (TRAIN_GAN, TRAIN_SC, TRAIN_DIFF)],
    *[(f"{cmd[0]}-{flag[2:]}-{v}", [*cmd, flag, v, "--outdir", "{out}/fl"], 1, flag)
      for cmd, flag in ((TRAIN_GAN, "--snapshot-kimg"), (TRAIN_GAN, "--tick-kimg"), (TRAIN_DIFF, "--warmup-kimg"),
                        (TRAIN_DIFF, "--lr"), (TRAIN_SC, "--lr"), (TRAIN_SC, "--gate-acc"),
                        (TRAIN_SC, "--consistency-weight"), (TRAIN, "--checkpoint-minutes"), (TRAIN, "--l2-weight"),
                        (TRAIN, "--target-psnr"), (TRAIN, "--augment-skew"))
      for v in ("nan", "inf", "-1")],
    *[(f"{name}-resolution-huge", [*cmd, "--resolution", "1073741824"], 1, "--resolution")
      for name, cmd in (("train", [*TRAIN, "--outdir", "{out}/rh"]),
                        ("train-scalable", [*TRAIN_SC, "--outdir", "{out}/rh"]),
                        ("train-gan", [*TRAIN_GAN, "--outdir", "{out}/rh"]),
                        ("train-diffusion", [*TRAIN_DIFF, "--outdir", "{out}/rh"]),
                        ("embed", [*EMBED, "--data", "{imgs}"]),
                        ("from-images", [*PACK, "{imgs}", "--outdir", "{out}/rh"]),
                        ("data-samples", ["data", "samples", "--outdir", "{out}/rh"]))],
    *[(f"embed-seed-{v}", [*EMBED, "--data", "{imgs}", "--seed", v], 1, "--seed")
      for v in (str(2**63), str(10**30), "-1", "nan")],
    ("from-images-shuffle-seed-2^32", [*PACK, "{imgs}", "--outdir", "{out}/ps", "--resolution", "16",
                                       "--shuffle", "--seed", str(2**32)], 1, "--seed"),
    *[(f"generate-seeds-{n}", [*GEN, "--seeds", s, "--outdir", "{out}/gs"], 1, "--seeds")
      for n, s in (("8x10M", ",".join(f"{i * 10**7}-{(i + 1) * 10**7 - 1}" for i in range(8))),
                   ("2^63", str(2**63)), ("1M+1", "0-1000000"))],
    ("evaluate-seeds-8x10M", ["evaluate", "--model", "{SD}", "--generator", "{SG}", "--outdir", "{out}/v8", "--fpr",
                              "0.01", "--attacks", "none", "--device", "cpu", "--seeds",
                              ",".join(f"{i * 10**7}-{(i + 1) * 10**7 - 1}" for i in range(8))], 1, "--seeds"),
    *[(f"{name}-scale-search-{kind}", [*cmd, "--scale-search", v], 1, "--scale-search")
      for name, cmd in (("detect", [*DETECT, "--data", "{imgs}"]), ("evaluate", [*EVAL, "--outdir", "{out}/vss"]))
      for kind, v in (("ones", "1,1,1"), ("one", "1"), ("nan", "1,nan"), ("inf", "inf"), ("small", "1,0.1"),
                      ("many", ",".join(f"{1 - i / 1000:.3f}" for i in range(100))))],
    *[(f"evaluate-attacks-{kind}", [*EVAL, "--outdir", "{out}/va", "--attacks", v], 1, "--attacks")
      for kind, v in (("noise-inf", "noise:inf"), ("jpeg-nan", "jpeg:nan"), ("blur-huge", "blur:sigma=1e308"),
                      ("noise-neg", "noise:-1"), ("many", "noise:" + ",".join(f"{i / 1000:g}" for i in range(300))))],
    *[(f"evaluate-model-attacks-{kind}", ["evaluate", "--model", "{SD}", "--generator", "{SG}", "--seeds", "0",
                                          "--outdir", "{out}/vm", "--fpr", "0.01", "--attacks", "none", "--device",
                                          "cpu", "--model-attacks", v], 1, "--model-attacks")
      for kind, v in (("noise-huge", "weight_noise:std=1e308"), ("prune-inf", "prune:inf"),
                      ("quantize-nan", "quantize:decimals=nan"))],
    *[(f"train-augment-{kind}", [*TRAIN, "--augment", v, "--outdir", "{out}/ta"], 1, "--augment")
      for kind, v in (("noise-nan", "noise:nan"), ("noise-huge", "noise:1e308"), ("jpeg-inf", "jpeg:inf"))],
    ("train-scalable-augment-inf", [*TRAIN_SC, "--augment", "blur:inf", "--outdir", "{out}/sa"], 1, "--augment"),
    ("train-latent-fingerprint-augment-inf", [*TRAIN_LFP, "--augment", "blur:inf", "--outdir", "{out}/la"], 1,
     "--augment"),
    ("train-latent-fingerprint-autoencoder-kind", [*TRAIN_LFP, "--autoencoder", "{dec}", "--outdir", "{out}/lk"], 1,
     "--autoencoder"),
    ("train-latent-fingerprint-autoencoder-missing", [*TRAIN_LFP, "--autoencoder", "{missing}", "--outdir",
                                                      "{out}/lm"], 1, "--autoencoder"),
    ("train-latent-fingerprint-data-missing", [*TRAIN_LFP, "--data", "{missing}", "--outdir", "{out}/ld"], 1, "--data"),
    *[(f"train-latent-fingerprint-{flag[2:]}-{v}", [*TRAIN_LFP, flag, v, "--outdir", "{out}/lf"], 1, flag)
      for flag in ("--kimg", "--lr", "--img-weight", "--latent-noise") for v in ("nan", "inf", "-1")],
    *[(f"embed-jobs-{v}", [*EMBED, "--data", "{imgs}", "--jobs", v], 1, "--jobs") for v in ("0", "100000", "abc")],
    ("embed-workers-huge", [*EMBED, "--data", "{imgs}", "--workers", "100000"], 1, "--workers"),
    ("detect-workers-huge", [*DETECT, "--data", "{imgs}", "--workers", "100000"], 1, "--workers"),
    *[(f"evaluate-{flag[2:]}-{v}", [*EVAL, flag, v, "--outdir", "{out}/vk"], 1, flag)
      for flag in ("--keys", "--limit") for v in ("0", str(10**30))],
    *[(f"metrics-{n}", ["metrics", *argv], 1, flag) for n, argv, flag in (
        ("pvalue-bit-accuracy-nan", ["pvalue", "--fingerprint-length", "8", "--bit-accuracy", "nan"], "--bit-accuracy"),
        ("pvalue-bits-huge", ["pvalue", "--fingerprint-length", str(10**12), "--matches", "3"], "--fingerprint-length"),
        ("threshold-keys-huge", ["threshold", "--fingerprint-length", "8", "--keys", str(10**30)], "--keys"),
        ("fid-resolution-huge", ["fid", "{imgs}", "{imgs}", "--resolution", "1073741824"], "--resolution"))],
    *[(f"serve-{flag[2:]}-{v}", ["serve", flag, v, "--scalable-decoder", "{SD}"], 1, flag)
      for flag, v in (("--port", "-1"), ("--port", "70000"), ("--workers", "0"), ("--fpr", "nan"),
                      ("--max-files", "0"), ("--max-pixels", str(10**30)), ("--sync-seconds", "inf"),
                      ("--max-upload-mb", "nan"), ("--decode-threads", "100000"))],
    ("demo-seed-huge", ["demo", "--outdir", "{out}/demo3", "--seed", str(2**64)], 1, "--seed"),
    # Latent decoders: the same guards on issue, attribute and serve
    *[(f"issue-latent-models-dir-{kind}", ["issue", "--model", "{LM}", "--registry", "{out}/rl.sqlite", "--models-dir",
                                           path], 1, "--models-dir")
      for kind, path in (("is-file", "{file}"), ("ro-new", RO_NEW))],
    *[(f"issue-latent-fingerprint-{kind}", ["issue", "--model", "{LM}", "--registry", "{out}/rl.sqlite",
                                            "--models-dir", "{out}/il", "--fingerprint", fp], 1, "fingerprint")
      for kind, fp in (("short", "0101"), ("garbage", "hello"))],
    ("issue-latent-registry-of-other-length", ["issue", "--model", "{LM}", "--registry", "{reg}", "--models-dir",
                                               "{out}/il2"], 1, "12-bit fingerprints"),
    ("attribute-latent-registry-of-other-length", ["attribute", "--model", "{LD}", "--registry", "{reg}", "--data",
                                                   "{imgs}", "--outdir", "{out}/al"], 1, "--model / --registry"),
    ("serve-latent-base-with-scalable-decoder", ["serve", "--registry", "{out}/rs.sqlite", "--base-model", "{LM}",
                                                 "--scalable-decoder", "{SD}", "--port", "0"], 1,
     "give the decoder trained with that model"),
]

# Cases that could hang or fill the memory run as subprocesses (a hang must be stopped by the timeout).
SUBPROCESS_CASES = [
    *[(f"{name}-image-{b}", [*cmd, "--data", "{bad_%s}" % b, "--outdir", "{out}/s%s-%s" % (name, b)], 1, "bad.png")
      for name, cmd in (("embed", EMBED), ("detect", DETECT)) for b in ("fifo", "zero", "urandom")],
    *[(f"{cmd[0]}-image-{b}", [*cmd, "--data", "{bad_%s}" % b, "--outdir", "{out}/%s-st-%s" % (cmd[0], b)], 1,
       "bad.png") for cmd in (TRAIN, TRAIN_DIFF) for b in ("fifo", "zero")],
    *[(f"attribute-image-{b}", [*ATTR, "--data", "{bad_%s}" % b, "--outdir", "{out}/sa-%s" % b], 1, "bad.png")
      for b in ("fifo", "zero")],
    # evaluate measures what it can read: unreadable files are skipped with a warning naming them
    *[(f"evaluate-image-{b}", [*EVAL, "--data", "{bad_%s}" % b, "--outdir", "{out}/sv-%s" % b], 0, "bad.png")
      for b in ("fifo", "zero", "empty", "text")],
    # evaluate measures bit accuracy at any --fpr; one that no image could reach is a warning naming it
    ("evaluate-fpr-1e-300", [*EVAL, "--outdir", "{out}/vp", "--fpr", "1e-300"], 0, "--fpr 1e-300 is too small"),
    *[(f"evaluate-fpr-{fpr}", [*EVAL, "--outdir", "{out}/vp-%s" % fpr, "--fpr", fpr], 1, "--fpr")
      for fpr in ("0", "2", "nan")],
    ("from-images-fifo", [*PACK, "{bad_fifo}", "--outdir", "{out}/sp", "--resolution", "16"], 1, "bad.png"),
    ("embed-outdir-ro", [*EMBED, "--data", "{imgs}", "--outdir", RO_NEW], 1, "--outdir"),
    # Non-image inputs: a regular file of bounded size, or one line naming it
    *[(f"registry-import-{d}", ["registry", "import", "{%s}" % d, "{out}/imported-%s.sqlite" % d], 1, d)
      for d in ("dump_fifo", "dump_zero", "dump_huge")],
    ("detect-embedded-zero", [*DETECT[:-2], "--data", "{imgs}", "--embedded", "{fps_zero}"], 1, "fps_zero"),
    ("import-agf-encoder-fifo", ["import-agf", "--encoder", "{dump_fifo}", "{out}/agf.safetensors"], 1, "dump_fifo"),
]


_NEEDS_NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is there: --device cuda is no fault")


def _marks(name: str) -> list:
    return [_NEEDS_NO_CUDA] * name.endswith("-device-cuda")


def _params(cases):
    return [pytest.param(*c, id=c[0], marks=_marks(c[0])) for c in cases]


def _argv(argv: list[str], f: dict[str, str]) -> list[str]:
    return [a.format(**f) for a in argv]


def _check(code: int, stderr: str, stdout: str, want: int, words: str) -> None:
    """No traceback, and one of `words` ('a|b') named. `want` 0: the command ends normally and warns about the bad
    input; 1: it fails with exit 1 and one "Error: " line last (progress logs may come before it), or with click's
    usage message and exit 2 (Usage, Try '--help', Error)."""
    assert "Traceback" not in stderr + stdout, stderr
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert lines, f"no message (exit {code}); stdout: {stdout}"
    if want == 0:
        assert code == 0 and any(w in stderr for w in words.split("|")), f"exit {code}: {stderr}"
        return
    last = lines[-1]
    assert code in (1, 2), f"exit {code}: {stderr}"
    assert last.startswith("Error: ") and len(last) < 600, stderr
    assert sum(ln.startswith("Error: ") for ln in lines) == 1, stderr
    assert code == 1 or len(lines) <= 3, stderr
    assert any(w.lower() in last.lower() for w in words.split("|")), f"{words!r} not in: {last}"


class _Timeout(Exception):
    pass


def _alarm(signum, frame):
    raise _Timeout()


@pytest.mark.parametrize("name,argv,code,word", _params(CASES))
def test_hostile_input_in_process(F, name, argv, code, word):
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(TIME_LIMIT)
    try:
        res = CliRunner().invoke(main, _argv(argv, F))
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        frames = traceback.format_exception(*res.exc_info)
        pytest.fail(f"traceback: {''.join(frames[-3:])}")
    _check(res.exit_code, res.stderr, res.stdout, code, word)


def _run_case(argv: list[str]) -> subprocess.CompletedProcess | None:
    """`ganprint argv` in a fresh process; None when it runs past TIME_LIMIT."""
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    try:
        return subprocess.run([sys.executable, "-m", "ganprint", *argv], capture_output=True, text=True,
                              timeout=TIME_LIMIT, env=env, start_new_session=True)
    except subprocess.TimeoutExpired:
        return None


@pytest.fixture(scope="module")
def subprocess_runs(request, F) -> dict:
    """{case name: its finished process} for the cases of SUBPROCESS_CASES this session runs, started a few at a
    time: each is mostly a Python and torch start-up, which a free core does beside another (the cases write to
    outdirs of their own)."""
    wanted = {item.callspec.params["name"] for item in request.session.items
              if getattr(item, "originalname", None) == "test_hostile_input_subprocess"}
    cases = {name: _argv(argv, F) for name, argv, _, _ in SUBPROCESS_CASES if name in wanted}
    workers = max(1, min(4, len(os.sched_getaffinity(0))))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return dict(zip(cases, pool.map(_run_case, cases.values())))


@pytest.mark.parametrize("name,argv,code,word", _params(SUBPROCESS_CASES))
def test_hostile_input_subprocess(subprocess_runs, name, argv, code, word):
    proc = subprocess_runs[name]
    if proc is None:
        pytest.fail(f"{name} did not end within {TIME_LIMIT} s")
    _check(proc.returncode, proc.stderr, proc.stdout, code, word)


# --- An output is never an input ------------------------------------------------------------------------------------
# Every command with path inputs and outputs: for each (output, input) pair the command is run with the output made
# the input, put inside it, made to hold it, reached through a symbolic link and through '..' (and a hard link for
# two files), on a fresh copy of the input. It must refuse with exit 1 and one line naming both flags, and leave the
# input's bytes as they were. A new command must get cases here or an exemption with its reason
# (test_every_command_has_a_guard_case_or_an_exemption).
# (command, output flag, input flag, fixture copied as the input, output kind, argv: {IN}, {OUT}, {TMP}, F's names)
_E = ["--device", "cpu", "--jobs", "1"]
_EMB = ["embed", "--model", "{stega}", "--data", "{imgs}", "--outdir", "{TMP}/e", *_E]
_DET = ["detect", "--model", "{dec}", "--data", "{imgs}", "--outdir", "{TMP}/d", "--fpr", "0.01", "--fingerprint",
        "0" * 8, *_E]
_EV = [*EVAL, "--outdir", "{TMP}/v"]
_ADV = ["adversary", "--model", "{dec}", "--data", "{imgs}", "--clean", "{imgs}", "--fingerprint", "0" * 8,
        "--adversary", "average:n=1:psnr=40", "--fpr", "0.01", "--outdir", "{TMP}/adv"]
_ATT = [*ATTR, "--outdir", "{TMP}/a"]
_ATT_OLD = [*ATTR, "--out", "{TMP}/a.jsonl"]  # the older --out FILE, kept for one release
_SERVE = ["serve", "--registry", "{reg}", "--scalable-decoder", "{SD}", "--base-model", "{SG}", "--port", "0"]
_FID = ["metrics", "fid", "{imgs}", "{imgs}", "--resolution", "16", "--inception", "{file}", "--device", "cpu"]
GUARD_CASES = [
    *[(cmd[0], "--outdir", "--data", "imgs", "dir", [*cmd, "--data", "{IN}", "--outdir", "{OUT}"])
      for cmd in (TRAIN, TRAIN_GAN, TRAIN_SC, TRAIN_DIFF, TRAIN_AE, TRAIN_LDM, TRAIN_LFP)],
    ("train-autoencoder", "--outdir", "--resume-from", "AE", "dir", [*TRAIN_AE, "--resume-from", "{IN}", "--outdir",
                                                                     "{OUT}"]),
    ("train-latent", "--outdir", "--autoencoder", "AE", "dir", [*TRAIN_LDM, "--autoencoder", "{IN}", "--outdir",
                                                                "{OUT}"]),
    ("train-latent-fingerprint", "--outdir", "--autoencoder", "AE", "dir", [*TRAIN_LFP, "--autoencoder", "{IN}",
                                                                              "--outdir", "{OUT}"]),
    ("train-diffusion", "--outdir", "--resume-from", "G", "dir", [*TRAIN_DIFF, "--resume-from", "{IN}", "--outdir",
                                                                  "{OUT}"]),
    ("embed", "--outdir", "--data", "imgs", "dir", [*_EMB, "--data", "{IN}", "--outdir", "{OUT}"]),
    ("embed", "--outdir", "--model", "stega", "dir", [*_EMB, "--model", "{IN}", "--outdir", "{OUT}"]),
    ("embed", "--registry", "--model", "stega", "file", [*_EMB, "--model", "{IN}", "--identical", "--name", "x",
                                                         "--registry", "{OUT}"]),
    ("embed", "--registry", "--data", "imgs", "file", [*_EMB, "--data", "{IN}", "--identical", "--name", "x",
                                                       "--registry", "{OUT}"]),
    ("detect", "--outdir", "--data", "imgs", "dir", [*_DET, "--data", "{IN}", "--outdir", "{OUT}"]),
    ("detect", "--outdir", "--model", "dec", "dir", [*_DET, "--model", "{IN}", "--outdir", "{OUT}"]),
    ("detect", "--outdir", "--embedded", "fps_short", "dir", [*_DET[:-6], *_E, "--embedded", "{IN}", "--outdir",
                                                              "{OUT}"]),  # _DET without --fingerprint
    ("generate", "--outdir", "--model", "G", "dir", [*GEN, "--model", "{IN}", "--outdir", "{OUT}"]),
    ("generate", "--outdir", "--decoder", "AE", "dir", ["generate", "--model", "{LDM}", "--seeds", "0", "--steps", "1",
                                                        "--device", "cpu", "--decoder", "{IN}", "--outdir", "{OUT}"]),
    ("evaluate", "--outdir", "--data", "imgs", "dir", [*_EV, "--data", "{IN}", "--outdir", "{OUT}"]),
    ("evaluate", "--outdir", "--model", "dec", "dir", [*_EV, "--model", "{IN}", "--outdir", "{OUT}"]),
    ("evaluate", "--outdir", "--clean", "imgs", "dir", [*_EV, "--clean", "{IN}", "--outdir", "{OUT}"]),
    ("evaluate", "--outdir", "--embedded", "fps_short", "dir", [*_EV, "--embedded", "{IN}", "--outdir", "{OUT}"]),
    ("evaluate", "--outdir", "--generator", "SG", "dir", ["evaluate", "--model", "{SD}", "--generator", "{IN}",
                                                          "--seeds", "0", "--attacks", "none", "--outdir", "{OUT}"]),
    ("adversary", "--outdir", "--data", "imgs", "dir", [*_ADV, "--data", "{IN}", "--outdir", "{OUT}"]),
    ("adversary", "--outdir", "--clean", "imgs", "dir", [*_ADV, "--clean", "{IN}", "--outdir", "{OUT}"]),
    ("adversary", "--outdir", "--model", "dec", "dir", [*_ADV, "--model", "{IN}", "--outdir", "{OUT}"]),
    ("attribute", "--outdir", "--registry", "reg", "dir", [*_ATT, "--registry", "{IN}", "--outdir", "{OUT}"]),
    ("attribute", "--outdir", "--model", "SD", "dir", [*_ATT, "--model", "{IN}", "--outdir", "{OUT}"]),
    ("attribute", "--outdir", "--data", "imgs", "dir", [*_ATT, "--data", "{IN}", "--outdir", "{OUT}"]),
    ("attribute", "--out", "--registry", "reg", "file", [*_ATT_OLD, "--registry", "{IN}", "--out", "{OUT}"]),
    ("attribute", "--out", "--model", "SD", "file", [*_ATT_OLD, "--model", "{IN}", "--out", "{OUT}"]),
    ("attribute", "--out", "--data", "imgs", "file", [*_ATT_OLD, "--data", "{IN}", "--out", "{OUT}"]),
    ("issue", "--models-dir", "--model", "SG", "dir", [*ISSUE, "--model", "{IN}", "--models-dir", "{OUT}"]),
    ("issue", "--models-dir", "--registry", "reg", "dir", [*ISSUE, "--registry", "{IN}", "--models-dir", "{OUT}"]),
    ("issue", "--registry", "--model", "SG", "file", [*ISSUE, "--model", "{IN}", "--models-dir", "{TMP}/i",
                                                      "--registry", "{OUT}"]),
    ("export", "OUT", "--model", "stega", "file", ["export", "--model", "{IN}", "{OUT}"]),
    ("import-agf", "OUT", "--encoder", "file", "file", ["import-agf", "--encoder", "{IN}", "--decoder", "{file}",
                                                        "{OUT}"]),
    ("import-agf", "OUT", "--decoder", "file", "file", ["import-agf", "--decoder", "{IN}", "{OUT}"]),
    ("registry export", "OUT", "REGISTRY", "reg", "file", ["registry", "export", "{IN}", "{OUT}"]),
    ("export-diffusers", "OUT", "--model", "stega", "dir", ["export-diffusers", "--model", "{IN}", "--decoder",
                                                            "{dec}", "{OUT}"]),
    ("export-diffusers", "OUT", "--decoder", "dec", "dir", ["export-diffusers", "--model", "{stega}", "--decoder",
                                                            "{IN}", "{OUT}"]),
    ("registry import", "REGISTRY", "DUMP", "file", "file", ["registry", "import", "{IN}", "{OUT}"]),
    ("registry add-dataset", "REGISTRY", "--model", "stega", "file",
     ["registry", "add-dataset", "{OUT}", "--name", "x", "--model", "{IN}", "--fingerprint", "0" * 8]),
    ("data samples", "--outdir", "--photos", "imgs", "dir",
     ["data", "samples", "--outdir", "{OUT}", "--photos", "{IN}", "--count", "2"]),
    *[(f"dataset {sub}", "--outdir", "--data", "imgs", "dir",
       ["dataset", sub, "--data", "{IN}", "--outdir", "{OUT}", *extra])
      for sub, extra in (("celeba", ["--limit", "1"]), ("from-images", ["--resolution", "16"]))],
    ("metrics fid", "--out", "DATA_A", "imgs", "file", ["metrics", "fid", "{IN}", *_FID[3:], "--out", "{OUT}"]),
    ("metrics fid", "--cache-dir", "DATA_B", "imgs", "dir", [*_FID[:3], "{IN}", *_FID[4:], "--cache-dir", "{OUT}"]),
    ("metrics fid", "--out", "--inception", "file", "file", [*_FID, "--inception", "{IN}", "--out", "{OUT}"]),
    ("serve", "--models-dir", "--registry", "reg", "dir", [*_SERVE, "--registry", "{IN}", "--models-dir", "{OUT}"]),
    ("serve", "--models-dir", "--base-model", "SG", "dir", [*_SERVE, "--base-model", "{IN}", "--models-dir", "{OUT}"]),
    ("serve", "--models-dir", "--scalable-decoder", "SD", "dir", [*_SERVE, "--scalable-decoder", "{IN}",
                                                                  "--models-dir", "{OUT}"]),
    ("serve", "--models-dir", "--stega-decoder", "dec", "dir", [*_SERVE, "--stega-decoder", "{IN}", "--models-dir",
                                                                "{OUT}"]),
]
# Commands without both a path input and a path output, and why.
GUARD_EXEMPT = {
    "demo": "reads no path: its photos come from installed packages (its --outdir is in FOREIGN_CASES)",
    "registry list": "reads REGISTRY and writes nothing",
    "registry repair": "settles, under the registry's lock, only files named for that registry in --models-dir",
    "token list": "reads --registry and writes nothing",
    "token revoke": "its one path, --registry, is updated in place: it is the input and the output",
    "registry migrate": "its one path, REGISTRY, is updated in place: it is the input and the output",
    "token create": "its one path, --registry, is updated in place: it is the input and the output",
    "metrics threshold": "no file", "metrics pvalue": "no file", "metrics attacks": "no file",
    "check": "writes no file: its rows go to stdout",
    "sign-c2pa": "needs a C2PA signing certificate chain, made by tests/provenance/certs.py where c2pa-python is "
                 "installed: tests/provenance/test_c2pa.py refuses an --outdir inside, holding or equal to --images",
}
# Every output that ganprint may find already there: a file, or a folder holding a file ganprint did not write.
# (command, output flag, kind, argv with {OUT}, words of which the message must hold one)
FOREIGN_CASES = [
    *[(cmd[0], "--outdir", "dir", [*cmd, "--outdir", "{OUT}"], "did not write")
      for cmd in (TRAIN, TRAIN_GAN, TRAIN_SC, TRAIN_DIFF, TRAIN_AE, TRAIN_LDM, TRAIN_LFP, GEN, _EMB, _DET, _EV, _ADV,
                  ["demo", "--steps", "1"])],
    ("data samples", "--outdir", "dir", ["data", "samples", "--outdir", "{OUT}", "--count", "2"], "did not write"),
    *[(f"dataset {sub}", "--outdir", "dir", ["dataset", sub, "--data", "{imgs}", "--outdir", "{OUT}", *extra],
       "not empty")
      for sub, extra in (("celeba", ["--limit", "1"]), ("from-images", ["--resolution", "16"]))],
    ("attribute", "--outdir", "dir", [*_ATT, "--outdir", "{OUT}"], "did not write"),
    ("attribute", "--out", "file", [*_ATT_OLD, "--out", "{OUT}"], "--overwrite"),
    ("export", "OUT", "file", ["export", "--model", "{stega}", "{OUT}"], "--overwrite"),
    ("import-agf", "OUT", "file", ["import-agf", "--decoder", "{file}", "{OUT}"], "--overwrite"),
    ("registry export", "OUT", "file", ["registry", "export", "{reg}", "{OUT}"], "--overwrite"),
    ("export-diffusers", "OUT", "dir", ["export-diffusers", "--model", "{stega}", "--decoder", "{dec}", "{OUT}"],
     "--overwrite"),
    ("metrics fid", "--out", "file", [*_FID, "--out", "{OUT}"], "--overwrite"),
]
FOREIGN_EXEMPT = {
    "issue": "--models-dir is a shared folder of issued models (also serve's --models-dir): every issued file gets a "
             "name no other file has, and --registry is updated in place",
    "serve": "--models-dir: as issue's",
    "registry import": "REGISTRY is a registry that must hold nothing yet (refused otherwise, by the registry)",
    "registry add-dataset": "REGISTRY is updated in place",
    **{c: r for c, r in GUARD_EXEMPT.items() if c != "demo"},
}
_VARIANTS = {("dir", "dir"): ("same", "inside", "contains", "symlink", "dotdot"),
             ("dir", "file"): ("contains", "symlink", "dotdot"),
             ("file", "file"): ("same", "symlink", "dotdot", "hardlink"),
             ("file", "dir"): ("inside", "symlink", "dotdot")}


def _guard_params() -> list:
    return list(_guard_variants())


def _guard_variants():
    for cmd, oflag, iflag, src, okind, argv in GUARD_CASES:
        ikind = "dir" if src == "imgs" else "file"
        for v in _VARIANTS[(okind, ikind)]:
            yield pytest.param(cmd, oflag, iflag, src, okind, argv, v, id=f"{cmd}:{oflag}:{iflag}:{v}")


def _leaf_commands(group, prefix=()) -> list[str]:
    out = []
    for name, c in group.commands.items():
        out += _leaf_commands(c, (*prefix, name)) if hasattr(c, "commands") else [" ".join((*prefix, name))]
    return out


def test_every_command_has_a_guard_case_or_an_exemption():
    commands = set(_leaf_commands(main))
    guarded, foreign = {c[0] for c in GUARD_CASES}, {c[0] for c in FOREIGN_CASES}
    assert commands - guarded - set(GUARD_EXEMPT) == set(), "commands without an output-is-never-an-input case"
    assert commands - foreign - set(FOREIGN_EXEMPT) == set(), "commands without an existing-output case"
    assert not guarded & set(GUARD_EXEMPT) and not foreign & set(FOREIGN_EXEMPT)
    assert set(GUARD_EXEMPT) | set(FOREIGN_EXEMPT) <= commands  # no stale exemption


def _tree_digest(path: Path) -> dict[str, str]:
    import hashlib

    if path.is_file():
        return {"": hashlib.sha256(path.read_bytes()).hexdigest()}
    return {p.relative_to(path).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(path.rglob("*"))}


def _place(tmp: Path, src: str, okind: str, variant: str) -> tuple[Path, Path]:
    """A fresh copy of `src` as the input (tmp/box/<name>, alone in box), and the output path of `variant`."""
    import shutil

    box = tmp / "box"
    box.mkdir()
    inp = box / Path(src).name
    (shutil.copytree if Path(src).is_dir() else shutil.copy2)(src, inp)
    (tmp / "up").mkdir()
    leaf = "out" if okind == "dir" else "out.x"
    is_dir = inp.is_dir()
    if variant == "same":
        return inp, inp
    if variant == "inside":
        return inp, inp / leaf
    if variant == "contains":
        return inp, box
    if variant == "symlink":
        os.symlink(inp if (is_dir or okind == "file") else box, tmp / "link")
        return inp, tmp / "link" / leaf if (is_dir and okind == "file") else tmp / "link"
    if variant == "dotdot":
        target = inp if (is_dir or okind == "file") else box
        return inp, tmp / "up" / ".." / target.relative_to(tmp) / (leaf if is_dir and okind == "file" else "")
    os.link(inp, tmp / "hard")  # hardlink
    return inp, tmp / "hard"




# --- a full disk --------------------------------------------------------------------------------------------------
# A real full disk: a small tmpfs (tests run as root here), filled up with a filler file before the command runs, so
# that its writes fail with ENOSPC (a memmap store would die of SIGBUS). Then the filler is deleted and the same
# command must finish.

DISK_SIZE = 16 << 20


@pytest.fixture
def small_disk(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK_SIZE}", "tmpfs", str(disk)], capture_output=True,
                       text=True)
    if r.returncode:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {r.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def _fill(disk: Path, leave: int) -> Path:
    """Take all but `leave` bytes of the disk's free space."""
    st = os.statvfs(disk)
    filler = disk / "filler"
    with open(filler, "wb") as f:
        f.truncate(0)
        f.write(b"\0" * max(0, st.f_bavail * st.f_frsize - leave))
    return filler


@pytest.fixture(scope="module")
def agf_checkpoints(tmp_path_factory):
    from tests.artificial.test_agf_import import original_state_dicts

    root = tmp_path_factory.mktemp("agf")
    enc, dec = original_state_dicts(8, 32)
    torch.save(enc, root / "E.pth")
    torch.save(dec, root / "D.pth")
    return {"E": str(root / "E.pth"), "D": str(root / "D.pth")}


# (id, argv, bytes left free): each command's first write that does not fit is a different kind of file.
FULL_DISK = [
    ("export", ["export", "--model", S, "{disk}/dec.safetensors"], 4096),
    ("import-agf", ["import-agf", "--encoder", "{E}", "--decoder", "{D}", "{disk}/m.safetensors"], 4096),
    ("issue", ["issue", "--model", "{SG}", "--registry", "{out}/full-disk.sqlite", "--models-dir", "{disk}/issued"],
     4096),
    ("generate", ["generate", "--model", "{G}", "--seeds", "0-31", "--device", "cpu", "--outdir", "{disk}/g"], 16384),
    ("data-samples", ["data", "samples", "--outdir", "{disk}/s", "--count", "40", "--resolution", "16"], 16384),
    ("evaluate", [*EVAL, "--outdir", "{disk}/e"], 16384),
    ("from-images", [*PACK, "{imgs}", "--outdir", "{disk}/p", "--resolution", "64"], 8192),
]


class _Ran:
    def __init__(self, code: int, stdout: str, stderr: str):
        self.exit_code, self.stdout, self.stderr, self.output = code, stdout, stderr, stdout + stderr


def _invoke(argv, subprocess_: bool = False):
    """Run the CLI in-process, or (where a regression could kill the process, e.g. by SIGBUS) in a subprocess."""
    if subprocess_:
        env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
        p = subprocess.run([sys.executable, "-m", "ganprint", *argv], capture_output=True, text=True,
                           timeout=TIME_LIMIT, env=env)
        return _Ran(p.returncode, p.stdout, p.stderr)
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(TIME_LIMIT)
    try:
        res = CliRunner().invoke(main, argv)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        pytest.fail(f"traceback: {''.join(traceback.format_exception(*res.exc_info)[-3:])}")
    return res


def _one_error_line(res) -> str:
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert res.exit_code == 1 and "Traceback" not in res.output, res.output
    assert lines and lines[-1].startswith("Error: ") and sum(ln.startswith("Error: ") for ln in lines) == 1, res.stderr
    return lines[-1]


@pytest.mark.parametrize("cmd,oflag,iflag,src,okind,argv,variant", _guard_params())
def test_an_output_is_never_an_input(F, tmp_path, cmd, oflag, iflag, src, okind, argv, variant):
    inp, out = _place(tmp_path, F[src], okind, variant)
    before = _tree_digest(inp)
    res = _invoke([a.format(**F, IN=inp, OUT=out, TMP=tmp_path) for a in argv])
    last = _one_error_line(res)
    assert f"{oflag} " in last and f"{iflag} " in last, last  # both flags named, each with its path
    assert _tree_digest(inp) == before  # the input's bytes are untouched (and nothing was added to a folder)


@pytest.mark.parametrize("cmd,oflag,kind,argv,words", [pytest.param(*c, id=f"{c[0]}:{c[1]}") for c in FOREIGN_CASES])
def test_an_existing_output_ganprint_did_not_write_is_never_replaced(F, tmp_path, cmd, oflag, kind, argv, words):
    out = tmp_path / "existing"
    mine = out / "notes.txt" if kind == "dir" else out
    mine.parent.mkdir(parents=True, exist_ok=True)
    mine.write_text("the user's own file\n")
    res = _invoke([a.format(**F, OUT=out, TMP=tmp_path) for a in argv])
    last = _one_error_line(res)
    assert f"{oflag} " in last and any(w in last for w in words.split("|")), last
    assert mine.read_text() == "the user's own file\n" and sorted(p.name for p in out.parent.iterdir()) == ["existing"]
    assert kind == "file" or sorted(p.name for p in out.iterdir()) == ["notes.txt"]


# --- Resume identity: every setting that changes an output byte -----------------------------------------------------
# A command is run, then run again into the same folder with one such setting changed: refused with one line naming
# it, and nothing in the folder changed (outputs of two settings are never mixed under one record).
# (id, argv with {OUT}, flag named in the refusal, first value, second value)
RESUME_CASES = [
    ("embed-precision", [*_EMB, "--outdir", "{OUT}"], "--precision", "fp32", "bf16"),
    ("detect-precision", [*_DET, "--outdir", "{OUT}"], "--precision", "fp32", "bf16"),
    ("attribute-fpr", [*ATTR, "--outdir", "{OUT}"], "--fpr", "0.01", "0.05"),
    ("generate-trunc", [*GEN, "--outdir", "{OUT}"], "--trunc", "1", "0.5"),
    ("generate-precision", [*GEN, "--outdir", "{OUT}"], "--precision", "fp64", "fp32"),
    ("generate-scalable-fingerprint", ["generate", "--model", "{SG}", "--seeds", "0", "--device", "cpu", "--outdir",
                                       "{OUT}"], "--fingerprint", "0x00f", "0xf00"),
    ("evaluate-seed", [*_EV, "--attacks", "noise", "--outdir", "{OUT}"], "--seed", "0", "1"),
    ("data-samples-seed", ["data", "samples", "--outdir", "{OUT}", "--count", "2", "--resolution", "16"], "--seed", "0",
     "1"),
    ("train-seed", [*TRAIN, "--steps", "1", "--outdir", "{OUT}"], "seed", "0", "1"),
]


@pytest.mark.parametrize("name,argv,flag,first,second", [pytest.param(*c, id=c[0]) for c in RESUME_CASES])
def test_another_setting_that_changes_bytes_is_refused_on_resume(F, tmp_path, name, argv, flag, first, second):
    out = tmp_path / "out"
    base = [a.format(**F, OUT=out, TMP=tmp_path) for a in argv]
    opt = flag if flag.startswith("--") else f"--{flag}"
    res = _invoke([*base, opt, first])
    assert res.exit_code == 0, res.output
    before = _tree_digest(out)
    last = _one_error_line(_invoke([*base, opt, second]))
    assert f"{flag}: " in last and "different config" in last, last
    assert _tree_digest(out) == before
    assert _invoke([*base, opt, first]).exit_code == 0  # the same settings resume (or rewrite the same bytes)


def test_a_grid_is_not_a_sample_for_detect_or_attribute(F, tmp_path):
    """`generate --grid` writes grid.png beside the samples; its folder's record marks it as not data, so detect
    and attribute read only the generated images (the README's example runs detect on that folder)."""
    gen = tmp_path / "gen"
    assert _invoke(["generate", "--model", F["SG"], "--seeds", "0-3", "--grid", "--device", "cpu", "--outdir",
                    str(gen)]).exit_code == 0
    assert (gen / "grid.png").is_file()
    seeds = [f"seed{s:06d}.png" for s in range(4)]
    assert _invoke(["detect", "--model", F["dec"], "--data", str(gen), "--outdir", str(tmp_path / "d"),
                    *_E]).exit_code == 0
    rows = [json.loads(x) for x in (tmp_path / "d" / "detections.jsonl").read_text().splitlines()]
    assert [r["name"] for r in rows] == seeds
    assert _invoke(["attribute", "--model", F["SD"], "--registry", F["reg"], "--data", str(gen), "--outdir",
                    str(tmp_path / "a"), "--fpr", "0.01", "--device", "cpu"]).exit_code == 0
    rows = [json.loads(x) for x in (tmp_path / "a" / "attributions.jsonl").read_text().splitlines()]
    assert [r["file"] for r in rows] == seeds


@pytest.mark.parametrize("name,argv,leave", FULL_DISK, ids=[c[0] for c in FULL_DISK])
def test_full_disk_is_one_line_naming_the_file_and_the_rerun_works(F, agf_checkpoints, small_disk, name, argv, leave):
    argv = _argv(argv, {**F, **agf_checkpoints, "disk": str(small_disk)})
    filler = _fill(small_disk, leave)
    res = _invoke(argv, subprocess_=name == "from-images")  # a memmap store on a full disk is a SIGBUS
    _check(res.exit_code, res.stderr, res.stdout, 1, str(small_disk))
    last = res.stderr.strip().splitlines()[-1]
    assert res.exit_code == 1 and ("disk is full" in last or "free" in last), last
    assert not list(small_disk.rglob("*.tmp")), "temporaries left behind"
    filler.unlink()
    again = _invoke(argv)
    if name == "data-samples" and again.exit_code == 1 and "ganprint did not write" in again.output:
        pytest.xfail("data samples refuses to resume after an interrupted run until the i20-outputs branch "
                     "(issue 20: 'data samples' resume) is merged")
    assert again.exit_code == 0, again.output


def test_a_disk_that_fills_while_packing_is_one_line_naming_out(small_disk):
    """The free-space check passed, then another writer took the space: the write fails (no SIGBUS, no traceback)
    and nothing half-written is left."""
    from ganprint.data.packed import PackedDatasetError, write_packed

    def images():
        for i in range(64):
            if i == 1:
                _fill(small_disk, 0)  # another writer
            yield np.full((128, 128, 3), i, np.uint8)

    out = small_disk / "packed"
    with pytest.raises(PackedDatasetError, match=f"cannot write {out}: No space left on device"):
        write_packed(out, images(), 64, 128, source="test", names=[f"{i}.png" for i in range(64)], shuffle=False,
                     seed=None)
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler"]
