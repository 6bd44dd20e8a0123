"""Damaged traffic logs: every one ends in one line and exit 2, or reads with a warning
where the format promises a partial read (a file cut mid-record), never a traceback, a
hang or an allocation sized by the damage.

A seeded generator damages a real log (the local engine's, DAG topology, Jacobi, two
batches) in every way listed below; each case runs `traffic summary` and `traffic
audit` in process (through `neurolocal.cli.main`, so an escaping exception fails the
test), and a sample of them runs as a subprocess of the real CLI under resource limits
(address space and CPU seconds, set with `resource.setrlimit` in the child).

    cuts        every byte position of the file (exhaustive)
    bit flips   one bit anywhere, header included
    overwrites  ten random bytes at a random place
    shapes      records and energy maps of the wrong shape or type, headers whose
                settings are absurd (iterations 10**12) or of the wrong type
    files       a subdirectory, a directory or FIFO named *.traffic, a symlink to a
                device, an empty directory, a plain file given as the directory
"""

import os
import random
import resource
import shutil
import subprocess
import sys
import warnings

import msgpack
import pytest

from neurolocal import LocalEngine, load_topology
from neurolocal.cli import main
from neurolocal.errors import NeurolocalError
from neurolocal.gradcheck import synthetic_batch
from neurolocal.traffic import TrafficRecorder, read_traffic
from conftest import REPO_ROOT, TOPOLOGIES

DAG = TOPOLOGIES / "dag.yaml"
SEED = 20261129
FLIPS, OVERWRITES, SUBPROCESS_SAMPLE = 300, 200, 12


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A real log: its directory, the file's bytes, the byte offset after each object."""
    directory = tmp_path_factory.mktemp("base")
    graph = load_topology(DAG).graph
    settings = {"engine": "local", "mode": "fixed", "schedule": "jacobi", "eta": 1.0,
                "iterations": 4, "read_inputs": False}
    recorder = TrafficRecorder(directory, "run1", "local", graph=graph.name, settings=settings)
    engine = LocalEngine(graph, graph.init_params(0), recorder=recorder)
    for b in range(2):
        inputs, target = synthetic_batch(graph, 4, b)
        engine.relax(inputs, target, eta=1.0, iterations=4)
    engine.close()
    path = next(directory.glob("*.traffic"))
    data = path.read_bytes()
    unpacker = msgpack.Unpacker(raw=False)
    unpacker.feed(data)
    ends, kinds = [], []
    for item in unpacker:
        ends.append(unpacker.tell())
        kinds.append("record" if isinstance(item, list) else "other")
    assert main(["traffic", "audit", str(directory), str(DAG)]) == 0
    return directory, path.name, data, ends, kinds


def write_log(tmp_path, name, data, label):
    directory = tmp_path / label
    directory.mkdir()
    (directory / name).write_bytes(data)
    return directory


def check_cli(capsys, directory, *, audit=True):
    """summary (and audit): exit 0/1/2; exit 2 is exactly one line; 0/1 only warnings."""
    codes = []
    commands = [["traffic", "summary", str(directory)]]
    if audit:
        commands.append(["traffic", "audit", str(directory), str(DAG)])
    for args in commands:
        code = main(args)
        err = capsys.readouterr().err.strip().splitlines()
        assert code in (0, 1, 2), (args, code, err)
        if code == 2:
            assert len(err) == 1 and err[0].startswith("neurolocal: error: "), err
            assert "Traceback" not in err[0]
        else:
            assert all(line.startswith("neurolocal: warning: ") for line in err), err
            assert len(err) <= 1, err
        codes.append(code)
    return codes


def test_every_cut_inside_a_record_is_warned_and_reads_the_whole_records(base, tmp_path):
    directory, name, data, ends, kinds = base
    header_end = ends[0]
    whole_records = [sum(1 for e, k in zip(ends, kinds) if k == "record" and e <= cut)
                     for cut in range(len(data) + 1)]
    boundaries = set(ends)
    target = tmp_path / "cut"
    target.mkdir()
    cases = 0
    for cut in range(1, header_end):  # inside the header: nothing to read, one line
        (target / name).write_bytes(data[:cut])
        with pytest.raises(NeurolocalError, match="before its header|not a traffic log"):
            read_traffic(target)
        cases += 1
    for cut in range(header_end, len(data)):
        (target / name).write_bytes(data[:cut])
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            log = read_traffic(target)
        warned = any("truncated" in str(w.message) for w in caught)
        assert warned == (cut not in boundaries), cut  # a cut between objects is a whole log
        assert len(log) == whole_records[cut], cut
        cases += 1
    assert cases == len(data) - 1 > 1000
    print(f"\ncuts: {cases} cases")


