"""TrainingState: one file per state, every part restored, numbered by step, unreadable files named."""

import pytest
import torch

from ganprint.core.errors import GanprintError
from ganprint.training.state import TensorSlot, TrainingState


class Holder:
    def __init__(self):
        self.mean = torch.zeros([])


def _parts(seed):
    torch.manual_seed(seed)
    net = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(net.parameters(), lr=0.1)
    net(torch.randn(4, 3)).sum().backward()
    opt.step()
    holder = Holder()
    holder.mean = torch.tensor(float(seed))
    return net, opt, holder


def test_round_trip_restores_every_part_and_counter(tmp_path):
    net, opt, holder = _parts(1)
    st = TrainingState(tmp_path, {"net": net, "opt": opt, "mean": TensorSlot(holder, "mean")}, tick=0, gate=None)
    st.step, st.nimg, st.elapsed = 3, 12, 1.5
    st.counters.update(tick=2, gate=7)
    assert st.save() == tmp_path / "training-state-00000003.pt"

    net2, opt2, holder2 = _parts(2)
    other = TrainingState(tmp_path, {"net": net2, "opt": opt2, "mean": TensorSlot(holder2, "mean")}, tick=0, gate=None)
    assert other.restore() == tmp_path / "training-state-00000003.pt"
    assert (other.step, other.nimg, other.elapsed, other.counters) == (3, 12, 1.5, {"tick": 2, "gate": 7})
    for k, v in net.state_dict().items():
        assert torch.equal(v, net2.state_dict()[k]), k
    assert opt2.state_dict()["state"][0]["step"] == opt.state_dict()["state"][0]["step"]
    assert torch.equal(opt2.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])
    assert holder2.mean.item() == 1.0


def test_fresh_run_and_newest_state_and_pruning(tmp_path):
    net, opt, _ = _parts(0)
    st = TrainingState(tmp_path / "new", {"net": net})
    assert st.restore() is None and st.step == 0
    st = TrainingState(tmp_path, {"net": net})
    for step in (2, 4, 10):
        st.step = step
        st.save()
    assert sorted(p.name for p in tmp_path.glob("training-state-*.pt")) == [
        "training-state-00000004.pt", "training-state-00000010.pt"]  # the two newest are kept
    again = TrainingState(tmp_path, {"net": net})
    again.restore()
    assert again.step == 10


def test_states_that_cannot_be_resumed_are_named(tmp_path):
    net, opt, _ = _parts(0)
    st = TrainingState(tmp_path, {"net": net})
    st.step = 1
    st.save()
    with pytest.raises(GanprintError, match=r"training-state-00000001\.pt lacks opt"):  # another trainer's
        TrainingState(tmp_path, {"net": net, "opt": opt}).restore()
    with pytest.raises(GanprintError, match=r"training-state-00000001\.pt does not fit this run.*new `outdir`"):
        TrainingState(tmp_path, {"net": torch.nn.Linear(5, 2)}).restore()
    (tmp_path / "training-state-00000002.pt").write_bytes(b"PK\x03\x04 torn")
    with pytest.raises(GanprintError, match=r"training-state-00000002\.pt cannot be read.*delete it"):
        TrainingState(tmp_path, {"net": net}).restore()
