"""The simulated-time engine (`--engine sim`, docs/asynchrony.md): a transport over the
round machine. Synchronous rounds equal the local engine bit for bit whatever the
delays; seeds reproduce runs; fixed mode with eta = 1 and staleness S is exact after
T* = 1 + (depth - 1)(S + 1) rounds (checked against torch on 20 random DAGs); lost
messages are counted, retransmitted ones change nothing."""

import numpy as np
import pytest

from neurolocal import graph_from_dict
from neurolocal.engines.local import LocalEngine
from neurolocal.engines.sim import Asynchrony, SimEngine
from neurolocal.asynchrony.config import parse_section
from neurolocal.asynchrony.models import Pause, VertexTiming, parse_distribution
from neurolocal.generate import random_dag
from neurolocal.gradcheck import synthetic_batch
from neurolocal.topology import load_topology
from torch_graph import max_relative_error, torch_gradients

TOPOLOGIES = ["mlp", "dag", "cnn", "rnn", "lstm"]
UNROLLED = ("rnn", "lstm")


def cases():
    """(topology, mode, schedule) for every schedule that applies to the topology."""
    for name in TOPOLOGIES:
        yield name, "fixed", "jacobi"
        yield name, "fixed", "event"
        yield name, "strict", "jacobi"
        if name in UNROLLED:
            yield name, "fixed", "backward-in-time"
        else:
            yield name, "strict", "ipc"       # ipc refuses tied parameters


def assert_same(a, b):
    assert a.dtheta.keys() == b.dtheta.keys()
    for v, grads in a.dtheta.items():
        for k, g in grads.items():
            np.testing.assert_array_equal(g, b.dtheta[v][k])
    for key in ("errors", "input_feedback"):
        x, y = getattr(a, key), getattr(b, key)
        assert x.keys() == y.keys()
        for v in x:
            np.testing.assert_array_equal(x[v], y[v])
    np.testing.assert_array_equal(a.energy, b.energy)
    assert a.loss == b.loss and a.messages == b.messages
    np.testing.assert_array_equal(a.prediction, b.prediction)


def spec(**fields):
    return parse_section(fields)


