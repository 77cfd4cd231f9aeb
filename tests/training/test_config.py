"""`--config FILE` / `ganprint.config(config_file=...)`: a run's own config.json gives back the run's config."""

import json

import pytest
from click.testing import CliRunner

import ganprint
from ganprint.artificial.train import train_stega
from ganprint.cli import main
from ganprint.core.errors import GanprintError
from tests.artificial.test_train import DictDataset, tiny_cfg


def test_a_runs_config_json_gives_back_its_config_and_flags_override_it(tmp_path):
    cfg = tiny_cfg(steps=2)
    train_stega(cfg, tmp_path / "run", data=DictDataset(), device="cpu", progress=False)
    recorded = tmp_path / "run" / "config.json"
    assert "git_sha" in json.loads(recorded.read_text())  # provenance, ignored when read back
    assert ganprint.config("artificial", config_file=recorded) == cfg
    assert ganprint.config("artificial", config_file=recorded, lr=0.5) == tiny_cfg(steps=2, lr=0.5)
    # The same run again from its own file resumes (finished: nothing to do) instead of being refused.
    assert train_stega(ganprint.config("artificial", config_file=recorded), tmp_path / "run", data=DictDataset(),
                       device="cpu", progress=False).is_file()
    with pytest.raises(GanprintError, match="give `preset` or `config_file`, not both"):
        ganprint.config("artificial", "demo-32", config_file=recorded)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**json.loads(recorded.read_text()), "bogus": 1, "fingerprint_length": 0}))
    with pytest.raises(GanprintError, match=r"`config_file` .*bad.json: unknown training options \['bogus'\]"):
        ganprint.config("artificial", config_file=bad)
    bad.write_text(json.dumps({"fingerprint_length": 0}))
    with pytest.raises(GanprintError, match="`fingerprint_length`"):  # values are validated like flags
        ganprint.config("artificial", config_file=bad)
    bad.write_text("[1, 2]")
    with pytest.raises(GanprintError, match="holds no JSON object"):
        ganprint.config("artificial", config_file=bad)


@pytest.mark.parametrize("command, preset, system", [("train", "demo-32", "artificial"),
                                                     ("train-gan", "small", "gan"),
                                                     ("train-scalable", "tiny", "scalable"),
                                                     ("train-diffusion", "tiny-16", "diffusion")])
def test_every_train_command_reads_back_what_its_dry_run_writes(tmp_path, command, preset, system):
    runner = CliRunner()
    first = runner.invoke(main, [command, "--preset", preset, "--data", "d", "--outdir", str(tmp_path / "r"),
                                 "--seed", "3", "--dry-run"])
    assert first.exit_code == 0, first.output
    path = tmp_path / "config.json"
    path.write_text(first.output)
    again = runner.invoke(main, [command, "--config", str(path), "--data", "d", "--outdir", str(tmp_path / "r"),
                                 "--dry-run"])
    assert again.exit_code == 0, again.output
    assert json.loads(again.output) == json.loads(first.output)
    changed = runner.invoke(main, [command, "--config", str(path), "--data", "d", "--outdir", str(tmp_path / "r"),
                                   "--seed", "4", "--dry-run"])
    assert json.loads(changed.output)["seed"] == 4  # a flag overrides the file
    both = runner.invoke(main, [command, "--config", str(path), "--preset", preset, "--data", "d", "--outdir",
                                str(tmp_path / "r"), "--dry-run"])
    assert both.exit_code != 0 and "give --preset or --config, not both" in both.output
    if system != "diffusion":  # the others record `data` in the config itself
        assert ganprint.config(system, config_file=path) == ganprint.config(system, preset, data="d", seed=3)
