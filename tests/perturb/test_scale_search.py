"""Scale-search decoding (ganprint.perturb.scale_search): undoing crops, the choice of scale, its confidence
floor, the CLI."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from ganprint.cli import main
from ganprint.core.errors import GanprintError
from ganprint.perturb.attacks import parse_attacks
from ganprint.perturb.scale_search import (
    DEFAULT_SCALES,
    MIN_CONFIDENCE,
    MIN_GAIN,
    ScaleSearch,
    confidence,
    parse_scales,
    unzoom,
)


def _smooth(n=4, r=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, r // 4, r // 4, generator=g)
    return torch.nn.functional.interpolate(x, (r, r), mode="bilinear", align_corners=False)  # [N, 3, r, r]


def test_unzoom_undoes_a_centre_crop_resized_back():
    x = _smooth()
    attacked = parse_attacks(["crop:0.75"])[0](x, 0)
    back = unzoom(attacked, 0.75)
    inner = (slice(None), slice(None), slice(8, 24), slice(8, 24))  # well inside the kept 24 x 24 box
    assert (back[inner] - x[inner]).abs().mean() < 0.02 < (attacked[inner] - x[inner]).abs().mean()
    assert torch.equal(unzoom(x, 1.0), x)
    assert back[..., 0, :].eq(0.5).all()  # the cut border is grey
    assert back.shape == x.shape and x.equal(_smooth())  # input untouched


def test_search_picks_the_crop_scale_and_respects_the_floor():
    x = _smooth()
    bits = torch.randint(0, 2, (x.shape[0], 16), generator=torch.Generator().manual_seed(1)).float()
    inner = (slice(None), slice(None), slice(10, 22), slice(10, 22))

    def decoder(amplitude):  # confident only where the centre matches the original image
        def decode(img):
            err = (img[inner] - x[inner]).square().mean(dim=(1, 2, 3))  # [N]
            return (bits * 2 - 1) * amplitude * torch.exp(-err / 1e-3)[:, None]  # [N, 16]
        return decode

    attacked = parse_attacks(["crop:0.75"])[0](x, 0)
    search = ScaleSearch(decoder(8.0))
    logits = search(attacked)
    assert search.last_scales.tolist() == [0.75] * x.shape[0]
    assert torch.equal((logits > 0).float(), bits)
    assert torch.equal(search(x), decoder(8.0)(x)) and search.last_scales.eq(1.0).all()  # nothing to undo
    weak = ScaleSearch(decoder(0.5))  # best confidence ~0.12 < the 0.3 floor: stay at scale 1
    weak(attacked)
    assert weak.last_scales.eq(1.0).all()
    assert confidence(torch.tensor([[0.0, 0.0], [50.0, -50.0]])).tolist() == pytest.approx([0.0, 0.5])


def test_search_needs_a_margin_over_the_unscaled_reading():
    """A candidate only a little more confident than the unscaled reading (as a JPEG-ed image read at a wrong
    scale) does not replace it; the margin is min_gain."""
    x = _smooth(2)
    k = 8

    # Both readings above the floor; the unzoomed one more confident by less than the margin.
    given = 0.5 + MIN_CONFIDENCE + 0.01
    unzoomed = given + MIN_GAIN * 0.6

    def decode(img):
        grey = img[:, :, 0, 0].eq(0.5).all(dim=1)  # unzoom leaves a grey corner
        p = torch.where(grey, torch.tensor(unzoomed), torch.tensor(given))  # [N]
        return torch.logit(p)[:, None].expand(-1, k)  # [N, K]

    strict = ScaleSearch(decode)
    strict(x)
    assert strict.last_scales.eq(1.0).all()
    loose = ScaleSearch(decode, min_gain=0.0)
    loose(x)
    assert loose.last_scales.ne(1.0).all()


def test_parse_scales():
    assert parse_scales(None) is None and parse_scales("none") is None
    assert parse_scales("auto") == DEFAULT_SCALES
    assert parse_scales("0.8,0.9") == (1.0, 0.9, 0.8)
    for bad in ("big", "0.1", "1.5"):
        with pytest.raises(GanprintError, match="`scale_search`"):
            parse_scales(bad)


def test_detect_and_evaluate_with_scale_search(tiny_stega_model, sample_folder, tmp_path):
    cli = CliRunner()
    fp = "0" * 4 + "1" * 4
    r = cli.invoke(main, ["detect", "--model", str(tiny_stega_model), "--data", str(sample_folder), "--outdir",
                          str(tmp_path / "det"), "--fingerprint", fp, "--fpr", "0.01", "--scale-search", "auto",
                          "--device", "cpu"])  # 8 bits: 1e-6 could never be reached, and detect refuses it
    assert r.exit_code == 0, r.output
    rows = [json.loads(x) for x in (tmp_path / "det" / "detections.jsonl").read_text().splitlines()]
    assert len(rows) == 24 and all(row["scale"] in DEFAULT_SCALES for row in rows)
    assert json.loads((tmp_path / "det" / "summary.json").read_text())["scale_search"] == list(DEFAULT_SCALES)
    r = cli.invoke(main, ["evaluate", "--model", str(tiny_stega_model), "--data", str(sample_folder), "--fingerprint",
                          fp, "--attacks", "crop:0.75", "--scale-search", "1,0.75", "--outdir", str(tmp_path / "ev"),
                          "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert "scale search" in (tmp_path / "ev" / "report.md").read_text()


def test_wide_searches_down_to_half_and_undoes_rotations():
    from ganprint.perturb import ops
    from ganprint.perturb.scale_search import WIDE_ANGLES, WIDE_SCALES, ScaleSearch, parse_scales, search_angles

    assert parse_scales("wide") == WIDE_SCALES and min(WIDE_SCALES) == 0.5
    assert search_angles("wide") == WIDE_ANGLES and search_angles("auto") == () and search_angles(None) == ()
    # A decoder whose confidence grows as a bar lies level: the search must undo the 3-degree turn.
    img = torch.zeros(1, 1, 65, 65)
    img[..., 29:36, :] = 1.0
    turned = ops.rotate(img, 3.0)

    def decode(x):
        level = x[..., 29:36, 4:61].mean() - x[..., 22:27, 4:61].mean() - x[..., 38:43, 4:61].mean()
        return torch.full((len(x), 8), (float(level) - 0.7) * 10)

    search = ScaleSearch(decode, (1.0, 0.9), angles=WIDE_ANGLES, min_confidence=0.2)
    logits = search(turned)
    assert search.last_angles.tolist() == [3.0] and search.last_scales.tolist() == [1.0]
    assert float(logits.mean()) > float(decode(turned).mean())
