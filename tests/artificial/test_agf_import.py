"""`ganprint import-agf` / `ganprint export`: original checkpoints in, identical behaviour out.

The reference below re-states the original models.py forward functionally from the layout doc
(shared/docs/agf-checkpoint-layout.md), independently of ganprint.models.stega.
"""

import math

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

from ganprint.artificial.agf_import import ImportAgfError, export_part, import_agf
from ganprint.cli import main
from ganprint.core.artifacts import load_export
from ganprint.core.errors import GanprintError

C = 3
ENC_CONVS = {  # name: (out, in, kernel)
    "conv1": (32, 2 * C, 3), "conv2": (32, 32, 3), "conv3": (64, 32, 3), "conv4": (128, 64, 3),
    "conv5": (256, 128, 3), "up6": (128, 256, 2), "conv6": (128, 256, 3), "up7": (64, 128, 2),
    "conv7": (64, 128, 3), "up8": (32, 64, 2), "conv8": (32, 64, 3), "up9": (32, 32, 2),
    "conv9": (32, 32 + 32 + 2 * C, 3), "conv10": (32, 32, 3), "residual": (C, 32, 1),
}
DEC_CONVS = [(0, 32, C, 2), (2, 32, 32, 1), (4, 64, 32, 2), (6, 64, 64, 1), (8, 64, 64, 2), (10, 128, 64, 2),
             (12, 128, 128, 2)]


def original_state_dicts(k, r, seed=0):
    """Random tensors with exactly the original key names and shapes."""
    g = torch.Generator().manual_seed(seed)

    def t(*shape, fan_in):
        return torch.randn(*shape, generator=g) * math.sqrt(2 / fan_in)

    enc = {"secret_dense.weight": t(16 * 16 * C, k, fan_in=k), "secret_dense.bias": t(16 * 16 * C, fan_in=k)}
    for name, (o, i, ks) in ENC_CONVS.items():
        enc[f"{name}.weight"] = t(o, i, ks, ks, fan_in=i * ks * ks)
        enc[f"{name}.bias"] = t(o, fan_in=i * ks * ks) * 0.1
    dec = {}
    for idx, o, i, _ in DEC_CONVS:
        dec[f"decoder.{idx}.weight"] = t(o, i, 3, 3, fan_in=i * 9)
        dec[f"decoder.{idx}.bias"] = t(o, fan_in=i * 9) * 0.1
    flat = r * r * 128 // 1024
    dec.update({"dense.0.weight": t(512, flat, fan_in=flat), "dense.0.bias": t(512, fan_in=flat) * 0.1,
                "dense.2.weight": t(k, 512, fan_in=512), "dense.2.bias": t(k, fan_in=512) * 0.1})
    return enc, dec


