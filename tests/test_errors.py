"""Errors name parameters; only the command line tells them by their flags (issue 23)."""

from __future__ import annotations

import pytest

from conftest import REPO_ROOT, run_cli
from neurolocal.cli import PARAMETER_FLAGS, _as_flags
from neurolocal.errors import ConfigError, NeurolocalError, TrainingDiverged, param
from neurolocal.training.session import RunRequest, run_training


def test_a_parameter_reads_as_its_name_in_python_and_as_its_flag_on_the_command_line():
    error = ConfigError(f"{param('resume')} continues in its own directory; drop "
                        f"{param('out')}")
    assert str(error) == "`resume` continues in its own directory; drop `out`"
    assert _as_flags(error) == "--resume continues in its own directory; drop --out"
    # an engine parameter as the field; a parameter the table does not know stays a name
    assert _as_flags(ConfigError("bad", field="staleness")) == "--staleness: bad"
    assert _as_flags(ConfigError(f"see {param('nothing_like_it')}")) == "see `nothing_like_it`"
    # located / within keep the parameters
    assert _as_flags(error.located(source="x")) == f"x: {_as_flags(error)}"


def test_the_table_maps_every_parameter_to_a_flag():
    assert all(flag.startswith("--") for flag in PARAMETER_FLAGS.values())
    assert PARAMETER_FLAGS["traffic_log"] == "--traffic-log"
    assert PARAMETER_FLAGS["batch_size"] == "--batch-size"


def test_training_diverged_is_its_own_error():
    assert issubclass(TrainingDiverged, NeurolocalError)
    assert not issubclass(TrainingDiverged, ConfigError)


def test_the_library_names_the_parameter_and_the_cli_the_flag(tmp_path):
    request = RunRequest(topology=str(REPO_ROOT / "topologies/mlp.yaml"), overrides={},
                         out=str(tmp_path / "b"), resume=str(tmp_path / "a"), quiet=True)
    with pytest.raises(ConfigError) as error:
        run_training(request)
    assert "--" not in str(error.value) and "`resume`" in str(error.value)
    done = run_cli("run", REPO_ROOT / "topologies/mlp.yaml", "--resume", tmp_path / "a",
                   "--out", tmp_path / "b")
    assert done.returncode == 2
    assert done.stderr.strip() == ("neurolocal: error: --resume continues in its own "
                                   "directory; drop --out")
