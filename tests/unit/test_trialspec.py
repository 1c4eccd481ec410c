"""Command trials on paper: spec form, canonical strings, placeholders, the exact-argv allowlist,
and the trial-side APIs (evoq.trial and the NNI shim) over a real pipe."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from evoq.loader import Allowlist, TrialLoadError, parse_allow, parse_command
from evoq.spec import SpecError, parse_spec
from evoq.trialspec import CommandTrial, TrialSpecError, describe, parse_trial

SHIM = Path(__file__).resolve().parents[2] / "workers" / "nni_shim" / "nni" / "__init__.py"


def test_a_spec_table_becomes_one_canonical_string_that_parses_back():
    spec = parse_spec({"name": "c", "trial": {"command": ["python3", "main.py", "--lr={lr}"], "cwd": "./mnist/"},
                       "space": {"lr": [0.1, 0.2]}})  # fmt: skip
    assert spec.trial == 'command:{"args":"none","command":["python3","main.py","--lr={lr}"],"cwd":"mnist"}'
    trial = parse_trial(spec.trial)
    assert isinstance(trial, CommandTrial) and trial.cwd == "mnist"
    assert describe(spec.trial) == "python3 main.py '--lr={lr}' (in mnist)"
    assert parse_trial("pkg.mod:train") == "pkg.mod:train"


@pytest.mark.parametrize(
    "trial",
    [
        {"command": []},
        {"command": "python main.py"},
        {"command": ["python", 3]},
        {"command": ["python"], "cwd": "/etc"},
        {"command": ["python"], "cwd": "../x"},
        {"command": ["python"], "cwd": "a/../../x"},
        {"command": ["python"], "args": "all"},
        {"command": ["python", "--x={"]},
        {"command": ["python"], "shell": True},
        {"command": ["python\0"]},
    ],
)
def test_malformed_command_trials_are_refused_by_name(trial):
    with pytest.raises(SpecError, match="key 'trial'"):
        parse_spec({"name": "c", "trial": trial, "space": {"x": [1]}})


def test_placeholders_fill_one_element_each_and_flags_append_data():
    trial = CommandTrial(("train", "--lr={lr}", "{{literal}}", "{opt}"), args="flags")
    argv = trial.argv({"lr": 0.1, "opt": "adam; rm -rf /", "layers": [1, 2]})
    assert argv == ["train", "--lr=0.1", "{literal}", "adam; rm -rf /",
                    "--lr", "0.1", "--opt", "adam; rm -rf /", "--layers", "[1, 2]"]  # fmt: skip
    with pytest.raises(TrialSpecError, match="does not have"):
        CommandTrial(("train", "{missing}")).argv({"lr": 1})
    with pytest.raises(TrialSpecError, match="cannot be a --flag"):
        CommandTrial(("train",), args="flags").argv({"-c": 1})


@given(st.dictionaries(st.from_regex(r"[a-z]{1,6}", fullmatch=True), st.text(max_size=20), max_size=4))
def test_a_value_never_becomes_another_argument(config):
    template = ("prog", *(f"--{k}={{{k}}}" for k in config))
    argv = CommandTrial(template).argv(config)
    assert len(argv) == len(template)
    assert all(a.startswith(f"--{k}=") for a, k in zip(argv[1:], config, strict=True))


def test_the_command_allowlist_compares_argv_folder_and_mode_exactly():
    allow = parse_allow(
        "evoq.examples.*", ["python3 main.py --epochs 5", '{"command": ["python3", "t.py"], "cwd": "sub"}']
    )
    ok = CommandTrial(("python3", "main.py", "--epochs", "5")).canonical()
    assert allow.refusal(ok) is None
    assert allow.refusal(CommandTrial(("python3", "t.py"), cwd="sub").canonical()) is None
    for refused in (
        CommandTrial(("python3", "main.py", "--epochs", "5", "--extra")),
        CommandTrial(("python3", "main.py", "--epochs", "6")),
        CommandTrial(("python3", "-c", "import os")),
        CommandTrial(("python3", "main.py", "--epochs", "5"), cwd="sub"),
        CommandTrial(("python3", "main.py", "--epochs", "5"), args="flags"),
        CommandTrial(("python3", "./main.py", "--epochs", "5")),
        CommandTrial(("python3", "t.py")),
    ):
        why = allow.refusal(refused.canonical())
        assert why is not None and "not one this worker may run" in why
    assert Allowlist(()).refusal(ok) is not None
    assert "canonical" in (allow.refusal(ok.replace(",", ", ")) or "")
    with pytest.raises(TrialLoadError, match="allowed command"):
        parse_command('{"command": "nope"}')


def pipe_env(monkeypatch: pytest.MonkeyPatch, config: dict) -> int:
    r, w = os.pipe()
    monkeypatch.setenv("EVOQ_CONFIG", json.dumps(config))
    monkeypatch.setenv("EVOQ_REPORT_FD", str(w))
    monkeypatch.setenv("EVOQ_TRIAL_ID", "exp-7-1")
    monkeypatch.setenv("EVOQ_EXPERIMENT", "exp")
    monkeypatch.setenv("EVOQ_TRIAL", "7")
    return r


def read_lines(r: int) -> list[dict]:
    os.set_blocking(r, False)
    data = os.read(r, 65536)
    return [json.loads(line) for line in data.splitlines()]


def test_the_nni_shim_speaks_nni_s_trial_api(monkeypatch):
    r = pipe_env(monkeypatch, {"lr": 0.1})
    spec = importlib.util.spec_from_file_location("nni_shim_under_test", SHIM)
    assert spec and spec.loader
    nni = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(nni)
    assert nni.get_next_parameter() == {"lr": 0.1} and nni.get_current_parameter("lr") == 0.1
    nni.report_intermediate_result(0.5)
    nni.report_intermediate_result({"default": 0.6, "loss": 1.2})
    nni.report_final_result(0.9)
    assert (nni.get_trial_id(), nni.get_experiment_id(), nni.get_sequence_id()) == ("exp-7-1", "exp", 7)
    assert read_lines(r) == [{"intermediate": 0.5, "step": 0}, {"intermediate": {"default": 0.6, "loss": 1.2}, "step": 1},
                             {"final": 0.9}]  # fmt: skip
    sys.modules.pop("nni_shim_under_test", None)


def test_evoq_s_own_trial_api(monkeypatch):
    import evoq.trial

    r = pipe_env(monkeypatch, {"x": 3})
    assert evoq.trial.config() == {"x": 3}
    evoq.trial.report_intermediate(0.25, step=4)
    evoq.trial.report(0.5)
    assert read_lines(r) == [{"intermediate": 0.25, "step": 4}, {"final": 0.5}]
    monkeypatch.delenv("EVOQ_CONFIG")
    with pytest.raises(evoq.trial.NotATrialError):
        evoq.trial.config()