def reference_encoder(sd, bits, img, r):
    def conv(name, x, stride=1, pad=1):
        return F.conv2d(x, sd[f"{name}.weight"], sd[f"{name}.bias"], stride=stride, padding=pad)

    def up(name, x):  # nearest x2 -> pad right/bottom by 1 -> 2x2 conv -> relu
        return F.relu(conv(name, F.pad(F.interpolate(x, scale_factor=2, mode="nearest"), (0, 1, 0, 1)), pad=0))

    n = bits.shape[0]
    f = F.relu(F.linear(bits, sd["secret_dense.weight"], sd["secret_dense.bias"])).view(n, C, 16, 16)
    f = F.interpolate(f, scale_factor=r // 16, mode="nearest")
    inputs = torch.cat([f, img], 1)
    c1 = F.relu(conv("conv1", inputs))
    c2 = F.relu(conv("conv2", c1, 2))
    c3 = F.relu(conv("conv3", c2, 2))
    c4 = F.relu(conv("conv4", c3, 2))
    c5 = F.relu(conv("conv5", c4, 2))
    c6 = F.relu(conv("conv6", torch.cat([c4, up("up6", c5)], 1)))
    c7 = F.relu(conv("conv7", torch.cat([c3, up("up7", c6)], 1)))
    c8 = F.relu(conv("conv8", torch.cat([c2, up("up8", c7)], 1)))
    c9 = F.relu(conv("conv9", torch.cat([c1, up("up9", c8), inputs], 1)))
    c10 = F.relu(conv("conv10", c9))
    return torch.sigmoid(conv("residual", c10, pad=0))


def reference_decoder(sd, img):
    x = img
    for idx, _, _, stride in DEC_CONVS:
        x = F.relu(F.conv2d(x, sd[f"decoder.{idx}.weight"], sd[f"decoder.{idx}.bias"], stride=stride, padding=1))
    x = x.flatten(1)  # (C, H, W) order
    x = F.relu(F.linear(x, sd["dense.0.weight"], sd["dense.0.bias"]))
    return F.linear(x, sd["dense.2.weight"], sd["dense.2.bias"])


@pytest.mark.parametrize("k,r", [(64, 32), (10, 64)])
def test_import_matches_the_original_forward(tmp_path, k, r):
    enc_sd, dec_sd = original_state_dicts(k, r)
    torch.save(enc_sd, tmp_path / "x_encoder.pth")
    torch.save(dec_sd, tmp_path / "x_decoder.pth")
    runner = CliRunner()
    res = runner.invoke(main, ["import-agf", "--encoder", str(tmp_path / "x_encoder.pth"), "--decoder",
                               str(tmp_path / "x_decoder.pth"), str(tmp_path / "m.safetensors")])
    assert res.exit_code == 0, res.output
    model, cfg, meta = load_export(tmp_path / "m.safetensors", kind="stega")
    assert cfg == {"resolution": r, "fingerprint_length": k, "channels": 3}
    assert meta["ganprint.imported_from"] == "ArtificialGANFingerprints"
    g = torch.Generator().manual_seed(1)
    img = torch.rand(4, 3, r, r, generator=g)
    bits = torch.randint(0, 2, (4, k), generator=g).float()
    with torch.no_grad():
        out_ref = reference_encoder(enc_sd, bits, img, r)
        out = model.enc(bits, img)
        torch.testing.assert_close(out, out_ref, rtol=1e-5, atol=1e-6)
        logits_ref, logits = reference_decoder(dec_sd, out_ref), model.dec(out_ref)
        torch.testing.assert_close(logits, logits_ref, rtol=1e-4, atol=1e-5)
        assert torch.equal(logits > 0, logits_ref > 0)  # the same bits


def test_decoder_alone_and_export_part(tmp_path):
    enc_sd, dec_sd = original_state_dicts(16, 32)
    torch.save(dec_sd, tmp_path / "d.pth")
    import_agf(None, tmp_path / "d.pth", tmp_path / "d.safetensors")
    dec, cfg, _ = load_export(tmp_path / "d.safetensors", kind="stega-decoder")
    assert cfg["fingerprint_length"] == 16 and cfg["resolution"] == 32
    torch.save(enc_sd, tmp_path / "e.pth")
    import_agf(tmp_path / "e.pth", tmp_path / "d.pth", tmp_path / "m.safetensors")
    res = CliRunner().invoke(main, ["export", "--model", str(tmp_path / "m.safetensors"), "--part", "dec",
                                    str(tmp_path / "part.safetensors")])
    assert res.exit_code == 0, res.output
    part, _, _ = load_export(tmp_path / "part.safetensors", kind="stega-decoder")
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(part.dec(x), dec.dec(x))
    with pytest.raises(ImportAgfError, match="encoder alone"):
        import_agf(tmp_path / "e.pth", None, tmp_path / "e.safetensors", resolution=32)
    assert export_part(tmp_path / "m.safetensors", "dec", tmp_path / "p2.safetensors").is_file()


def test_clear_errors(tmp_path):
    enc_sd, dec_sd = original_state_dicts(8, 32)
    torch.save({"model": torch.nn.Linear(2, 2)}, tmp_path / "pickle.pth")  # a pickled module, not a state_dict
    torch.save([1, 2, 3], tmp_path / "list.pth")
    torch.save({k: v for k, v in dec_sd.items() if k != "dense.0.bias"}, tmp_path / "missing.pth")
    torch.save({**dec_sd, "extra.weight": torch.zeros(1)}, tmp_path / "extra.pth")
    bad = dict(dec_sd)
    bad["decoder.4.weight"] = torch.zeros(64, 31, 3, 3)
    torch.save(bad, tmp_path / "shape.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    cases = [("pickle.pth", "not a loadable PyTorch state_dict"), ("list.pth", "not a state_dict"),
             ("missing.pth", "missing keys.*dense.0.bias"), ("extra.pth", "unexpected keys.*extra.weight"),
             ("shape.pth", "decoder.4.weight"), ("junk.pth", "not a loadable"), ("absent.pth", "does not exist")]
    for name, msg in cases:
        with pytest.raises(ImportAgfError, match=msg):
            import_agf(None, tmp_path / name, tmp_path / "o.safetensors")
    torch.save(enc_sd, tmp_path / "e.pth")
    _, dec_other = original_state_dicts(9, 32)
    torch.save(dec_other, tmp_path / "d9.pth")
    with pytest.raises(ImportAgfError, match="K=8.*K=9"):
        import_agf(tmp_path / "e.pth", tmp_path / "d9.pth", tmp_path / "o.safetensors")
    res = CliRunner().invoke(main, ["import-agf", "--decoder", str(tmp_path / "list.pth"), str(tmp_path / "o.st")])
    assert res.exit_code == 1 and "Error:" in res.output and "Traceback" not in res.output
    assert f"--decoder {tmp_path / 'list.pth'} holds a list" in res.output, res.output  # the field, shown as its flag
    assert not (tmp_path / "o.safetensors").exists()


def test_non_finite_weights_and_unwritable_outputs_are_refused(tmp_path):
    enc_sd, dec_sd = original_state_dicts(8, 32)
    torch.save(dec_sd, tmp_path / "d.pth")
    torch.save({**dec_sd, "dense.2.bias": torch.full((8,), float("nan"))}, tmp_path / "nan.pth")
    with pytest.raises(ImportAgfError, match=r"nan.pth holds weights that are NaN or infinite \(dense.2.bias\)"):
        import_agf(None, tmp_path / "nan.pth", tmp_path / "o.safetensors")
    (tmp_path / "file").write_text("x")
    with pytest.raises(GanprintError, match="`out` .*file/o.safetensors cannot be created"):
        import_agf(None, tmp_path / "d.pth", tmp_path / "file" / "o.safetensors")
    model = import_agf(None, tmp_path / "d.pth", tmp_path / "dec.safetensors")
    with pytest.raises(GanprintError, match="`out` .* is a folder"):
        export_part(model, "dec", tmp_path)
    assert not (tmp_path / "o.safetensors").exists()