@pytest.mark.parametrize("name,mode,schedule", list(cases()))
def test_synchronous_sim_equals_the_local_engine_bit_for_bit(name, mode, schedule):
    """Zero delays, S = 0: the local engine's numbers and message counts. And with
    random delays, stragglers and reordering too: S = 0 waits for exactly the
    synchronous sweep's messages, so only the simulated time changes."""
    graph = load_topology(f"topologies/{name}.yaml").graph
    params = graph.init_params(3)
    batches = [synthetic_batch(graph, 4, seed=s) for s in (1, 2)]
    T = graph.depth + 1 if schedule != "backward-in-time" else 2
    eta = 1.0 if mode == "fixed" else 0.1
    local = LocalEngine(graph, params, mode=mode, schedule=schedule)
    quiet = SimEngine(graph, params, mode=mode, schedule=schedule)
    hidden = graph.hidden[len(graph.hidden) // 2]
    noisy = SimEngine(graph, params, mode=mode, schedule=schedule, seed=5,
                      asynchrony=spec(delay="exp:2", reorder=True,
                                      vertices={hidden: {"slow": 3}}))
    times = []
    for inputs, target in batches:
        want = local.relax(inputs, target, eta=eta, iterations=T, read_inputs=True)
        for engine in (quiet, noisy):
            got = engine.relax(inputs, target, eta=eta, iterations=T, read_inputs=True)
            assert_same(got, want)
            times.append(got.extras["report"]["sim_time"])
    assert times[1] > times[0] and times[3] > times[2]   # delays cost simulated time only


def relax_async(graph, params, batch, seed, S=2, T=12, **fields):
    engine = SimEngine(graph, params, staleness=S, seed=seed,
                       asynchrony=spec(**({"delay": "exp:1"} | fields)))
    return engine.relax(*batch, eta=0.5, iterations=T)


@pytest.mark.parametrize("name", ["mlp", "dag"])
def test_a_seed_reproduces_a_run_and_another_seed_does_not(name):
    graph = load_topology(f"topologies/{name}.yaml").graph
    params = graph.init_params(0)
    batch = synthetic_batch(graph, 4, seed=0)
    extra = dict(drop=0.05, reorder=True, vertices={graph.hidden[0]: {"compute": "uniform:0.5,2"}})
    a = relax_async(graph, params, batch, seed=1, **extra)
    b = relax_async(graph, params, batch, seed=1, **extra)
    c = relax_async(graph, params, batch, seed=2, **extra)
    assert_same(a, b)
    assert a.extras == b.extras
    differs = [not np.array_equal(g, c.dtheta[v][k]) for v, gs in a.dtheta.items()
               for k, g in gs.items()]
    assert any(differs) and a.extras["report"]["sim_time"] != c.extras["report"]["sim_time"]


def exact_round_bound(depth: int, staleness: int) -> int:
    """docs/asynchrony.md §3: fixed mode, eta = 1, every feedback at most S rounds old."""
    return 0 if depth == 0 else 1 + (depth - 1) * (staleness + 1)


DAG_SEEDS = list(range(20))


def test_bounded_staleness_is_exact_after_the_stated_bound_on_20_random_dags():
    """For each DAG: S in 1..3 and a random delay model (some delays far beyond S
    rounds: the machine waits, so no feedback is older than S). At T* every parameter
    is within 1e-10 of torch's gradient; the synchronous bound T = depth is not enough
    for some DAG (asynchrony costs rounds), and the trace's oldest feedback is <= S."""
    rng = np.random.default_rng(2026)
    models = ["exp:1", "uniform:0,3", "lognormal:1,1", "const:2", "exp:4"]
    short_of_bound = []
    for seed in DAG_SEEDS:
        graph = graph_from_dict(random_dag(seed, vertices=int(rng.integers(6, 14))))
        params = graph.init_params(seed)
        inputs, target = synthetic_batch(graph, 5, seed=seed)
        _, reference = torch_gradients(graph, params, inputs, target)
        S = int(rng.integers(1, 4))
        model = models[seed % len(models)]
        straggler = {graph.hidden[int(rng.integers(len(graph.hidden)))]: {"slow": 2.5}}
        asynchrony = spec(delay=model, vertices=straggler, reorder=bool(seed % 2))
        bound = exact_round_bound(graph.depth, S)
        engine = SimEngine(graph, params, staleness=S, seed=seed, asynchrony=asynchrony)
        got = engine.relax(inputs, target, eta=1.0, iterations=bound)
        error = max_relative_error(got.dtheta, reference)[0]
        assert error <= 1e-10, (seed, S, model, graph.depth, bound, error)
        assert got.extras["report"]["max_feedback_age"] <= S
        early = SimEngine(graph, params, staleness=S, seed=seed, asynchrony=asynchrony)
        short = early.relax(inputs, target, eta=1.0, iterations=graph.depth)
        short_of_bound.append(max_relative_error(short.dtheta, reference)[0])
    assert max(short_of_bound) > 1e-6     # the bound is not vacuous: fewer rounds fall short


def test_lost_messages_are_counted_and_retransmission_is_exact():
    graph = load_topology("topologies/dag.yaml").graph
    params = graph.init_params(0)
    batch = synthetic_batch(graph, 4, seed=0)
    want = LocalEngine(graph, params, schedule="event").relax(*batch, eta=1.0,
                                                              iterations=graph.depth)
    lossy = SimEngine(graph, params, schedule="event", seed=3,
                      asynchrony=spec(delay="exp:1", drop=0.2))
    got = lossy.relax(*batch, eta=1.0, iterations=graph.depth)
    assert got.extras["report"]["messages_lost"] > 0
    assert np.isfinite(got.loss) and got.dtheta.keys() == want.dtheta.keys()
    resent = SimEngine(graph, params, schedule="event", seed=3,
                       asynchrony=spec(delay="exp:1", drop=0.2, retransmit=True))
    again = resent.relax(*batch, eta=1.0, iterations=graph.depth)
    report = again.extras["report"]
    assert report["messages_lost"] == 0 and report["messages_retransmitted"] > 0
    assert_same(again, want)
    assert report["sim_time"] > SimEngine(graph, params, schedule="event").relax(
        *batch, eta=1.0, iterations=graph.depth).extras["report"]["sim_time"]


def test_stragglers_and_pauses_cost_simulated_time():
    graph = load_topology("topologies/mlp.yaml").graph
    params = graph.init_params(0)
    batch = synthetic_batch(graph, 4, seed=0)

    def time_of(vertices):
        engine = SimEngine(graph, params, asynchrony=Asynchrony(vertices=vertices))
        return engine.relax(*batch, eta=1.0).extras["report"]["sim_time"]

    base = time_of({})
    slow = time_of({"hidden2": VertexTiming(slow=4.0)})
    paused = time_of({"hidden2": VertexTiming(pause=Pause(at=0.0, length=50.0))})
    assert base < slow < paused
    assert paused >= 50.0


def test_distributions():
    rng = np.random.default_rng(0)
    exp = parse_distribution("exp:2", "delay")
    draws = [exp.sample(rng, 1.0) for _ in range(20000)]
    assert abs(np.mean(draws) - 2) < 0.1
    logn = parse_distribution("lognormal:3,0.5", "delay")
    assert abs(np.mean([logn.sample(rng, 1.0) for _ in range(20000)]) - 3) < 0.1
    ms = parse_distribution("uniform:2ms,4ms", "delay")
    assert 0.5 <= ms.sample(rng, 4.0) <= 1.0 and ms.upper(4.0) == 1.0
    assert parse_distribution("3", "delay").mean() == 3.0


TINY = """
name: tiny-digits
vertices:
  - {name: image, op: input, shape: [64]}
  - {name: hidden, op: dense, parents: [image], units: 8, activation: tanh}
  - {name: hidden2, op: dense, parents: [hidden], units: 8, activation: tanh}
  - {name: logits, op: dense, parents: [hidden2], units: 10}
output: logits
loss: softmax_cross_entropy
training: {data: digits, epochs: 1, batch_size: 128, optimizer: {name: adam, lr: 0.01}}
"""


def test_training_on_the_sim_engine(tmp_path, capsys):
    """`run --engine sim` with S = 0 and random delays ends with the local engine's
    parameters bit for bit; with loss, metrics.json reports the messages lost."""
    from neurolocal.cli import main
    from neurolocal.training import read_checkpoint_settings  # noqa: F401  (public surface)

    topology = tmp_path / "tiny.yaml"
    topology.write_text(TINY)
    outs = {}
    for name, flags in [("local", ["--engine", "local"]),
                        ("sim", ["--engine", "sim", "--delay", "exp:2", "--straggler",
                                 "hidden:3"]),
                        ("lossy", ["--engine", "sim", "--drop", "0.05"])]:
        outs[name] = tmp_path / name
        assert main(["run", str(topology), *flags, "--out", str(outs[name]), "--quiet",
                     "--no-traffic-log"]) == 0
    a = np.load(outs["local"] / "checkpoint-pc.npz")
    b = np.load(outs["sim"] / "checkpoint-pc.npz")
    params = [k for k in a.files if k.startswith("param")]
    assert params
    for key in params:
        np.testing.assert_array_equal(a[key], b[key])
    import json

    report = json.loads((outs["lossy"] / "metrics.json").read_text())["runs"]["pc"]
    assert report["engine_report"]["messages_lost"] > 0
    assert json.loads((outs["sim"] / "metrics.json").read_text())["runs"]["pc"][
        "engine_report"]["sim_time"] > 0


@pytest.mark.parametrize("flags,message", [
    (["--engine", "local", "--delay", "exp:1"], "delay: delays, loss and stragglers are "
                                                "simulated: they need the sim engine"),
    (["--engine", "sim", "--delay", "exp:-1"], "argument --delay"),
    (["--engine", "sim", "--drop", "1"], "argument --drop"),
    (["--engine", "sim", "--straggler", "nobody:2"], "straggler: no vertex named 'nobody'"),
    (["--engine", "sim", "--straggler", "hidden1:pause:x:1"], "VERTEX:pause:AT:FOR"),
    (["--engine", "sim", "--staleness", "2", "--mode", "strict"], "fixed mode only"),
])
def test_bad_asynchrony_flags_end_in_one_line(capsys, flags, message):
    from neurolocal.cli import main

    try:
        code = main(["check-grad", "topologies/mlp.yaml", *flags])
    except SystemExit as exc:          # argparse's own one-line error
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


@pytest.mark.parametrize("section,message", [
    ({"delay": "exp"}, "asynchrony.delay: exponential takes 1 number(s)"),
    ({"edges": {"logits->image": {"delay": 1}}}, "are not neighbours"),
    ({"edges": {"hidden1": {"delay": 1}}}, "an edge is written SRC->DST"),
    ({"vertices": {"hidden1": {"pause": {"at": 1}}}}, "a pause needs `for`"),
    ({"vertices": {"hidden1": {"slow": 0}}}, "asynchrony.vertices.hidden1.slow"),
    ({"jitter": 1}, "unknown key(s) ['jitter']"),
])
def test_bad_asynchrony_sections_end_in_one_line(tmp_path, capsys, section, message):
    import yaml

    from neurolocal.cli import main

    document = yaml.safe_load(open("topologies/mlp.yaml"))
    document["asynchrony"] = section
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump(document))
    assert main(["validate", str(path)]) == 2               # the topology's section
    side = tmp_path / "side.yaml"
    side.write_text(yaml.safe_dump(section))
    assert main(["check-grad", "topologies/mlp.yaml", "--engine", "sim",
                 "--asynchrony", str(side)]) == 2           # the side file
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2 and all(message in line for line in lines)
    assert str(side) in lines[1]


