"""`neurolocal replay DIR` (docs/asynchrony.md §6): a simulated asynchronous relaxation,
recorded with --traffic-log, is re-executed in one process without its timing — from
the journal of which tag each update read and which messages were lost — bit for bit."""

import msgpack
import pytest

from neurolocal.cli import main


def record(tmp_path, name, *flags):
    out = tmp_path / name
    assert main(["check-grad", "topologies/dag.yaml", "--engine", "sim", "--traffic-log",
                 str(out), "--json", *flags]) == 0
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_asynchronous_runs_replay_bit_for_bit(tmp_path, capsys, seed):
    """Staleness 2, random delays, reordering, a straggler and loss: three seeds (three
    different consumption orders), each replayed from its journal bit for bit."""
    out = record(tmp_path, "run", "--staleness", "2", "--delay", "exp:1.5", "--reorder",
                 "--drop", "0.05", "--straggler", "trunk:2", "--seed", str(seed),
                 "-T", "14", "--eta", "0.5")
    capsys.readouterr()
    assert main(["replay", str(out)]) == 0
    line = capsys.readouterr().out
    assert "replayed bit for bit" in line and "staleness 2" in line


def test_synchronous_runs_with_loss_replay_too(tmp_path, capsys):
    out = record(tmp_path, "run", "--drop", "0.1", "--delay", "exp:1", "--seed", "4")
    capsys.readouterr()
    assert main(["replay", str(out)]) == 0
    assert "replayed bit for bit" in capsys.readouterr().out


def test_a_journal_that_does_not_match_is_reported(tmp_path, capsys):
    """Make one recorded read an older (still allowed) tag: the replay then computes
    something else, and says so."""
    out = record(tmp_path, "run", "--staleness", "2", "--delay", "exp:1.5", "-T", "14",
                 "--eta", "0.5")     # (at eta = 1 settled errors repeat: older tags agree)
    path = next(out.glob("*.replay"))
    document = msgpack.unpackb(path.read_bytes(), raw=False)
    reads = document["batches"][0]["reads"]
    previous, candidates = {}, []
    for i, (vertex, update, child, tag) in enumerate(reads):
        older = tag - 1   # still allowed (S = 2) and still non-decreasing for that child
        if tag >= 2 and older >= update - 3 and older >= previous.get((vertex, child), -1):
            candidates.append(i)
        previous[(vertex, child)] = tag
    reads[candidates[-1]][3] -= 1
    path.write_bytes(msgpack.packb(document, use_bin_type=True))
    capsys.readouterr()
    assert main(["replay", str(out)]) == 1
    assert "DIFFERS" in capsys.readouterr().out


def test_no_journal_is_one_line(tmp_path, capsys):
    assert main(["replay", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no replay journal" in err and err.count("\n") == 1
