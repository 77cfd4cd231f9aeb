"""Import original ArtificialGANFingerprints checkpoints (`*_encoder.pth`, `*_decoder.pth`) as ganprint exports.

The originals are plain state_dicts (shared/docs/agf-checkpoint-layout.md) whose keys equal ours without the
`enc.` / `dec.` prefix. K and R are read from the tensor shapes; nothing is unpickled beyond tensors.
"""

from __future__ import annotations

import io
import logging
import math
import os
import pickle
from pathlib import Path

import torch

from ganprint.core.artifacts import load_export, save_export
from ganprint.core.errors import GanprintError, field
from ganprint.core.files import MAX_LIST_BYTES, check_writable_file, read_input_bytes
from ganprint.core.paths import check_new_file, check_overlap
from ganprint.nets.stega import StegaConfig, StegaDecoderOnly, StegaModel, stega_config_dict

log = logging.getLogger(__name__)


class ImportAgfError(GanprintError):
    """An original checkpoint that cannot be converted."""


def _load_state_dict(path: str | os.PathLike, name: str) -> dict[str, torch.Tensor]:
    """The tensors of the original checkpoint `path`, given as the parameter `name` ("encoder" or "decoder")."""
    path, flag = Path(path), field(name)
    try:  # a regular file of bounded size: never a FIFO or a device
        data = read_input_bytes(path, flag, MAX_LIST_BYTES)
    except GanprintError as e:
        raise ImportAgfError(str(e)) from None
    try:
        sd = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError, AttributeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ImportAgfError(f"{flag} {path} is not a loadable PyTorch state_dict ({first}); "
                             "give the *_encoder.pth / *_decoder.pth written by the original train.py") from None
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in sd.items()):
        raise ImportAgfError(f"{flag} {path} holds a {type(sd).__name__}, not a state_dict of tensors; "
                             "give the *_encoder.pth / *_decoder.pth written by the original train.py")
    # Checkpoints saved from nn.DataParallel carry a `module.` prefix on every key.
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    sd = {k: v.float() for k, v in sd.items()}
    nonfinite = sorted(k for k, v in sd.items() if not bool(torch.isfinite(v).all()))
    if nonfinite:
        raise ImportAgfError(f"{flag} {path} holds weights that are NaN or infinite ({', '.join(nonfinite[:3])}); "
                             "it cannot fingerprint anything: use a checkpoint from a healthy training run")
    return sd


def _shape(sd: dict[str, torch.Tensor], key: str, name: str, path) -> tuple[int, ...]:
    if key not in sd:
        raise ImportAgfError(f"{field(name)} {path} has no '{key}'; it is not an original {name} checkpoint")
    return tuple(sd[key].shape)


def _encoder_dims(sd, path) -> tuple[int, int]:
    """(K, C) from an encoder state_dict; R is not recorded in the encoder (it only sets the upsample factor)."""
    out_f, k = _shape(sd, "secret_dense.weight", "encoder", path)
    c = _shape(sd, "residual.weight", "encoder", path)[0]
    if out_f != 16 * 16 * c:
        raise ImportAgfError(f"`encoder` {path}: secret_dense.weight is {(out_f, k)}, expected (16*16*{c}, K)")
    return k, c


