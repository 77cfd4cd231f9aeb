"""`ganprint embed` and `ganprint detect`: fingerprint images with a trained stega model, and read them back."""

from __future__ import annotations

import click

_COMMON = [
    click.option("--model", required=True, type=click.Path(dir_okay=False),
                 help="A stega model export (.safetensors) from `ganprint train`."),
    click.option("--data", required=True, type=click.Path(exists=True),
                 help="A folder of images (searched recursively; png, jpg, jpeg, webp, bmp, tif) or one image."),
    click.option("--outdir", required=True, type=click.Path(file_okay=False), help="Where the results go."),
    click.option("--resolution", type=int, default=None,
                 help="Image side; defaults to the model's (a different value is an error)."),
    click.option("--celeba", is_flag=True,
                 help="The original CelebA preprocessing: centre crop 148, resize to 128 (128-px models only)."),
    click.option("--batch-size", default=64, show_default=True, type=click.IntRange(min=1)),
    click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N."),
    click.option("--skip-bad", is_flag=True,
                 help="Skip unreadable image files (listed at the end) instead of stopping at the first."),
    click.option("--precision", type=click.Choice(["auto", "fp32", "bf16"]), default="auto", show_default=True,
                 help="Network arithmetic. auto = bf16 where the hardware computes it natively (CPUs with "
                      "AVX512-BF16/AMX, recent GPUs), about 2x faster; fp32 = the original's arithmetic."),
    click.option("--num-workers", type=click.IntRange(min=0), default=None,
                 help="DataLoader worker processes for image decoding [default: 0, which keeps memory flat]."),
    click.option("--jobs", default="auto", show_default=True,
                 help="CPU processes that split the images (one torch thread each). auto = one per core for "
                      "models of at most 64 px with at least 500 images per process, else 1. GPUs: use torchrun."),
]


def _common(f):
    for opt in reversed(_COMMON):
        f = opt(f)
    return f


@click.command("embed")
@_common
@click.option("--identical", is_flag=True,
              help="One fingerprint for all images (fingerprinting a data set, hence the GAN trained on it).")
@click.option("--fingerprint", default=None,
              help="With --identical: the fingerprint as a 0/1 string or hex (0x...); default: drawn from --seed.")
@click.option("--seed", default=42, show_default=True, type=int,
              help="Seed of the fingerprints (the original's default, 42).")
@click.option("--check", is_flag=True, help="Decode the written PNGs and report their bit accuracy.")
@click.option("--registry", default=None,
              help="With --identical and --name: record the data set's fingerprint in this registry (a SQLite path or "
                   "postgresql:// URL), so that `ganprint serve` detects it.")
@click.option("--name", default=None, help="The data set's name in --registry.")
def embed_cmd(model, data, outdir, resolution, celeba, batch_size, device, skip_bad, precision, num_workers, jobs,
              identical, fingerprint, seed, check, registry, name):
    """Embed fingerprints into every image under --data.

    Writes OUTDIR/fingerprinted_images/ (PNG, relative paths kept), OUTDIR/embedded_fingerprints.txt
    (`<name>.png <bits>`, the original's format; a name holding a newline or another control character is
    written as a JSON string, "a\\nb.png") and OUTDIR/manifest.json. Images are centre-cropped
    and resized to the model's resolution. Re-running the same command resumes; a different
    configuration needs a new --outdir. Under torchrun the files are split across processes.

    \b
    Examples:
      # one fingerprint for a whole data set (then train any GAN on OUT/fingerprinted_images):
      ganprint embed --model model.safetensors --data photos/ --outdir out/ --identical
      # a chosen fingerprint, given in hex:
      ganprint embed --model model.safetensors --data photos/ --outdir out/ --identical --fingerprint 0x3fa2...
      # a different fingerprint per image, bad files skipped, 2 processes:
      torchrun --standalone --nproc_per_node 2 -m ganprint embed --model model.safetensors \\
          --data photos/ --outdir out/ --skip-bad
      # fingerprint a data set and register it, so that `ganprint serve --registry reg.sqlite` detects it:
      ganprint embed --model model.safetensors --data photos/ --outdir out/ --identical \\
          --registry reg.sqlite --name photos-v1
    """
    from ganprint.api import embed

    embed(model, data, outdir, registry=registry, name=name, resolution=resolution, celeba=celeba, identical=identical,
          fingerprint=fingerprint, seed=seed, batch_size=batch_size, device=device, skip_bad=skip_bad,
          num_workers=num_workers, check=check, precision=precision, jobs=jobs)
    # The summary (counts, fingerprint, skipped files) is logged to stderr by the library.


@click.command("detect")
@_common
@click.option("--fingerprint", default=None, help="The reference fingerprint of all images (0/1 string or 0x hex).")
@click.option("--embedded", type=click.Path(dir_okay=False, exists=True), default=None,
              help="Reference per image: an embedded_fingerprints.txt, matched by file name.")
@click.option("--fpr", default=1e-6, show_default=True, type=float,
              help="False-positive rate of the per-image decision (one-sided binomial test).")
@click.option("--scale-search", default=None,
              help="Read images that were cropped and resized back: decode at each candidate scale ('auto' = 1, "
                   "0.95, ..., 0.6, or e.g. 1,0.9,0.8) and keep the most confident; p-values stay exact.")
@click.option("--runtime", type=click.Choice(["torch", "onnx"]), default="torch", show_default=True,
              help="Decode with PyTorch, or with ONNX Runtime on the CPU (the onnx extra; same bits).")
def detect_cmd(model, data, outdir, resolution, celeba, batch_size, device, skip_bad, precision, num_workers, jobs,
               fingerprint, embedded, fpr, scale_search, runtime):
    """Decode the fingerprint of every image under --data, and test it against a reference.

    Writes OUTDIR/detected_fingerprints.txt (the original's format), OUTDIR/detections.jsonl (one row per
    image: name, bits, and with a reference bit_accuracy, matches, p_value, log10_p, detected) and
    OUTDIR/summary.json. Images get the same preprocessing as in embed. An image counts as detected when
    its matching bits reach the binomial threshold for --fpr.

    \b
    Examples:
      # did these images come from the fingerprinted data set (or a GAN trained on it)?
      ganprint detect --model model.safetensors --data samples/ --outdir det/ --fingerprint 0110...
      # per-image check after `ganprint embed`:
      ganprint detect --model model.safetensors --data out/fingerprinted_images --outdir det/ \\
          --embedded out/embedded_fingerprints.txt
      # just decode the bits:
      ganprint detect --model model.safetensors --data samples/ --outdir det/
    """
    from ganprint.artificial.detect import detect

    detect(model, data, outdir, resolution=resolution, celeba=celeba, fingerprint=fingerprint, embedded=embedded,
           fpr=fpr, batch_size=batch_size, device=device, skip_bad=skip_bad, num_workers=num_workers,
           precision=precision, jobs=jobs, scale_search=scale_search, runtime=runtime)
    # The summary (images, mean bit accuracy, share detected, skipped files) is logged to stderr by the library.


COMMANDS = [embed_cmd, detect_cmd]
