"""Model attacks on an issued latent decoder: each returns a changed copy and leaves the input alone; swapping in
the original decoder gives exactly the original's images, which name nobody."""

import numpy as np
import pytest
import torch

from ganprint.core.artifacts import load_export
from ganprint.core.fingerprints import pack_bits
from ganprint.evaluation.latent_attacks import (
    decoded_uint8,
    finetune_decoder,
    read_attacked,
    swap_decoder,
    to_float16,
)
from ganprint.evaluation.model_attacks import quantize_weights, weight_noise
from tests.latent import kit

pytest.importorskip("diffusers")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    paths = kit.write_models(tmp_path_factory.mktemp("attacks"))
    shared = load_export(paths["shared"])[0]
    bits = torch.randint(0, 2, (kit.K,), generator=torch.Generator().manual_seed(3)).float()
    return shared.fold(bits), load_export(paths["original"])[0], load_export(paths["decoder"])[0], bits


def _state(m):
    return {k: v.clone() for k, v in m.state_dict().items()}


def test_swapping_in_the_original_decoder_gives_its_images_and_no_attribution(models):
    issued, original, fdec, bits = models
    before = _state(issued)
    swapped = swap_decoder(issued, original)
    z = kit.latents(6, seed=1)
    assert np.array_equal(decoded_uint8(swapped, z), decoded_uint8(original, z))
    assert not np.array_equal(decoded_uint8(issued, z), decoded_uint8(original, z))
    assert all(torch.equal(before[k], v) for k, v in issued.state_dict().items())
    issued_fps = (np.array([1, 2]), pack_bits(torch.stack([bits, 1 - bits])))
    got = read_attacked(swapped, fdec, z, bits, 1, issued_fps)
    assert got["unknown"] == 1.0 and got["images"] == 6


def test_read_attacked_attributes_what_the_decoder_reads(models):
    issued, _, fdec, _ = models
    z = kit.latents(1, seed=2).expand(4, -1, -1, -1)  # one image four times: one reading
    x = torch.from_numpy(decoded_uint8(issued, z[:1])).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        read = (fdec.dec(x) > 0).float()[0]
    other = 1 - read
    got = read_attacked(issued, fdec, z, read, 7, (np.array([7, 8]), pack_bits(torch.stack([read, other]))))
    assert got == {"images": 4, "bit_accuracy": 1.0, "attributed_own": 1.0, "unknown": 0.0, "attributed_other": 0.0}


def test_finetuning_trains_the_decoder_only_and_reports_checkpoints(models):
    issued, _, _, _ = models
    before = _state(issued)
    imgs = torch.from_numpy(decoded_uint8(issued, kit.latents(8, seed=4))).permute(0, 3, 1, 2).contiguous()
    seen = []
    tuned = finetune_decoder(issued, imgs, steps=4, lr=1e-3, batch_size=4, every=2,
                             on_checkpoint=lambda step, m: seen.append(step))
    assert seen == [0, 2, 4]
    after = tuned.state_dict()
    assert all(torch.equal(before[k], v) for k, v in issued.state_dict().items())
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith(("decoder.", "post_quant_conv.")) for k in changed)
    assert not any(p.requires_grad for p in tuned.parameters())


def test_weight_attacks_change_the_images_a_little(models):
    issued, _, _, _ = models
    z = kit.latents(4, seed=5)
    clean = decoded_uint8(issued, z).astype(int)
    for attacked in (to_float16(issued), quantize_weights(issued, bits=8), weight_noise(issued, 1e-3)):
        diff = np.abs(decoded_uint8(attacked, z).astype(int) - clean)
        assert 0 < diff.max() and diff.mean() < 20


def test_swapping_in_a_decoder_of_another_config_is_refused(models):
    from ganprint.core.errors import GanprintError
    from ganprint.latent import autoencoder as ae

    other = ae.build_autoencoder(ae.AutoencoderConfig(resolution=16, channels=(64, 64), mid_attention=False))
    with pytest.raises(GanprintError, match="not of this model's config"):
        swap_decoder(models[0], other)