def _decoder_dims(sd, path) -> tuple[int, int, int]:
    """(K, R, C) from a decoder state_dict: K = dense.2 rows, R from dense.0 columns = R^2 * 128 / 1024."""
    k = _shape(sd, "dense.2.weight", "decoder", path)[0]
    flat = _shape(sd, "dense.0.weight", "decoder", path)[1]
    c = _shape(sd, "decoder.0.weight", "decoder", path)[1]
    r = math.isqrt(flat * 1024 // 128) if flat * 1024 % 128 == 0 else 0
    if r < 32 or r * r * 128 // 1024 != flat or r & (r - 1):
        raise ImportAgfError(f"`decoder` {path}: dense.0.weight has {flat} inputs, which is not R*R*128/1024 "
                             "for a power-of-two resolution R >= 32")
    return k, r, c


def _load_into(module: torch.nn.Module, sd: dict[str, torch.Tensor], name: str, path) -> None:
    """load_state_dict(strict) with messages that name the parameter `name`, the file and the offending keys/shapes."""
    own, flag = module.state_dict(), field(name)
    missing, extra = sorted(set(own) - set(sd)), sorted(set(sd) - set(own))
    if missing or extra:
        raise ImportAgfError(f"{flag} {path} does not match the original layout: missing keys {missing[:6]}"
                             f"{'...' if len(missing) > 6 else ''}, unexpected keys {extra[:6]}"
                             f"{'...' if len(extra) > 6 else ''}")
    bad = [f"{k} {tuple(sd[k].shape)} (expected {tuple(v.shape)})" for k, v in own.items() if sd[k].shape != v.shape]
    if bad:
        raise ImportAgfError(f"{flag} {path}: tensor shapes do not fit: {'; '.join(bad[:4])}")
    module.load_state_dict(sd, strict=True)


def import_agf(encoder: str | os.PathLike | None, decoder: str | os.PathLike | None,
               out: str | os.PathLike, resolution: int | None = None, overwrite: bool = False) -> Path:
    """Convert original checkpoints into `out` (kind `stega` with both, `stega-decoder` with the decoder alone).

    Args:
        encoder: the original `*_encoder.pth`, or None.
        decoder: the original `*_decoder.pth`, or None.
        out: the .safetensors file to write.
        resolution: needed only for an encoder alone (the encoder's weights do not fix R); else read from
            the decoder and checked against this value when both are given.
        overwrite: replace an existing `out` (never one of the inputs).
    """
    if encoder is None and decoder is None:
        raise ImportAgfError("give `encoder` E.pth and/or `decoder` D.pth")
    check_overlap([("encoder", encoder, "checkpoint"), ("decoder", decoder, "checkpoint")], [("out", out, "file")])
    check_new_file(out, "out", overwrite)
    check_writable_file(out, "out")
    enc_sd = _load_state_dict(encoder, "encoder") if encoder is not None else None
    dec_sd = _load_state_dict(decoder, "decoder") if decoder is not None else None
    k = c = r = None
    if dec_sd is not None:
        k, r, c = _decoder_dims(dec_sd, decoder)
        if resolution is not None and resolution != r:
            raise ImportAgfError(f"`decoder` {decoder} is for {r} px, not the requested {resolution} px")
    if enc_sd is not None:
        ke, ce = _encoder_dims(enc_sd, encoder)
        if k is not None and (ke, ce) != (k, c):
            raise ImportAgfError(f"`encoder` {encoder} is for K={ke} bits but `decoder` {decoder} for K={k}; "
                                 "give the two halves of the same training run")
        k, c = ke, ce
        if r is None:
            if resolution is None:
                raise ImportAgfError("an encoder alone does not record its resolution: give its `decoder` too")
            r = resolution
    cfg = StegaConfig(resolution=r, fingerprint_length=k, channels=c)
    try:
        cfg.validate()
    except ValueError as e:
        raise ImportAgfError(f"cannot import: {e}") from None
    extra = {"ganprint.imported_from": "ArtificialGANFingerprints",
             "ganprint.source_files": ",".join(str(Path(p).name) for p in (encoder, decoder) if p is not None)}
    if enc_sd is not None and dec_sd is not None:
        model = StegaModel(cfg)
        _load_into(model.enc, enc_sd, "encoder", encoder)
        _load_into(model.dec, dec_sd, "decoder", decoder)
        kind: str = "stega"
    elif dec_sd is not None:
        model = StegaDecoderOnly(cfg)
        _load_into(model.dec, dec_sd, "decoder", decoder)
        kind = "stega-decoder"
    else:
        raise ImportAgfError("an encoder alone cannot form an export: ganprint exports always carry the decoder; "
                             "give `decoder` too")
    path = save_export(out, model, kind, stega_config_dict(cfg), extra=extra)
    log.info("imported %s (K=%d, R=%d) into %s", kind, k, r, path)
    return path


def export_part(model_path: str | os.PathLike, part: str, out: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write one part of a `stega` export as its own export; part "dec" gives a `stega-decoder` file. An existing
    `out` is replaced only with `overwrite`, and never when it is the model."""
    if part != "dec":
        raise GanprintError(f"`part` {part!r} is not supported; use `part` dec")
    check_overlap([("model", model_path, "model")], [("out", out, "file")])
    check_new_file(out, "out", overwrite)
    check_writable_file(out, "out")
    model, config, meta = load_export(model_path, kind=("stega", "stega-decoder"))
    dec_only = StegaDecoderOnly(StegaConfig(**config))
    dec_only.dec.load_state_dict(model.dec.state_dict())
    extra = {k: v for k, v in meta.items() if k.startswith("ganprint.") and k not in {
        "ganprint.format", "ganprint.kind", "ganprint.config", "ganprint.version", "ganprint.git_sha",
        "ganprint.created"}}
    extra["ganprint.exported_from"] = Path(model_path).name
    return save_export(out, dec_only, "stega-decoder", config, extra=extra)


__all__ = ["import_agf", "export_part", "ImportAgfError"]
