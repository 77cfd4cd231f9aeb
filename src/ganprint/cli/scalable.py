"""Scalable fingerprinting commands: `train-scalable`, `issue`, `attribute`, `registry list`."""

from __future__ import annotations

import json

import click

from ganprint.api import issue
from ganprint.artificial.register import register_dataset
from ganprint.cli import params as P
from ganprint.core.threat import P_VALUE_COVERS
from ganprint.registry.issued import repair_issued
from ganprint.registry.store import Registry, export_registry, import_registry, migrate
from ganprint.scalable.attribute import AttributeSpec, attribute_images
from ganprint.scalable.config import PRESETS, resolve_config
from ganprint.scalable.train import train_scalable
from ganprint.training.config import config_json

COMMANDS: list = []


@click.command("train-scalable")
@click.option("--data", type=click.Path(), default=None,
              help="Image folder or packed data set (ganprint dataset); required unless --config names it.")
@click.option("--outdir", required=True, type=click.Path(file_okay=False), help="Run directory (re-run to resume).")
@click.option("--resolution", type=P.RESOLUTION, default=None, help="Image side (power of two >= 8) [32].")
@click.option("--fingerprint-length", type=P.BITS, default=None, help="K, bits per fingerprint [128].")
@click.option("--modulated-res", default=None,
              help="Resolutions whose convs the fingerprint modulates (A-B); plain convs elsewhere [4-128].")
@click.option("--kimg", type=P.KIMG_POS, default=None, help="Length: thousands of real images shown [100].")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), default=None,
              help="Start from a run's config.json (or a --dry-run's output) instead of a preset; flags override it.")
@click.option("--preset", type=click.Choice(list(PRESETS)), default=None,
              help="[small] small: 2 CPU cores; paper: config-e widths, weights 2/1/2; "
                                      "authors-celeba: paper with consistency 0.2; tiny: tests only.")
@click.option("--batch-size", type=P.BATCH, default=None, help="Total batch over all processes [preset].")
@click.option("--consistency-weight", type=P.WEIGHT, default=None, help="Weight of ||G(z,c)-G(z,c')||^2 [preset].")
@click.option("--consistency-rampup-kimg", type=P.KIMG, default=None,
              help="Ramp the consistency weight linearly from 0 over N kimg [preset: small 10, paper 0].")
@click.option("--gate-adversarial/--no-gate-adversarial", "gate_adversarial", default=None,
              help="Hold the adversarial term and D back until the fingerprint gate opens [preset: small on].")
@click.option("--gate-acc", "consistency_gate_acc", type=P.GATE_ACC, default=None,
              help="The gate opens at this running training bit accuracy (above 1: never by accuracy) "
                   "[preset: small 0.9, paper 0 = open].")
@click.option("--gate-kimg", "consistency_gate_kimg", type=P.KIMG, default=None,
              help="... or after N kimg, whichever comes first [preset: small 40; paper 0 = from the start].")
@click.option("--lr", type=P.LR, default=None, help="Adam learning rate [preset].")
@click.option("--snapshot-kimg", type=P.KIMG_POS, default=None, help="Grids, exports and state every N kimg [preset].")
@click.option("--metric-kimg", type=P.KIMG_POS, default=None, help="Bit-accuracy metric every N kimg [preset].")
@click.option("--metric-images", type=P.IMAGES, default=None, help="Images per bit-accuracy evaluation [preset].")
@click.option("--augment", default=None,
              help="Immunized training: perturb generated images before the decoder reads them, e.g. "
                   "'jpegd,blur,noise,crop' (ganprint.perturb.augment ops) [none].")
@click.option("--augment-skew", type=P.SKEW, default=None,
              help="Augmentation strength U(0,1)**(1/skew); > 1 trains more near the maxima [1].")
@click.option("--quantize-read/--no-quantize-read", "quantize_read", default=None,
              help="The decoder reads generated images as saved (clipped, 8-bit), straight-through gradient [off].")
@click.option("--seed", type=P.SEED, default=None, help="Random seed [0].")
@click.option("--device", default=None, help="auto, cpu, cuda, cuda:1 ... [auto]")
@click.option("--checkpoint-minutes", type=P.MINUTES, default=5.0, show_default=True,
              help="Also keep a training state when this many minutes have passed since the last (0 = only by kimg).")
@click.option("--workers", type=P.WORKERS, default=0, show_default=True,
              help="Processes decoding the images when the data set does not fit in memory (0: this one).")
