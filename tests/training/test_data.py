"""The trainers' data pipeline: orders are functions of (seed, rank, step); batches do not depend on how they are
decoded (cached, in this process, or by worker processes)."""

import pytest
import torch

from ganprint.core.errors import GanprintError
from ganprint.training.clock import Clock, Meter
from ganprint.training.data import Batches, DrawOrder, EpochOrder, StepSampler, open_training_data
from tests.artificial.test_train import DictDataset as Images


def test_epoch_order_is_a_function_of_seed_and_step():
    a = list(StepSampler(EpochOrder(10, 4, seed=1, tag=2), 0, 6))
    assert a[3:] == list(StepSampler(EpochOrder(10, 4, seed=1, tag=2), 3, 6))
    first_epoch = [i for batch in a[:2] for i in batch] + a[2][:2]
    assert sorted(first_epoch) == list(range(10))  # every image once per epoch
    r0 = StepSampler(EpochOrder(10, 4, seed=1, tag=2, rank=0, world=2), 0, 3)
    r1 = StepSampler(EpochOrder(10, 4, seed=1, tag=2, rank=1, world=2), 0, 3)
    assert [x + y for x, y in zip(r0, r1)] == a[:3]
    assert a != list(StepSampler(EpochOrder(10, 4, seed=1, tag=7), 0, 6))  # the tag separates the streams
    with pytest.raises(GanprintError, match="`batch_size` 5 must be divisible"):
        EpochOrder(10, 5, seed=1, tag=2, world=2)


def test_draw_order_hands_on_its_generator():
    order = DrawOrder(10, 3, seed=4, rank=1)
    assert order.indices(5) == order.indices(5) and all(0 <= i < 10 for i in order.indices(5))
    g = torch.Generator().manual_seed(0)
    g.set_state(order.generator(5).get_state())
    assert torch.equal(torch.rand(2, generator=g), torch.rand(2, generator=order.generator(5)))


@pytest.mark.parametrize("workers", [0, 2])
def test_batches_are_the_same_however_decoded(workers):
    ds = Images(n=10, r=8)
    order = EpochOrder(len(ds), 4, seed=3, tag=2)
    cached = list(zip(range(5), Batches(ds, order).stream(2)))
    decoded = list(Batches(ds, order, workers=workers, cache_bytes=0).stream(2, 7))
    assert len(decoded) == 5 and all(torch.equal(c, d) for (_, c), d in zip(cached, decoded))
    assert torch.equal(Batches(ds, order, cache_bytes=0).images([3, 1]), ds.imgs[[3, 1]])


def test_open_training_data_refuses_empty_and_misfit_data(tmp_path):
    with pytest.raises(GanprintError, match="`data` .* does not exist"):
        open_training_data(tmp_path / "nope", 8)
    with pytest.raises(GanprintError, match="holds no images"):
        open_training_data(torch.zeros(0, 3, 8, 8, dtype=torch.uint8), 8)
    with pytest.raises(GanprintError, match=r"expected \(3, 16, 16\); check `resolution`"):
        open_training_data(Images(n=10, r=8), 16)


def test_clock_counts_crossings_and_the_end():
    clock = Clock(4, 0, tick=10, snapshot=0)
    assert [n for n in range(4, 41, 4) if clock.due("tick", n)] == [12, 20, 32, 40]
    assert not clock.due("snapshot", 40) and clock.due("snapshot", 41, done=True)
    assert not clock.state_due()  # 0 minutes: never by time


def test_meter_means_by_name():
    m = Meter()
    m.add({"loss/r1": 1.0, "a": 2.0})
    m.add({"loss/r1": 3.0})
    assert m.means() == {"a": 2.0, "loss/r1": 2.0} and m.means() == {}


def test_float_datasets_in_unit_range_train_on_their_images_and_others_are_refused():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(6, 3, 8, 8, generator=g)
    ds = open_training_data(torch.utils.data.TensorDataset(x), 8)  # items are (img,) tuples
    got = Batches(ds, EpochOrder(6, 2, seed=0, tag=1)).images(range(6))
    assert got.dtype == torch.uint8 and torch.equal(got, (x * 255).round().to(torch.uint8))  # not x / 255 again
    assert torch.equal(open_training_data(x, 8), got)  # a float tensor alike
    u8 = Images(n=4, r=8)
    assert torch.equal(Batches(open_training_data(u8, 8), EpochOrder(4, 2, 0, 1)).images(range(4)), u8.imgs)
    with pytest.raises(GanprintError, match=r"`data` \(TensorDataset\) item 0 holds float images in \[\d.*, \d+\.?\d*\]; float images must lie in \[0, 1\], or"):
        open_training_data(torch.utils.data.TensorDataset(x * 255), 8)
    with pytest.raises(GanprintError, match=r"`data` \(a tensor\) holds float images in \[-0.99.*\]; .*\(images in \[-1, 1\]: give \(x \+ 1\) / 2\)"):
        open_training_data(x * 2 - 1, 8)
    with pytest.raises(GanprintError, match="item 0 holds int64 images; give uint8"):
        open_training_data(torch.utils.data.TensorDataset(torch.zeros(2, 3, 8, 8, dtype=torch.int64)), 8)
    nan = x.clone()
    nan[3, 0, 0, 0] = float("nan")
    bad = open_training_data(torch.utils.data.TensorDataset(nan), 8)  # item 0 is fine; item 3 is found when read
    with pytest.raises(GanprintError, match=r"`data` \(TensorDataset\) item 3 holds float images in \[nan"):
        Batches(bad, EpochOrder(6, 2, 0, 1))