def test_a_side_file_and_the_topology_section_apply(tmp_path):
    """Precedence: topology section < side file < flags."""
    import yaml

    from dataclasses import replace

    from neurolocal.asynchrony.options import SimOptions, asynchrony_from_options

    graph = load_topology("topologies/mlp.yaml").graph
    document = yaml.safe_load(open("topologies/mlp.yaml"))
    document["asynchrony"] = {"delay": "exp:1", "drop": 0.1, "vertices": {"hidden1": {"slow": 2}}}
    topology = tmp_path / "t.yaml"
    topology.write_text(yaml.safe_dump(document))
    side = tmp_path / "side.yaml"
    side.write_text(yaml.safe_dump({"asynchrony": {"drop": 0.2, "seed": 7}}))
    options = SimOptions(topology=str(topology), asynchrony=str(side), reorder=True,
                         straggler=("hidden2:pause:1:5",))
    spec = asynchrony_from_options(options, graph)
    assert spec.delay.text() == "exp:1" and spec.drop == 0.2 and spec.seed == 7
    assert spec.reorder and spec.vertices["hidden1"].slow == 2
    assert spec.vertices["hidden2"].pause.length == 5
    assert asynchrony_from_options(replace(options, drop=0.0), graph).drop == 0.0


@pytest.mark.parametrize("mode,schedule", [("fixed", "event"), ("strict", "ipc")])
def test_vertices_training_their_own_weights_in_simulated_time(mode, schedule):
    """train_step on the sim engine (S = 0, random delays, a straggler): every vertex's
    parameters and Adam state after three batches equal the local engine's bit for bit
    — iPC (a weight step every round) included."""
    from neurolocal.engines.rounds import Learning
    from neurolocal.optimizers import make_optimizer

    graph = load_topology("topologies/mlp.yaml").graph
    batches = [synthetic_batch(graph, 8, seed=s) for s in range(3)]
    learning = Learning("adam", 0.01, factory=make_optimizer)
    snapshots = []
    for engine in (LocalEngine(graph, graph.init_params(0), mode=mode, schedule=schedule),
                   SimEngine(graph, graph.init_params(0), mode=mode, schedule=schedule,
                             seed=4, asynchrony=spec(delay="exp:1.5",
                                                     vertices={"hidden1": {"slow": 3}}))):
        engine.restore(graph.init_params(0), None, learning)
        losses = [engine.train_step(x, y, eta=0.5, iterations=3).loss for x, y in batches]
        snapshots.append((losses, engine.snapshot()))
    (losses_a, (params_a, adam_a)), (losses_b, (params_b, adam_b)) = snapshots
    assert losses_a == losses_b and len(set(losses_a)) == 3
    for v in params_a:
        for k in params_a[v]:
            np.testing.assert_array_equal(params_a[v][k], params_b[v][k])
    assert adam_a.keys() == adam_b.keys()
    for key in adam_a:
        np.testing.assert_array_equal(adam_a[key], adam_b[key])