@click.option("--dry-run", is_flag=True, help="Print the resolved config and exit.")
def train_scalable_cmd(outdir, preset, checkpoint_minutes, workers, dry_run, **flags) -> None:
    """Train a generator whose every image carries its fingerprint (Yu et al., ICLR 2022).

    \b
    Examples:
      ganprint train-scalable --data data/samples32 --resolution 32 --fingerprint-length 64 \\
          --modulated-res 4-32 --outdir runs/sc32 --kimg 60
      torchrun --nproc_per_node 2 $(which ganprint) train-scalable --data data/celeba30k --resolution 128 \\
          --outdir runs/celeba --preset authors-celeba --kimg 10000
    Outputs in OUTDIR: scalable-G.safetensors (G_ema), scalable-decoder.safetensors, config.json, log.txt,
    stats.jsonl, metric-bit-accuracy.jsonl, snapshots/ (reals and fakes grids), training-state-<step>.pt.
    """

    cfg = resolve_config(preset, **flags)
    if dry_run:
        click.echo(config_json(cfg))
        return
    row = train_scalable(cfg, outdir, checkpoint_minutes=checkpoint_minutes, workers=workers)
    if row:
        click.echo(json.dumps({k: row[k] for k in ("kimg", "bit_acc_train", "bit_accuracy") if k in row}))


@click.command("issue")
@click.option("--model", required=True, type=click.Path(dir_okay=False),
              help="Shared scalable-G export, or a latent-modulated one (a latent diffusion autoencoder).")
@click.option("--registry", required=True, type=click.Path(dir_okay=False),
              help="Registry: SQLite path or postgresql:// URL (created if new).")
@click.option("--models-dir", required=True, type=click.Path(file_okay=False),
              help="Folder of issued models (shared with other issues and `ganprint serve`); the new one goes here.")
@click.option("--fingerprint", default=None, help="Issue this fingerprint (0/1 string or 0x-hex) [fresh random].")
@click.option("--who", default=None, help="Recipient recorded in the registry [login name].")
@click.option("--notes", default="", help="Free text recorded in the registry.")
@click.option("--min-distance", type=P.DISTANCE, default=None,
              help="Refuse fingerprints closer than this to an issued one [K // 4, e.g. 32 for 128 bits].")
@click.option("--device", default="cpu", show_default=True)
def issue_cmd(model, registry, models_dir, fingerprint, who, notes, min_distance, device) -> None:
    """Issue a fingerprinted model: register a fresh fingerprint and write its standalone generator or decoder.

    \b
    Examples:
      ganprint issue --model runs/sc32/scalable-G.safetensors --registry reg.sqlite --models-dir issued/ --who alice
      ganprint issue --model runs/fp/latent-modulated.safetensors --registry lreg.sqlite --models-dir lissued/
    The issued model (kind scalable-G-issued, or latent-autoencoder-issued: a plain diffusers AutoencoderKL) has
    the fingerprint folded into its weights and takes none.
    """

    row = issue(model, registry, models_dir, fingerprint=fingerprint, who=who, notes=notes,
                min_distance=min_distance, device=device)
    click.echo(json.dumps({k: row[k] for k in ("fp_id", "bits_hex", "who", "min_distance", "issued_path")}))


@click.command("attribute")
@click.option("--model", required=True, type=click.Path(dir_okay=False),
              help="A scalable-decoder export, or the fingerprint decoder (stega-decoder) of latent issued decoders.")
@click.option("--registry", required=True, help="Registry of issued fingerprints (SQLite path or postgresql:// URL).")
@click.option("--data", required=True, type=click.Path(file_okay=False), help="A folder of images.")
@click.option("--outdir", type=click.Path(file_okay=False), default=None,
              help="Where the results go (required): attributions.jsonl (one row per image) and summary.json.")
@click.option("--out", type=click.Path(dir_okay=False), default=None, hidden=True)  # the older form, one release
@click.option("--fpr", type=P.FPR, default=1e-6, show_default=True,
              help="False-positive rate per image, Bonferroni-corrected for the number of issued models.")
@click.option("--batch-size", type=P.BATCH, default=64, show_default=True)
@click.option("--device", default="auto", show_default=True)
@click.option("--runtime", type=click.Choice(["torch", "onnx"]), default="torch", show_default=True,
              help="Decode with PyTorch, or with ONNX Runtime on the CPU (the onnx extra; same bits).")
@click.option("--overwrite", is_flag=True, hidden=True)  # goes with --out
def attribute_cmd(**flags) -> None:
    """Attribute images to the issued model whose fingerprint they carry, or to `unknown`.

    \b
    Example:
      ganprint attribute --model runs/sc32/scalable-decoder.safetensors --registry reg.sqlite \\
          --data suspicious/ --outdir attribution/
    Writes OUTDIR/attributions.jsonl and OUTDIR/summary.json; prints the summary. Re-running the same command
    replaces them; a different configuration needs a new --outdir.
    """

    if flags["out"] is not None:
        click.echo("Warning: --out FILE is the old form of --outdir FOLDER; it still works in this release (rows in "
                   "FILE, summary in FILE.summary.json), use --outdir", err=True)
    if flags["outdir"] is None and flags["out"] is None:
        raise click.UsageError("Missing option '--outdir'.")
    summary = attribute_images(AttributeSpec(**flags))
    # printed only, not in the summary file: the answer says what its p-values cover
    click.echo(json.dumps({**summary, "p_value_covers": P_VALUE_COVERS}, indent=2))


