"""`neurolocal export RUN_DIR --to torch FILE.pt|FILE.safetensors`: a run's trained
parameters as the state_dict of the PyTorch module its topology was imported from.

The run directory's metrics.json names the topology file; `neurolocal import` wrote the
module's state_dict keys next to it (`<topology>.torch.json`). The parameters are the
last epoch's checkpoint (`checkpoint-pc.npz`, else `checkpoint-bp.npz`), checked as
`--resume` checks it. `.pt` is written with torch.save, `.safetensors` with the
safetensors package (`pip install safetensors`); load either with
`module.load_state_dict(...)`. Every input is read and checked before the file is
written."""

from __future__ import annotations

import json
from pathlib import Path

from neurolocal.errors import ConfigError, DataError


def add_export_parser(commands) -> None:
    cmd = commands.add_parser("export", help="a run's trained weights as a PyTorch state_dict")
    cmd.add_argument("run_dir", metavar="RUN_DIR")
    cmd.add_argument("--to", required=True, nargs=2, metavar=("torch", "FILE"),
                     help="torch FILE.pt or torch FILE.safetensors")
    cmd.set_defaults(run=cmd_export)


def keys_path_for(topology: str | Path) -> Path:
    path = Path(topology)
    return path.with_name(path.stem + ".torch.json")


def write_keys(path: Path, source: str, state_keys) -> None:
    document = {"source": source,
                "state_keys": {f"{v}/{p}": [key, layout]
                               for (v, p), (key, layout) in state_keys.items()}}
    from neurolocal.files import write_atomic

    write_atomic(path, json.dumps(document, indent=1) + "\n")


def _read_keys(path: Path) -> dict:
    from neurolocal.files import regular_file

    regular_file(path, 64 << 20, ConfigError, "state-key file")
    try:
        document = json.loads(path.read_text())
        keys = document["state_keys"]
        out = {}
        for name, (key, layout) in keys.items():
            vertex, _, param = name.partition("/")
            if not (isinstance(key, str) and layout in ("same", "transpose") and param):
                raise ValueError(name)
            out[(vertex, param)] = (key, layout)
        return out
    except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"not a state-key file written by `neurolocal import` ({exc})",
                          source=str(path)) from None


def cmd_export(args) -> int:
    from neurolocal import training
    from neurolocal.files import writable_directory
    from neurolocal.limits import default_budget
    from neurolocal.topology import load_topology

    kind, target = args.to
    target = Path(target)
    if kind != "torch":
        raise ConfigError(f"expected torch, got {kind!r}", field="--to")
    if target.suffix not in (".pt", ".safetensors"):
        raise ConfigError("expected a FILE.pt or FILE.safetensors", field="--to")
    run_dir = Path(args.run_dir)
    metrics = run_dir / "metrics.json"
    if not metrics.is_file():
        raise ConfigError("is not a run directory (no metrics.json)", source=str(run_dir))
    try:
        topology_file = json.loads(metrics.read_text())["topology_file"]
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise DataError("names no topology_file", source=str(metrics)) from None
    if not topology_file:
        raise DataError("names no topology_file", source=str(metrics))
    keys_file = keys_path_for(topology_file)
    if not keys_file.is_file():
        raise ConfigError(f"the run's topology {topology_file} was not written by "
                          f"`neurolocal import` (no {keys_file.name} next to it)",
                          source=str(run_dir))
    keys = _read_keys(keys_file)
    budget = default_budget()
    graph = load_topology(topology_file, budget).graph
    found = [training.checkpoint_path(run_dir, a) for a in ("pc", "bp")]
    found = [p for p in found if p.exists()]
    if not found:
        raise ConfigError("holds no checkpoint-pc.npz or checkpoint-bp.npz",
                          source=str(run_dir))
    settings = training.read_checkpoint_settings(found[0])
    params = training.load_checkpoint(found[0], graph, settings).params
    missing = [f"{v}.{p}" for (v, p) in keys if p not in params.get(v, {})]
    if missing:
        raise DataError(f"the checkpoint has no {missing[0]}", source=str(found[0]))
    writable_directory(target.parent if str(target.parent) else Path("."), "--to")
    import numpy as np

    arrays = {}
    for (vertex, param), (key, layout) in keys.items():
        value = params[vertex][param]
        arrays[key] = np.ascontiguousarray(value.T if layout == "transpose" else value)
    if target.suffix == ".safetensors":
        try:
            from safetensors.numpy import save_file
        except ImportError:
            raise ConfigError("writing .safetensors needs the safetensors package: "
                              "pip install safetensors", field="--to") from None
        save_file(arrays, str(target))
    else:
        from neurolocal.imports.torch_fx import _torch

        torch = _torch()
        torch.save({k: torch.from_numpy(a) for k, a in arrays.items()}, str(target))
    print(f"wrote {target} ({len(arrays)} tensors from {found[0].name})")
    return 0
