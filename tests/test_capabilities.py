"""The capability table (issue 23): every transport declares what it can do once, the
engine checks an `EngineConfig` against it when it opens, and every unsupported
combination is refused in one line that names the engine and the parameter."""

import pytest

from neurolocal.asynchrony.options import SimOptions
from neurolocal.engines import open_engine
from neurolocal.engines.capabilities import CAPABILITIES, Capabilities, check_capabilities
from neurolocal.engines.config import EngineConfig
from neurolocal.errors import ConfigError
from neurolocal.topology import load_topology
from conftest import TOPOLOGIES, run_cli

#: for each capability: a config change that needs it, and the parameter refused
NEEDS = {
    "staleness": ({"staleness": 2}, "staleness"),
    "asynchrony": ({"sim": SimOptions(delay="exp:1")}, "delay"),
    "float32": ({"dtype": "float32"}, "dtype"),
    "pipelining": ({"pipeline": 2}, "pipeline"),
    "posting_ahead": ({"post_ahead": 5}, "post_ahead"),
    "fault_injection": ({"fault": (0, 0)}, "fault"),
    "placement": ({"address": "auto"}, "address"),
}


def test_every_capability_has_a_request_and_every_transport_a_row():
    fields = set(Capabilities.__dataclass_fields__)
    assert set(NEEDS) | {"watch_rounds"} == fields
    assert set(CAPABILITIES) == {"local", "sim", "ray", "threads"}


@pytest.mark.parametrize("engine", sorted(CAPABILITIES))
@pytest.mark.parametrize("capability", sorted(NEEDS))
def test_the_table_is_walked_whole(engine, capability):
    """Supported: accepted. Not supported: refused, naming an engine and the parameter
    (no flag: only the CLI names flags)."""
    change, field = NEEDS[capability]
    config = EngineConfig(engine=engine, **change)
    if getattr(CAPABILITIES[engine], capability):
        check_capabilities(config)
        return
    with pytest.raises(ConfigError) as refused:
        check_capabilities(config)
    assert refused.value.field == field
    text = refused.value.detail
    assert " engine" in text and "--" not in text and "\n" not in text, text


def test_refused_before_anything_starts(tmp_path):
    """open_engine refuses before a traffic log or an actor exists."""
    graph = load_topology(TOPOLOGIES / "mlp.yaml").graph
    with pytest.raises(ConfigError):
        open_engine(EngineConfig(engine="local", staleness=2, traffic_log=str(tmp_path / "t")),
                    graph, graph.init_params(0))
    assert not (tmp_path / "t").exists()


def test_watching_rounds_needs_an_engine_with_rounds():
    from neurolocal.engines.sim import SimEngine
    from neurolocal.gradcheck import synthetic_batch

    graph = load_topology(TOPOLOGIES / "mlp.yaml").graph
    x, y = synthetic_batch(graph, 2)
    with pytest.raises(ValueError, match="sim engine"):
        SimEngine(graph).relax(x, y, on_round=print)


@pytest.mark.parametrize("args, flag", [
    (["--staleness", "2", "--engine", "local"], "--staleness"),
    (["--dtype", "float32", "--engine", "sim"], "--dtype"),
    (["--post-ahead", "2", "--engine", "local"], "--post-ahead"),
    (["--address", "auto", "--engine", "sim"], "--address"),
])
def test_the_cli_refuses_in_one_line_naming_the_flag_and_the_engine(args, flag):
    done = run_cli("check-grad", TOPOLOGIES / "mlp.yaml", *args)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert lines[0].startswith(f"neurolocal: error: {flag}: ") and "engine" in lines[0]
