"""`neurolocal import FILE.py:NAME --input-shape ... -o topo.yaml`: a PyTorch module as a
topology file and its initial parameters (`topo.params.npz` next to it unless
`--params-out`), which `run --params` and `check-grad --params` take, and the module's
state_dict keys per parameter (`topo.torch.json`, read by `neurolocal export`).

NAME is an nn.Module instance, or a class or function that makes one with no arguments.
FILE.py is run to find it (it is the user's own code). The module is converted to
float64 and traced on a batch of `--batch` random examples of each `--input-shape`
(`ids:VOCAB:LENGTH` for integer ids). Everything is traced and checked before the first
file is written: a refusal writes nothing."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from neurolocal.errors import ConfigError, TopologyError


def add_import_parser(commands, add_budget_option) -> None:
    cmd = commands.add_parser(
        "import", help="a PyTorch module (FILE.py:NAME) as a topology and its parameters")
    cmd.add_argument("source", metavar="FILE.py:NAME")
    cmd.add_argument("--input-shape", action="append", required=True, metavar="SHAPE",
                     help="per-sample shape of an input, e.g. 1,8,8 (repeat for several "
                          "inputs); ids:VOCAB:LENGTH for integer ids (an embedding)")
    cmd.add_argument("-o", "--out", required=True, help="the topology file to write")
    cmd.add_argument("--params-out", default=None,
                     help="the parameter file (default: OUT with .params.npz)")
    cmd.add_argument("--loss", default="softmax_cross_entropy",
                     help="softmax_cross_entropy (default) or mse")
    cmd.add_argument("--batch", type=int, default=2, help="examples traced (default 2)")
    add_budget_option(cmd)
    cmd.set_defaults(run=cmd_import)


def params_path_for(out: str) -> Path:
    path = Path(out)
    return path.with_name(path.stem + ".params.npz")


def _examples(torch, specs, batch):
    out = []
    for spec in specs:
        if spec.startswith("ids:"):
            try:
                _, vocab, length = spec.split(":")
                vocab, length = int(vocab), int(length)
                assert vocab > 0 and length > 0
            except (ValueError, AssertionError):
                raise ConfigError(f"expected ids:VOCAB:LENGTH, got {spec!r}",
                                  field="--input-shape") from None
            out.append(torch.randint(0, vocab, (batch, length),
                                     generator=torch.Generator().manual_seed(0)))
            continue
        try:
            shape = [int(s) for s in spec.split(",")]
            assert shape and min(shape) > 0 and len(shape) <= 8
        except (ValueError, AssertionError):
            raise ConfigError(f"expected a shape such as 1,8,8, got {spec!r}",
                              field="--input-shape") from None
        out.append(torch.randn(batch, *shape, dtype=torch.float64,
                               generator=torch.Generator().manual_seed(0)))
    return tuple(out)


def load_module(source: str):
    from neurolocal.imports.torch_fx import _torch

    torch = _torch()
    path, sep, name = source.rpartition(":")
    if not sep or not path.endswith(".py") or not name.isidentifier():
        raise ConfigError(f"expected FILE.py:NAME, got {source!r}", field="source")
    if not Path(path).is_file():
        raise ConfigError("no such file", source=path)
    spec = importlib.util.spec_from_file_location(f"_neurolocal_import_{Path(path).stem}", path)
    code = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = code
    try:
        spec.loader.exec_module(code)
    except Exception as exc:  # noqa: BLE001  (the user's file; say what it raised)
        raise ConfigError(f"running it raised {type(exc).__name__}: {exc}", source=path) from None
    if not hasattr(code, name):
        raise ConfigError(f"defines no {name!r}", source=path)
    module = getattr(code, name)
    if not isinstance(module, torch.nn.Module):
        if not callable(module):
            raise ConfigError(f"{name} is neither an nn.Module nor something that makes one",
                              source=path)
        try:
            module = module()
        except Exception as exc:  # noqa: BLE001
            raise ConfigError(f"{name}() raised {type(exc).__name__}: {exc}", source=path) from None
        if not isinstance(module, torch.nn.Module):
            raise ConfigError(f"{name}() returned a {type(module).__name__}, not an nn.Module",
                              source=path)
    return torch, module.double().eval()


def cmd_import(args) -> int:
    import yaml

    from neurolocal.files import writable_directory
    from neurolocal.imports.torch_fx import from_torch
    from neurolocal.limits import budget_from
    from neurolocal.params_file import save_params

    budget = budget_from(args.budget)
    if not 1 <= args.batch <= 1024:
        raise ConfigError("expected 1..1024", field="--batch")
    out = Path(args.out)
    params_out = Path(args.params_out) if args.params_out else params_path_for(args.out)
    for target in (out, params_out):
        writable_directory(target.parent if str(target.parent) else Path("."), "-o")
    torch, module = load_module(args.source)
    examples = _examples(torch, args.input_shape, args.batch)
    try:
        imported = from_torch(module, examples, loss=args.loss, name=out.stem, budget=budget)
    except TopologyError as exc:
        raise exc.located(source=args.source) from None
    for note in imported.notes:
        print(f"neurolocal: note: {note}", file=sys.stderr)
    document = imported.topology()
    document["description"] = f"imported from {args.source} by torch.fx"
    text = yaml.safe_dump(document, sort_keys=False, default_flow_style=None, width=100)
    for target in (out, params_out):
        target.parent.mkdir(parents=True, exist_ok=True)
    from neurolocal.files import write_atomic
    from neurolocal.imports.export_command import keys_path_for, write_keys

    save_params(params_out, imported.params)
    write_keys(keys_path_for(out), args.source, imported.state_keys)
    write_atomic(out, f"# written by `neurolocal import {args.source}`; parameters: "
                      f"{params_out.name}\n" + text)
    graph = imported.graph
    print(f"wrote {out} ({len(graph.order)} vertices, {graph.parameter_count()} parameters, "
          f"depth {graph.depth}) and {params_out}")
    return 0
