"""GenerateSpec checks itself and refuses the fields of other kinds of generator; the seed loop's files."""

from __future__ import annotations

import numpy as np
import pytest

from ganprint.core.errors import GanprintError
from ganprint.core.images import read_image
from ganprint.inference.generation import GenerateSpec, write_seed_images


def test_the_spec_checks_its_fields(tmp_path):
    spec = GenerateSpec(model="m", seeds=(3, 1), outdir=tmp_path)
    assert spec.seeds == [3, 1]  # a list of ints, whatever sequence was given
    for bad, match in (({"seeds": []}, "`seeds` selects no seeds"), ({"batch_size": 0}, "`batch_size`"),
                       ({"trunc": 5.0}, "`trunc`"), ({"precision": "bf16"}, "`precision`"),
                       ({"steps": 0}, "`steps`"), ({"seeds": [-1]}, "`seeds`")):
        with pytest.raises(GanprintError, match=match):
            GenerateSpec.of(spec, **bad)


def test_refuse_names_only_the_fields_that_are_set(tmp_path):
    spec = GenerateSpec(model="m.safetensors", seeds=[0], outdir=tmp_path, trunc=0.5, steps=3)
    spec.refuse(("fingerprint", "identical_latent"), "scalable-G generators")  # at their defaults: nothing to say
    with pytest.raises(GanprintError, match="^`trunc` is for GAN generators, not for m.safetensors: drop it$"):
        spec.refuse(("trunc", "fingerprint"), "GAN generators")
    with pytest.raises(GanprintError, match="`trunc`, `steps` are for .*: drop them"):
        spec.refuse(("trunc", "steps"), "others")


def test_write_seed_images_cuts_the_seeds_into_batches(tmp_path):
    spec = GenerateSpec(model="m", seeds=[5, 2, 9], outdir=tmp_path, batch_size=2, grid=True)
    calls = []

    def make(chunk):
        calls.append(list(chunk))
        return np.stack([np.full((4, 4, 3), s, np.uint8) for s in chunk])

    paths = write_seed_images(spec, tmp_path, make)
    assert calls == [[5, 2], [9]] and [p.name for p in paths] == ["seed000005.png", "seed000002.png", "seed000009.png"]
    assert read_image(paths[2]).max() == 9 and (tmp_path / "grid.png").is_file()
