"""A latent-diffusion export as `ganprint evaluate`'s generator: the images `generate` writes, from the seeds."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("diffusers")

import ganprint
from ganprint.core.errors import GanprintError
from ganprint.evaluation.sources import GeneratorSource, load_generator
from tests.latent.test_generate import _pixels


def test_evaluate_reads_a_latent_diffusion_generator_as_generate_writes_it(tmp_path, tiny_latent_export):
    files = ganprint.generate(tiny_latent_export, [3, 4], tmp_path / "g", device="cpu", steps=50)
    with pytest.raises(GanprintError, match="latent diffusion model: give its `fingerprint`"):
        load_generator(tiny_latent_export, None, 8)
    G, kind, ref, res = load_generator(tiny_latent_export, "0" * 8, 8)
    assert kind == "latent-diffusion" and res == 16 and ref.shape == (8,)
    batch = next(iter(GeneratorSource(G, kind, [3, 4], ref)))
    assert batch.names == ["seed000003.png", "seed000004.png"]
    assert np.array_equal((batch.images * 255).round().permute(0, 2, 3, 1).byte().numpy(), _pixels(files))
