"""`ganprint sign-c2pa`: C2PA manifests for fingerprinted images, their soft binding the fingerprint."""

from __future__ import annotations

import json

import click

from ganprint.provenance.c2pa import SIGNING_ALGS, sign_images


def signing_options(requires: str, images: str, binding: str):
    """The three flags with which a command that writes fingerprinted images also writes C2PA-signed copies
    (`C2paSigning.of` reads them): `requires` the flags they go with, `images` and `binding` what the help names."""
    def add(fn):
        for option in reversed([
            click.option("--c2pa-outdir", default=None, type=click.Path(file_okay=False),
                         help=f"{requires}: also write a copy of every {images} signed with a C2PA manifest whose soft "
                              f"binding is {binding} (as `ganprint sign-c2pa`) into this new or empty folder; the "
                              "manifests are kept in --registry."),
            click.option("--c2pa-cert", default=None, type=click.Path(dir_okay=False, exists=True),
                         help="PEM certificate chain for --c2pa-outdir, signing certificate first."),
            click.option("--c2pa-key", default=None, type=click.Path(dir_okay=False, exists=True),
                         help="PEM private key of --c2pa-cert."),
        ]):
            fn = option(fn)
        return fn
    return add


@click.command("sign-c2pa")
@click.option("--images", required=True, type=click.Path(file_okay=False, exists=True),
              help="The --outdir of `ganprint generate` (an issued model) or of `ganprint embed`.")
@click.option("--outdir", required=True, type=click.Path(file_okay=False),
              help="New or empty folder for the signed copies and c2pa_manifests.jsonl.")
@click.option("--registry", required=True,
              help="The registry of the issued model or data set (SQLite path or postgresql:// URL); each manifest "
                   "store is kept there for `ganprint serve`.")
@click.option("--cert", required=True, type=click.Path(dir_okay=False, exists=True),
              help="PEM certificate chain, signing certificate first.")
@click.option("--key", required=True, type=click.Path(dir_okay=False, exists=True),
              help="PEM private key of the signing certificate.")
@click.option("--dataset", default=None, help="For an embed folder: the registered data set its images carry.")
@click.option("--signing-alg", type=click.Choice(SIGNING_ALGS), default="es256", show_default=True,
              help="The signature algorithm of --key.")
def sign_c2pa_cmd(images, outdir, registry, cert, key, dataset, signing_alg) -> None:
    """Sign copies of fingerprinted images with a C2PA manifest whose soft binding is their fingerprint.

    Each manifest carries a c2pa.soft-binding assertion (io.github.ganprint.scalable.1 for an issued model's
    images, io.github.ganprint.artificial.1 for a data set's), ganprint's record and the actions; its manifest
    store is kept in the registry, where `ganprint serve` finds it again from the pixels alone (C2PA Soft Binding
    Resolution API: POST /matches/byContent). Needs the c2pa extra: pip install -e '.[c2pa]' in the ganprint
    checkout.

    \b
    Examples:
      ganprint generate --model issued/issued-000001-*.safetensors --seeds 0-15 --outdir gen/
      ganprint sign-c2pa --images gen/ --outdir signed/ --registry reg.sqlite --cert chain.pem --key key.pem
      ganprint sign-c2pa --images out/ --dataset faces --outdir signed/ --registry reg.sqlite \\
          --cert chain.pem --key key.pem
    """
    summary = sign_images(images, outdir, registry, cert, key, dataset=dataset, signing_alg=signing_alg)
    click.echo(json.dumps({k: summary[k] for k in ("signed", "outdir")}))


COMMANDS = [sign_c2pa_cmd]