@click.group("registry")
def registry_group() -> None:
    """Inspect, migrate, export and import a fingerprint registry (SQLite path or postgresql:// URL)."""


@registry_group.command("list")
@click.argument("registry")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line instead of a table.")
def registry_list_cmd(registry: str, as_json: bool) -> None:
    """List the issued fingerprints of REGISTRY."""

    rows = Registry(registry, create=False).list()
    if as_json:
        for r in rows:
            click.echo(json.dumps(r.to_dict()))
        return
    click.echo(f"{'id':>6}  {'created':25}  {'who':12}  {'min_dist':>8}  fingerprint")
    for r in rows:
        md = "-" if r.min_distance is None else str(r.min_distance)
        click.echo(f"{r.fp_id:>6}  {r.created:25}  {r.who[:12]:12}  {md:>8}  {r.bits_hex}")
    click.echo(f"{len(rows)} fingerprint(s)")


@registry_group.command("migrate")
@click.argument("registry")
def registry_migrate_cmd(registry: str) -> None:
    """Create REGISTRY or bring its schema up to this ganprint's version.

    \b
    Examples:
      ganprint registry migrate reg.sqlite
      ganprint registry migrate postgresql://ganprint@db.example:5432/ganprint
    """

    click.echo(json.dumps(migrate(registry)))


@registry_group.command("export")
@click.argument("registry")
@click.argument("out", type=click.Path(dir_okay=False))
@click.option("--overwrite", is_flag=True, help="Replace OUT if it exists (never when it is the registry).")
def registry_export_cmd(registry: str, out: str, overwrite: bool) -> None:
    """Write everything in REGISTRY to the JSON file OUT (token hashes only, never tokens).

    \b
    Example (SQLite to PostgreSQL):
      ganprint registry export reg.sqlite reg.json
      ganprint registry import reg.json postgresql://ganprint@db.example/ganprint
    """

    click.echo(json.dumps(export_registry(registry, out, overwrite=overwrite)))


@registry_group.command("import")
@click.argument("dump", type=click.Path(dir_okay=False, exists=True))
@click.argument("registry")
def registry_import_cmd(dump: str, registry: str) -> None:
    """Load DUMP (from `ganprint registry export`) into the new REGISTRY (SQLite path or postgresql:// URL)."""

    click.echo(json.dumps(import_registry(dump, registry)))


@registry_group.command("repair")
@click.argument("registry")
@click.option("--models-dir", required=True, type=click.Path(file_okay=False),
              help="The folder of issued models (--models-dir of `ganprint issue` and `ganprint serve`).")
def registry_repair_cmd(registry: str, models_dir: str) -> None:
    """Settle the issued-model files a killed issuer or a lost connection left, so that every row has its file.

    \b
    Under the issue lock: a pending model whose row committed is renamed into place, one without a row removed;
    model files without a row and rows without a file are reported (kept). `ganprint serve` does this at start.
    Example:
      ganprint registry repair reg.sqlite --models-dir issued/
    """

    report = repair_issued(Registry(registry, create=False), models_dir)
    click.echo(json.dumps({"registry": registry, **{k: len(v) for k, v in report.items()}, "details": report}))


@registry_group.command("add-dataset")
@click.argument("registry")
@click.option("--name", required=True, help="A unique name for the fingerprinted data set.")
@click.option("--model", required=True, type=click.Path(dir_okay=False, exists=True),
              help="The stega model (or stega-decoder) the data set was embedded with.")
@click.option("--fingerprint", required=True, help="The data set's fingerprint (0/1 string or 0x-hex).")
@click.option("--notes", default="", help="Free text recorded in the registry.")
def registry_add_dataset_cmd(registry: str, name: str, model: str, fingerprint: str, notes: str) -> None:
    """Register a data set fingerprinted with `ganprint embed --identical`, so `ganprint serve` detects it.

    \b
    Example (after `make demo`):
      ganprint registry add-dataset demo-out/registry.sqlite --name demo \\
          --model demo-out/train/model.safetensors \\
          --fingerprint "$(python -c 'import json; print(json.load(open("demo-out/summary.json"))["fingerprint"])')"
    """

    click.echo(json.dumps(register_dataset(registry, name, fingerprint, model, notes)))


COMMANDS.extend([train_scalable_cmd, issue_cmd, attribute_cmd, registry_group])