def test_bit_flips_and_overwrites(base, tmp_path, capsys):
    directory, name, data, _, _ = base
    rng = random.Random(SEED)
    outcomes = {0: 0, 1: 0, 2: 0}
    for case in range(FLIPS + OVERWRITES):
        damaged = bytearray(data)
        if case < FLIPS:
            i = rng.randrange(len(data))
            damaged[i] ^= 1 << rng.randrange(8)
        else:
            i = rng.randrange(len(data) - 10)
            damaged[i:i + 10] = bytes(rng.randrange(256) for _ in range(10))
        target = write_log(tmp_path, name, bytes(damaged), f"case{case}")
        for code in check_cli(capsys, target, audit=case % 2 == 0):
            outcomes[code] += 1
        shutil.rmtree(target)
    print(f"\nbit flips {FLIPS}, overwrites {OVERWRITES}: exit codes {outcomes}")
    assert outcomes[2] > 50 and outcomes[0] > 50  # both kinds of outcome are exercised


HEADER = {"format": "neurolocal-traffic", "version": 1, "run": "r", "writer": "w",
          "fields": [], "graph": "dag", "settings": {"schedule": "jacobi", "iterations": 4}}
GOOD = [0, 1, "head", "joined", "error", 256, 1.0, 1.5, "h", "h", "", ""]


def with_field(i, value):
    record = list(GOOD)
    record[i] = value
    return record


SHAPES = {
    # energy records of the wrong shape or type
    "energy not a pair": [{"energy": 5}],
    "energy of one item": [{"energy": [1]}],
    "energy values text": [{"energy": [0, [1.0, "x"]]}],
    "energy batch text": [{"energy": ["a", [1.0]]}],
    "energy batch bool": [{"energy": [True, [1.0]]}],
    "energy values a map": [{"energy": [0, {"a": 1}]}],
    # records of the wrong shape or type
    "batch is text": [with_field(0, "zero")],
    "round is a float": [with_field(1, 1.5)],
    "bytes is text": [with_field(5, "256")],
    "src is a number": [with_field(2, 7)],
    "kind is nil": [with_field(4, None)],
    "t_send is a bool": [with_field(6, True)],
    "t_recv is text": [with_field(7, "late")],
    "a nested list": [with_field(8, ["h"])],
    "a map in a field": [with_field(9, {"h": 1})],
    "bytes in a field": [with_field(10, b"\x00\x01")],
    "eleven fields": [GOOD[:11]],
    "thirteen fields": [GOOD + [1]],
    "a bare number": [42],
    "a bare string": ["record"],
    "batch beyond int64": [with_field(0, 2**64 - 1)],
    "negative batch": [with_field(0, -5)],
    "round 2**62": [with_field(1, 2**62)],
    "a 1 MB vertex name": [with_field(2, "v" * (1 << 20))],
    "infinite times": [with_field(6, float("inf")), with_field(7, float("nan"))],
    "a million distinct names": "names",
    "unknown kind": [with_field(4, "gossip")],
    "unknown side record": [{"consumed": [1, 2, 3]}],
}
HEADERS = {
    "iterations 1e12": {"iterations": 10**12},
    "iterations text": {"iterations": "abc"},
    "iterations negative": {"iterations": -1},
    "iterations bool": {"iterations": True},
    "iterations float": {"iterations": 1.5},
    "eta text": {"eta": "fast"},
    "mode a list": {"mode": ["fixed"]},
    "read_inputs text": {"read_inputs": "yes"},
    "settings a list": None,
}


def shaped_log(tmp_path, label, items, header=HEADER):
    directory = tmp_path / label.replace(" ", "_")
    directory.mkdir()
    if items == "names":  # distinct names beyond the reader's table: refused, bounded
        packer = msgpack.Packer()
        chunks = [packer.pack(header)]
        chunks += [packer.pack(with_field(2, f"v{i}")) for i in range((1 << 20) + 10)]
        (directory / "a.traffic").write_bytes(b"".join(chunks))
        return directory
    body = [msgpack.packb(header)] + [msgpack.packb(GOOD)] + [msgpack.packb(x) for x in items]
    (directory / "a.traffic").write_bytes(b"".join(body))
    return directory


