"""The library behind `ganprint metrics threshold / pvalue / attacks`."""

import json
import math

import pytest
from click.testing import CliRunner

from ganprint.cli import main
from ganprint.core.errors import GanprintError
from ganprint.evaluation.metrics import describe_attacks, detection_threshold, match_p_value
from ganprint.evaluation.model_attacks import MODEL_ATTACK_SPECS
from ganprint.perturb.attacks import ATTACKS


def test_detection_threshold_known_answers_and_text():
    t = detection_threshold(100, 1e-6, 10**6)
    assert (t.threshold, t.bit_accuracy) == (85, 0.85) and t.p_value_at_threshold <= 1e-12
    assert list(t.as_dict()) == ["fingerprint_length", "fpr", "keys", "threshold", "bit_accuracy",
                                 "p_value_at_threshold"]
    assert str(t).startswith("85 of 100 bits") and str(t).endswith("/1000000 keys")
    none = detection_threshold(8, 1e-6)
    assert none.threshold == 9 and none.bit_accuracy is None and str(none).startswith("no threshold")
    with pytest.raises(GanprintError, match="`fpr`"):
        detection_threshold(100, 1.5)


def test_match_p_value_from_matches_or_accuracy():
    a = match_p_value(100, bit_accuracy=0.93)
    assert a.matches == 93 and a.p_value == pytest.approx(1.36e-20, rel=0.01)
    assert match_p_value(100, matches=93) == a
    long = match_p_value(2048, matches=2000)  # p underflows a double; its log10 does not
    assert long.p_value == 0.0 and math.isfinite(long.log10_p) and -530 < long.log10_p < -510
    for kw, words in [({}, "exactly one"), ({"matches": 1, "bit_accuracy": 0.5}, "exactly one"),
                      ({"matches": 101}, "larger than `fingerprint_length`")]:
        with pytest.raises(GanprintError, match=words):
            match_p_value(100, **kw)


def test_describe_attacks_lists_every_attack_and_model_attack():
    text = describe_attacks()
    names = {line.split()[0] for line in text.splitlines() if line and not line.startswith(("suite", "model"))}
    assert set(ATTACKS) | set(MODEL_ATTACK_SPECS) <= names and "color" not in names  # color: training only
    assert "suite standard: jpeg noise blur crop resize" in text


def test_cli_prints_the_library_results():
    r = CliRunner().invoke(main, ["metrics", "pvalue", "--fingerprint-length", "4096", "--matches", "4000", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output) == json.loads(json.dumps(match_p_value(4096, 4000).as_dict()))
    r = CliRunner().invoke(main, ["metrics", "pvalue", "--fingerprint-length", "8", "--matches", "9"])
    assert r.exit_code == 1 and "--matches 9 is larger than --fingerprint-length 8" in r.output
    r = CliRunner().invoke(main, ["metrics", "threshold", "--fingerprint-length", "100", "--fpr", "2"])
    assert r.exit_code == 2 and "'--fpr': must be a finite number in (0, 1)" in r.output and "Traceback" not in r.output


@pytest.mark.parametrize("command", ["threshold", "pvalue"])
def test_the_old_bits_flag_still_works_with_a_warning(command):
    argv = ["metrics", command, "--bits", "100", *(["--matches", "93"] if command == "pvalue" else []), "--json"]
    r = CliRunner().invoke(main, argv)
    assert r.exit_code == 0 and json.loads(r.stdout)["fingerprint_length"] == 100
    assert "--bits is the old name of --fingerprint-length" in r.stderr
    assert "--bits" not in CliRunner().invoke(main, ["metrics", command, "--help"]).output