def test_wrong_shapes_and_types_and_absurd_headers(tmp_path, capsys):
    cases = 0
    for label, items in SHAPES.items():
        directory = shaped_log(tmp_path, label, items)
        codes = check_cli(capsys, directory, audit=items != "names")
        # (infinite or NaN times are refused by the reader since issue 28: no report,
        # query or latency histogram can use them)
        if label in ("unknown side record", "negative batch", "round 2**62",
                     "unknown kind", "a 1 MB vertex name"):
            assert codes[0] == 0, label  # readable; the audit judges the content
        else:
            assert codes[0] == 2, label
        cases += 1
    for label, change in HEADERS.items():
        header = dict(HEADER)
        header["settings"] = [] if change is None else {**HEADER["settings"], **change}
        directory = shaped_log(tmp_path, "h " + label, [], header)
        summary, audited = check_cli(capsys, directory)
        assert audited in (1, 2), label
        cases += 1
    assert cases == len(SHAPES) + len(HEADERS)
    print(f"\nshapes and headers: {cases} cases")


def fifo_dir(tmp_path):
    directory = tmp_path / "fifo"
    directory.mkdir()
    os.mkfifo(directory / "a.traffic")
    return directory


def structure_cases(tmp_path, base):
    """(label, directory, expected exit code of `traffic summary`)."""
    directory, name, data, _, _ = base
    cases = []
    sub = write_log(tmp_path, name, data, "subdir")
    (sub / "notes").mkdir()
    (sub / "notes" / "x.traffic").write_bytes(b"junk")
    (sub / "README.txt").write_text("not a log file")
    cases.append(("an unexpected subdirectory and file", sub, 0))
    named = write_log(tmp_path, name, data, "named")
    (named / "z.traffic").mkdir()
    cases.append(("a directory named *.traffic", named, 2))
    cases.append(("a FIFO named *.traffic", fifo_dir(tmp_path), 2))
    device = write_log(tmp_path, name, data, "device")
    os.symlink("/dev/zero", device / "zero.traffic")
    cases.append(("a symlink to /dev/zero", device, 2))
    empty = tmp_path / "empty"
    empty.mkdir()
    cases.append(("an empty directory", empty, 2))
    cases.append(("a file given as the directory", write_log(tmp_path, name, data, "file")
                  / name, 2))
    run = tmp_path / "run"
    shutil.copytree(directory, run / "traffic")
    cases.append(("a run directory holding traffic/", run, 0))
    return cases


def test_unexpected_files_and_directories(base, tmp_path, capsys):
    cases = structure_cases(tmp_path, base)
    for label, directory, expected in cases:
        assert check_cli(capsys, directory, audit=False) == [expected], label
    print(f"\nfiles and directories: {len(cases)} cases")


def limit_child():
    """In the child, before exec: 1.5 GB of address space, 120 CPU seconds."""
    gb = int(1.5 * (1 << 30))
    resource.setrlimit(resource.RLIMIT_AS, (gb, gb))
    resource.setrlimit(resource.RLIMIT_CPU, (120, 120))


def test_cli_sample_under_resource_limits(base, tmp_path):
    """The promise as a user sees it: a real process, exit 0/1/2, one line, no traceback,
    inside an address-space and CPU limit (a FIFO never opened: no hang)."""
    directory, name, data, _, _ = base
    rng = random.Random(SEED + 1)
    dirs = [(label, d) for label, d, _ in structure_cases(tmp_path, base)]
    for label in ("energy not a pair", "bytes is text", "round 2**62"):
        dirs.append((label, shaped_log(tmp_path, label, SHAPES[label])))
    header = {**HEADER, "settings": {**HEADER["settings"], "iterations": 10**12}}
    dirs.append(("iterations 1e12", shaped_log(tmp_path, "cli iterations", [], header)))
    for case in range(SUBPROCESS_SAMPLE):
        damaged = bytearray(data)
        if case % 3 == 0:
            damaged = damaged[:rng.randrange(ends_after_header(data), len(data))]
        else:
            for _ in range(1 + case % 4):
                damaged[rng.randrange(len(damaged))] ^= 1 << rng.randrange(8)
        dirs.append((f"random {case}", write_log(tmp_path, name, bytes(damaged), f"cli{case}")))
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    runs = 0
    for label, target in dirs:
        for args in (["summary", target], ["audit", target, DAG]):
            result = subprocess.run([sys.executable, "-m", "neurolocal", "traffic",
                                     *map(str, args)], capture_output=True, text=True,
                                    env=env, preexec_fn=limit_child, timeout=600)
            err = result.stderr.strip().splitlines()
            assert result.returncode in (0, 1, 2), (label, args, result.stderr[-2000:])
            assert "Traceback" not in result.stderr, (label, result.stderr[-2000:])
            if result.returncode == 2:
                assert len(err) == 1, (label, err)
            runs += 1
    assert runs == 2 * len(dirs)
    print(f"\nsubprocess: {len(dirs)} logs, {runs} runs")


def ends_after_header(data):
    unpacker = msgpack.Unpacker(raw=False)
    unpacker.feed(data)
    unpacker.unpack()
    return unpacker.tell()


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q", "-s"]))
