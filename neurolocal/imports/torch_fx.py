"""A PyTorch module as a neurolocal graph, by `torch.fx` tracing.

`from_torch(module, example_inputs, loss=...)` traces the module's forward pass into an
fx graph, runs it once on the example inputs (every node's value: shapes, and the
integers of shape queries), and writes one vertex per node that computes something:
`nn.Linear` -> dense, `nn.Conv2d` -> conv2d, `x @ y` -> matmul, and so on (the table
is `_MODULES`, `_FUNCTIONS` and `_METHODS` below, documented in docs/python.md).
Nodes that compute nothing (nn.Identity, nn.Dropout, `.contiguous()`) alias their
input; shape queries become integers. Anything else is refused in one line naming the
fx node, its op and its source line, before any vertex is built.

Weights come from the module as it is (whatever initialisation it used), converted to
float64 in neurolocal's layouts (a dense weight is `nn.Linear.weight` transposed);
`state_keys` maps every (vertex, parameter) back to the module's state_dict key, which
is what `neurolocal.export_state_dict` reads. A module with parameters called twice
becomes a tied group (its first call owns the tensor).

torch is optional (`pip install 'neurolocal[torch]'`); without it the call says so.
"""

from __future__ import annotations

import operator
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from neurolocal.errors import TopologyError

#: a module's output is a float tensor whose first axis is the batch
TORCH_MISSING = ("from_torch needs PyTorch: pip install 'neurolocal[torch]' "
                 "(or pip install torch)")


class UnsupportedModel(TopologyError):
    """A module that uses something neurolocal has no vertex for."""


@dataclass
class Imported:
    """What `from_torch` returns; unpacks as `graph, params = from_torch(...)`."""

    graph: Any
    params: dict[str, dict[str, np.ndarray]]
    #: (vertex, parameter) -> (state_dict key, "transpose" or "same")
    state_keys: dict[tuple[str, str], tuple[str, str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def __iter__(self):
        return iter((self.graph, self.params))

    def topology(self) -> dict:
        """The graph as a topology file's mapping (what `neurolocal import` writes)."""
        return graph_to_dict(self.graph)


def _torch():
    try:
        import torch
        import torch.fx  # noqa: F401
    except ImportError:
        raise TopologyError(TORCH_MISSING) from None
    return torch


def from_torch(module, example_inputs, loss="softmax_cross_entropy", *, name: str | None = None,
               budget=None) -> Imported:
    """Trace `module` on `example_inputs` (a tensor or a tuple, batch first) into a graph."""
    torch = _torch()
    from neurolocal.graph import Graph
    from neurolocal.limits import check_graph, default_budget

    if not isinstance(module, torch.nn.Module):
        raise TopologyError(f"from_torch takes a torch.nn.Module, got {type(module).__name__}")
    if isinstance(example_inputs, torch.Tensor):
        example_inputs = (example_inputs,)
    example_inputs = tuple(example_inputs)
    if not example_inputs or not all(isinstance(t, torch.Tensor) and t.dim() >= 2
                                     for t in example_inputs):
        raise TopologyError("example_inputs are tensors with a batch axis and at least one "
                            "per-sample axis")
    builder = _Builder(torch, module, example_inputs)
    builder.build()
    graph = Graph(builder.vertices, builder.output, loss,
                  name=name or type(module).__name__, tied=builder.tied_groups())
    check_graph(graph, budget or default_budget())
    return Imported(graph, builder.params, builder.state_keys, builder.notes)


# --- tracing -----------------------------------------------------------------------------


def _source_line(node) -> str:
    trace = getattr(node, "stack_trace", None) or ""
    found = [(path, line) for path, line in re.findall(r'File "([^"]+)", line (\d+)', trace)
             if "/torch/" not in path.replace("\\", "/")]
    if not found:
        return "an unknown line"
    path, line = found[-1]
    return f"{path.rsplit('/', 1)[-1]}:{line}"


class _Batch(int):
    """An integer read from the batch axis (x.shape[0], x.size(0)): a reshape may put
    it first; anywhere else it would bake the example's batch size into the graph."""


class _Builder:
    def __init__(self, torch, module, example_inputs):
        self.torch = torch
        self.module = module
        self.example_inputs = example_inputs
        self.batch = int(example_inputs[0].shape[0])
        self.vertices = []
        self.params: dict[str, dict[str, np.ndarray]] = {}
        self.state_keys: dict[tuple[str, str], tuple[str, str]] = {}
        self.notes: list[str] = []
        self.owner_of_module: dict[str, str] = {}
        self.ties: dict[str, list[str]] = {}
        self.vertex_of: dict[Any, str] = {}    # fx node -> vertex name (or alias)
        self.value_of: dict[Any, Any] = {}     # fx node -> its value at the example inputs
        self.output = None

    # -- the fx graph, traced with source lines and run once on the examples ----------

    def _trace(self):
        fx = self.torch.fx
        tracer = fx.Tracer()
        tracer.record_stack_traces = True
        try:
            graph = tracer.trace(self.module)
        except Exception as exc:  # noqa: BLE001  (fx raises many kinds; one line each)
            raise UnsupportedModel(f"torch.fx cannot trace {type(self.module).__name__}: "
                                   f"{type(exc).__name__}: {exc}") from None
        return fx.GraphModule(tracer.root, graph)

    def _run(self, gm):
        values = self.value_of
        builder = self

        class Recorder(self.torch.fx.Interpreter):
            def run_node(self, n):
                out = super().run_node(n)
                values[n] = out
                return out

        placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
        if len(placeholders) != len(self.example_inputs):
            raise UnsupportedModel(f"the module's forward takes {len(placeholders)} input(s), "
                                   f"{len(self.example_inputs)} example(s) given")
        try:
            with self.torch.no_grad():
                Recorder(gm).run(*[t.detach().clone() for t in self.example_inputs])
        except UnsupportedModel:
            raise
        except Exception as exc:  # noqa: BLE001
            raise UnsupportedModel(f"the traced module fails on the example inputs: "
                                   f"{type(exc).__name__}: {exc}") from None
        del builder

    def build(self):
        gm = self._trace()
        self.gm = gm
        self._run(gm)
        users_seen = set()
        for node in gm.graph.nodes:
            self._node(node)
            users_seen.add(node)
        if self.output is None:
            raise UnsupportedModel("the module returns nothing")

    # -- helpers --------------------------------------------------------------------------

    def refuse(self, node, why: str):
        target = node.target
        what = target if isinstance(target, str) else getattr(target, "__name__", str(target))
        if node.op == "call_module":
            what = f"{type(self.gm.get_submodule(node.target)).__name__} '{node.target}'"
        raise UnsupportedModel(f"fx node '{node.name}' ({node.op} {what}) at "
                               f"{_source_line(node)}: {why}")

    def is_tensor(self, arg) -> bool:
        return isinstance(arg, self.torch.fx.Node) and isinstance(self.value_of.get(arg),
                                                                  self.torch.Tensor)

    def tensor_vertex(self, node, arg) -> str:
        if not self.is_tensor(arg):
            self.refuse(node, f"expected a tensor argument, got {arg!r}")
        if arg not in self.vertex_of:
            self.refuse(node, f"its input '{arg.name}' is not a vertex")
        return self.vertex_of[arg]

    def constant(self, node, arg):
        """A plain number (a literal, or an integer computed from shape queries)."""
        if isinstance(arg, self.torch.fx.Node):
            value = self.value_of.get(arg)
            if isinstance(value, self.torch.Tensor):
                self.refuse(node, "expected a number here, got a tensor")
            return value
        return arg

    def per_sample_shape(self, node):
        value = self.value_of[node]
        return tuple(int(s) for s in value.shape[1:])

    def add(self, node, op: str, parents, **attributes):
        from neurolocal.graph import VertexSpec

        name = node.name
        value = self.value_of[node]
        if not isinstance(value, self.torch.Tensor) or value.dim() < 2 \
                or value.shape[0] != self.batch:
            self.refuse(node, "its value is not a tensor with the batch as its first axis")
        if not value.is_floating_point():
            self.refuse(node, f"its value is a {value.dtype} tensor; vertices hold floats")
        try:
            spec = VertexSpec.make(name, op, parents, **attributes)
        except TopologyError as exc:
            self.refuse(node, exc.detail)
        self.vertices.append(spec)
        self.vertex_of[node] = name
        return name

    def alias(self, node, arg):
        self.vertex_of[node] = self.tensor_vertex(node, arg)

    def take_params(self, node, vertex: str, arrays: dict[str, tuple[str, np.ndarray, str]]):
        """Parameters of a module node: {param: (state key, float64 array, layout)}."""
        target = node.target
        if target in self.owner_of_module:
            self.ties.setdefault(target, []).append(vertex)
        else:
            self.owner_of_module[target] = vertex
        self.params[vertex] = {k: np.array(a, dtype=np.float64) for k, (_, a, _) in arrays.items()}
        for k, (key, _, layout) in arrays.items():
            self.state_keys.setdefault((vertex, k), (key, layout))

    def tied_groups(self):
        from neurolocal.tied import TiedGroup

        groups = []
        for target, members in self.ties.items():
            owner = self.owner_of_module[target]
            for k in self.params[owner]:
                groups.append(TiedGroup((owner, k), tuple((m, k) for m in members)))
        return groups

    # -- one fx node ------------------------------------------------------------------------

    def _node(self, node):
        if node.op == "placeholder":
            value = self.value_of[node]
            name = node.name
            from neurolocal.graph import VertexSpec

            self.vertices.append(VertexSpec.make(name, "input", (), shape=list(value.shape[1:])))
            self.vertex_of[node] = name
        elif node.op == "output":
            (result,) = node.args
            if not self.is_tensor(result):
                self.refuse(node, "the module must return one tensor")
            self.output = self.tensor_vertex(node, result)
        elif node.op == "get_attr":
            self.refuse(node, "a parameter or buffer used outside its module (write it as "
                        "a module such as nn.Linear)")
        elif node.op == "call_module":
            submodule = self.gm.get_submodule(node.target)
            handler = _MODULES.get(type(submodule).__name__)
            if handler is None or type(submodule).__module__.split(".")[0] != "torch":
                self.refuse(node, "this module has no neurolocal vertex")
            if node.kwargs or len(node.args) != 1:
                self.refuse(node, "expected one tensor argument")
            handler(self, node, submodule, node.args[0])
        elif node.op == "call_function":
            handler = _FUNCTIONS.get(node.target)
            if handler is None:
                self.refuse(node, "this function has no neurolocal vertex")
            handler(self, node)
        elif node.op == "call_method":
            if node.target.endswith("_") and not node.target.endswith("__"):
                self.refuse(node, "an in-place op (write it out of place)")
            handler = _METHODS.get(node.target)
            if handler is None:
                self.refuse(node, "this tensor method has no neurolocal vertex")
            handler(self, node)
        else:   # pragma: no cover  (fx has no other node kinds)
            self.refuse(node, "unknown fx node kind")


# --- modules -----------------------------------------------------------------------------


def _array(tensor) -> np.ndarray:
    return tensor.detach().to("cpu").double().numpy().copy()


def _single_user_inplace(b, node, arg):
    """An in-place module is the same computation when nothing else reads its input."""
    if isinstance(arg, b.torch.fx.Node) and len(arg.users) > 1:
        b.refuse(node, "an in-place op whose input is also read elsewhere "
                 "(use inplace=False)")


def _linear(b, node, m, x):
    name = b.add(node, "dense", [b.tensor_vertex(node, x)], units=m.out_features,
                 bias=m.bias is not None, init="uniform")
    arrays = {"weight": (f"{node.target}.weight", _array(m.weight).T, "transpose")}
    if m.bias is not None:
        arrays["bias"] = (f"{node.target}.bias", _array(m.bias), "same")
    b.take_params(node, name, arrays)


def _conv2d(b, node, m, x):
    if m.groups != 1 or tuple(m.dilation) != (1, 1) or m.padding_mode != "zeros" \
            or isinstance(m.padding, str):
        b.refuse(node, "conv2d is imported with groups 1, dilation 1 and numeric zero padding")
    name = b.add(node, "conv2d", [b.tensor_vertex(node, x)], out_channels=m.out_channels,
                 kernel_size=list(m.kernel_size), stride=list(m.stride),
                 padding=list(m.padding), bias=m.bias is not None, init="uniform")
    arrays = {"weight": (f"{node.target}.weight", _array(m.weight), "same")}
    if m.bias is not None:
        arrays["bias"] = (f"{node.target}.bias", _array(m.bias), "same")
    b.take_params(node, name, arrays)


def _pool_window(b, node, m):
    def pair(v):
        return list(v) if isinstance(v, (tuple, list)) else [v, v]

    if m.ceil_mode:
        b.refuse(node, "ceil_mode is not supported")
    stride = m.stride if m.stride is not None else m.kernel_size
    return dict(kernel_size=pair(m.kernel_size), stride=pair(stride), padding=pair(m.padding))


def _maxpool2d(b, node, m, x):
    if m.return_indices or pair_of(m.dilation) != [1, 1]:
        b.refuse(node, "maxpool2d is imported with dilation 1 and without return_indices")
    b.add(node, "maxpool2d", [b.tensor_vertex(node, x)], **_pool_window(b, node, m))


def pair_of(v):
    return list(v) if isinstance(v, (tuple, list)) else [v, v]


def _avgpool2d(b, node, m, x):
    if not m.count_include_pad or m.divisor_override is not None:
        b.refuse(node, "avgpool2d is imported with count_include_pad=True and no divisor_override")
    b.add(node, "avgpool2d", [b.tensor_vertex(node, x)], **_pool_window(b, node, m))


def _adaptive_avgpool2d(b, node, m, x):
    shape = b.per_sample_shape(x) if b.is_tensor(x) else ()
    if len(shape) != 3:
        b.refuse(node, "adaptive average pooling takes [C, H, W]")
    out = [o if o is not None else s for o, s in zip(pair_of(m.output_size), shape[1:])]
    if any(s % o for s, o in zip(shape[1:], out)):
        b.refuse(node, f"adaptive pooling of {list(shape[1:])} to {out} is not a plain "
                 "average (the size does not divide)")
    kernel = [s // o for s, o in zip(shape[1:], out)]
    b.add(node, "avgpool2d", [b.tensor_vertex(node, x)], kernel_size=kernel, stride=kernel)


def _activation(op):
    def handler(b, node, m, x):
        if getattr(m, "inplace", False):
            _single_user_inplace(b, node, x)
        attributes = {}
        if op == "gelu":
            attributes["approximate"] = m.approximate
        b.add(node, op, [b.tensor_vertex(node, x)], **attributes)
    return handler


def _layernorm(b, node, m, x):
    affine = m.elementwise_affine
    if affine and m.bias is None:
        b.refuse(node, "layernorm without a bias is not supported")
    name = b.add(node, "layernorm", [b.tensor_vertex(node, x)], axes=len(m.normalized_shape),
                 epsilon=float(m.eps), affine=bool(affine))
    if affine:
        b.take_params(node, name, {
            "weight": (f"{node.target}.weight", _array(m.weight), "same"),
            "bias": (f"{node.target}.bias", _array(m.bias), "same")})


def _embedding(b, node, m, x):
    if m.padding_idx is not None or m.max_norm is not None or m.scale_grad_by_freq or m.sparse:
        b.refuse(node, "embedding is imported without padding_idx, max_norm, "
                 "scale_grad_by_freq or sparse")
    from neurolocal.graph import VertexSpec

    parent = x
    if not b.is_tensor(parent):
        b.refuse(node, "expected a tensor of ids")
    value = b.value_of[node]
    spec = VertexSpec.make(node.name, "embedding", [b.vertex_of[parent]],
                           vocab=m.num_embeddings, units=m.embedding_dim)
    if value.dim() != 3:
        b.refuse(node, "embedding takes ids of shape [batch, length]")
    b.vertices.append(spec)
    b.vertex_of[node] = node.name
    b.take_params(node, node.name, {"weight": (f"{node.target}.weight", _array(m.weight), "same")})


def _flatten_module(b, node, m, x):
    _flatten(b, node, x, m.start_dim, m.end_dim)


def _identity(b, node, m, x):
    if type(m).__name__ == "Dropout" or type(m).__name__.startswith("Dropout"):
        note = "nn.Dropout is imported as the identity (predictive coding here has no dropout)"
        if note not in b.notes:
            b.notes.append(note)
    b.alias(node, x)


_MODULES = {
    "Linear": _linear, "Conv2d": _conv2d, "MaxPool2d": _maxpool2d, "AvgPool2d": _avgpool2d,
    "AdaptiveAvgPool2d": _adaptive_avgpool2d, "ReLU": _activation("relu"),
    "Tanh": _activation("tanh"), "Sigmoid": _activation("sigmoid"), "GELU": _activation("gelu"),
    "LayerNorm": _layernorm, "Embedding": _embedding, "Flatten": _flatten_module,
    "Identity": _identity, "Dropout": _identity,
}


# --- functions and methods -----------------------------------------------------------------


def _args(node, names, defaults=None):
    """The node's arguments by name, from its positional and keyword arguments."""
    defaults = defaults or {}
    out = dict(zip(names, node.args))
    for k, v in node.kwargs.items():
        out[k] = v
    for k, v in defaults.items():
        out.setdefault(k, v)
    return out


def _binary(tensor_op, scalar_op=None):
    def handler(b, node):
        a = _args(node, ["input", "other"], {"alpha": 1})
        x, y = a.get("input"), a.get("other")
        if a["alpha"] != 1:
            b.refuse(node, "alpha is not supported")
        tx, ty = b.is_tensor(x), b.is_tensor(y)
        if tx and ty:
            if tuple(b.value_of[x].shape) != tuple(b.value_of[y].shape):
                b.refuse(node, f"broadcasting {list(b.value_of[x].shape)} with "
                         f"{list(b.value_of[y].shape)} is not supported; the shapes must agree")
            b.add(node, tensor_op, [b.tensor_vertex(node, x), b.tensor_vertex(node, y)])
            return
        if scalar_op is None or not (tx or ty):
            b.refuse(node, f"{tensor_op} of a tensor and a constant has no vertex")
        tensor, number = (x, y) if tx else (y, x)
        number = b.constant(node, number)
        if isinstance(number, _Batch):
            b.refuse(node, "uses the batch size as a number")
        if not isinstance(number, (int, float)) or isinstance(number, bool):
            b.refuse(node, f"expected a number, got {number!r}")
        if scalar_op == "div" and not tx:   # 2 / x
            b.refuse(node, "dividing a constant by a tensor has no vertex")
        factor = 1.0 / number if scalar_op == "div" else float(number)   # x / c, x * c
        b.add(node, "scale", [b.tensor_vertex(node, tensor)], factor=factor)
    return handler


def _matmul(b, node):
    a = _args(node, ["input", "other"])
    x, y = a.get("input"), a.get("other")
    b.add(node, "matmul", [b.tensor_vertex(node, x), b.tensor_vertex(node, y)])


def _per_sample_dim(b, node, dim, ndim):
    from neurolocal.checks import number

    dim = b.constant(node, dim)
    try:
        dim = number("dim", dim, whole=True, strict=True, error=TopologyError)
    except TopologyError as exc:
        b.refuse(node, exc.detail)
    if not -ndim <= dim < ndim:
        b.refuse(node, f"dim {dim} is out of range")
    dim %= ndim
    if dim == 0:
        b.refuse(node, "acts on the batch axis (dim 0); vertices act on per-sample axes")
    return dim - 1


def _softmax(b, node):
    a = _args(node, ["input", "dim"])
    if a.get("dim") is None or a.get("dtype") is not None or a.get("_stacklevel", 3) != 3:
        b.refuse(node, "softmax needs dim (and no dtype)")
    x = a["input"]
    ndim = b.value_of[x].dim() if b.is_tensor(x) else 0
    b.add(node, "softmax", [b.tensor_vertex(node, x)], axis=_per_sample_dim(b, node, a["dim"], ndim))


def _mean(b, node):
    a = _args(node, ["input", "dim", "keepdim"], {"keepdim": False})
    x = a["input"]
    if a.get("dim") is None or a.get("dtype") is not None:
        b.refuse(node, "mean needs dim (a mean over the batch is not a vertex)")
    ndim = b.value_of[x].dim() if b.is_tensor(x) else 0
    dims = a["dim"] if isinstance(a["dim"], (list, tuple)) else [a["dim"]]
    axes = [_per_sample_dim(b, node, d, ndim) for d in dims]
    b.add(node, "mean", [b.tensor_vertex(node, x)], axis=axes if len(axes) > 1 else axes[0],
          keepdims=bool(b.constant(node, a["keepdim"])))


def _cat(b, node):
    a = _args(node, ["tensors", "dim"], {"dim": 0})
    tensors = list(a["tensors"])
    ndim = b.value_of[tensors[0]].dim() if b.is_tensor(tensors[0]) else 0
    axis = _per_sample_dim(b, node, a["dim"], ndim)
    parents = [b.tensor_vertex(node, t) for t in tensors]
    if len(parents) == 1:
        b.alias(node, tensors[0])
        return
    b.add(node, "concat", parents, axis=axis)


def _flatten(b, node, x, start_dim=0, end_dim=-1):
    start_dim, end_dim = b.constant(node, start_dim), b.constant(node, end_dim)
    ndim = b.value_of[x].dim() if b.is_tensor(x) else 0
    if start_dim % max(ndim, 1) == 0:
        b.refuse(node, "flattens the batch axis into the others")
    if start_dim % ndim == 1 and end_dim % ndim == ndim - 1:
        b.add(node, "flatten", [b.tensor_vertex(node, x)])
    else:
        _reshape_to(b, node, x)


def _reshape_to(b, node, x):
    shape = b.per_sample_shape(node)
    if shape == b.per_sample_shape(x):
        b.alias(node, x)
    else:
        b.add(node, "reshape", [b.tensor_vertex(node, x)], shape=list(shape))


def _flatten_function(b, node):
    a = _args(node, ["input", "start_dim", "end_dim"], {"start_dim": 0, "end_dim": -1})
    _flatten(b, node, a["input"], a["start_dim"], a["end_dim"])


def _reshape(b, node):
    """reshape/view: the batch axis stays first (x.shape[0], or -1 with the rest given)."""
    x, *shape = node.args
    if "shape" in node.kwargs:
        shape = [node.kwargs["shape"]]
    if len(shape) == 1 and isinstance(shape[0], (list, tuple)):
        shape = list(shape[0])
    if len(shape) == 1 and isinstance(shape[0], b.torch.fx.Node) \
            and isinstance(b.value_of[shape[0]], (tuple, list)):
        b.refuse(node, "reshape to a shape computed as one value; write its sizes out")
    if not shape:
        b.refuse(node, "reshape without a shape")
    first = b.constant(node, shape[0]) if isinstance(shape[0], b.torch.fx.Node) else shape[0]
    rest = [b.constant(node, s) for s in shape[1:]]
    if any(isinstance(s, _Batch) for s in rest):
        b.refuse(node, "puts the batch size on a per-sample axis")
    if not isinstance(first, _Batch):
        per_sample = int(np.prod(b.per_sample_shape(x))) if b.is_tensor(x) else -1
        if not (first == -1 and -1 not in rest and int(np.prod(rest)) == per_sample):
            b.refuse(node, "a reshape must keep the batch axis first: write "
                     "x.reshape(x.shape[0], ...) or x.reshape(-1, <per-sample sizes>)")
    _reshape_to(b, node, x)


def _transpose(b, node):
    a = _args(node, ["input", "dim0", "dim1"])
    x = a["input"]
    ndim = b.value_of[x].dim() if b.is_tensor(x) else 0
    d0 = _per_sample_dim(b, node, a["dim0"], ndim)
    d1 = _per_sample_dim(b, node, a["dim1"], ndim)
    axes = list(range(ndim - 1))
    axes[d0], axes[d1] = axes[d1], axes[d0]
    _permutation(b, node, x, axes)


def _permute(b, node):
    x, *dims = node.args
    if "dims" in node.kwargs:
        dims = [node.kwargs["dims"]]
    if len(dims) == 1 and isinstance(dims[0], (list, tuple)):
        dims = list(dims[0])
    ndim = b.value_of[x].dim() if b.is_tensor(x) else 0
    dims = [b.constant(node, d) % ndim for d in dims]
    if len(dims) != ndim or dims[0] != 0:
        b.refuse(node, "a permutation must keep the batch axis first")
    _permutation(b, node, x, [d - 1 for d in dims[1:]])


def _permutation(b, node, x, axes):
    if axes == list(range(len(axes))):
        b.alias(node, x)
    else:
        b.add(node, "transpose", [b.tensor_vertex(node, x)], axes=axes)


def _activation_function(op):
    def handler(b, node):
        a = _args(node, ["input"], {"inplace": False, "approximate": "none"})
        if a["inplace"]:
            _single_user_inplace(b, node, a["input"])
        attributes = {"approximate": a["approximate"]} if op == "gelu" else {}
        b.add(node, op, [b.tensor_vertex(node, a["input"])], **attributes)
    return handler


def _identity_call(b, node):
    b.alias(node, node.args[0])


def _shape_attribute(b, node):
    """getattr(x, 'shape'): an integer tuple whose first entry is the batch size."""
    x, attribute = node.args
    if attribute != "shape" or not b.is_tensor(x):
        b.refuse(node, f"the attribute {attribute!r} has no neurolocal meaning")
    b.value_of[node] = (_Batch(b.value_of[node][0]), *(int(s) for s in b.value_of[node][1:]))


def _size(b, node):
    a = _args(node, ["input", "dim"])
    if not b.is_tensor(a["input"]):
        b.refuse(node, "size() of something that is not a tensor")
    value = b.value_of[node]
    if a.get("dim") is None:
        b.value_of[node] = (_Batch(value[0]), *(int(s) for s in value[1:]))
    else:
        dim = b.constant(node, a["dim"]) % b.value_of[a["input"]].dim()
        b.value_of[node] = _Batch(value) if dim == 0 else int(value)


def _getitem(b, node):
    container, index = node.args
    if b.is_tensor(container):
        b.refuse(node, "indexing or slicing a tensor has no vertex")
    value = b.value_of.get(container)
    if not isinstance(value, tuple) or not isinstance(index, int):
        b.refuse(node, "only the entries of a shape can be read")
    b.value_of[node] = value[index]


def _integer_arithmetic(b, node):
    """Arithmetic on shape integers (C // heads): known at import; the batch size may not
    take part."""
    values = [b.constant(node, a) for a in node.args]
    if any(b.is_tensor(a) for a in node.args):
        b.refuse(node, "this operator has no vertex for tensors")
    if any(isinstance(v, _Batch) for v in values):
        b.refuse(node, "computes with the batch size")


def _sized(tensor_handler):
    """A handler that computes integers when its arguments are integers (shape math)."""
    def handler(b, node):
        if any(b.is_tensor(a) for a in node.args) or any(b.is_tensor(a)
                                                         for a in node.kwargs.values()):
            return tensor_handler(b, node)
        return _integer_arithmetic(b, node)
    return handler


def _functions():
    import torch
    import torch.nn.functional as F

    add, sub = _sized(_binary("add")), _sized(_binary("sub"))   # no vertex adds a constant
    mul, div = _sized(_binary("mul", "mul")), _sized(_binary("div", "div"))
    return {
        operator.add: add, torch.add: add, operator.sub: sub, torch.sub: sub,
        operator.mul: mul, torch.mul: mul, operator.truediv: div, torch.div: div,
        operator.floordiv: _integer_arithmetic, operator.pow: _integer_arithmetic,
        operator.mod: _integer_arithmetic, operator.neg: _integer_arithmetic,
        operator.matmul: _matmul, torch.matmul: _matmul, torch.bmm: _matmul,
        torch.cat: _cat, torch.concat: _cat, torch.reshape: _reshape,
        torch.flatten: _flatten_function, torch.transpose: _transpose, torch.permute: _permute,
        torch.softmax: _softmax, F.softmax: _softmax, torch.mean: _mean,
        torch.relu: _activation_function("relu"), F.relu: _activation_function("relu"),
        torch.tanh: _activation_function("tanh"), F.tanh: _activation_function("tanh"),
        torch.sigmoid: _activation_function("sigmoid"),
        F.sigmoid: _activation_function("sigmoid"), F.gelu: _activation_function("gelu"),
        getattr: _shape_attribute, operator.getitem: _getitem,
    }


def _methods():
    add, sub = _sized(_binary("add")), _sized(_binary("sub"))
    mul, div = _sized(_binary("mul", "mul")), _sized(_binary("div", "div"))
    return {
        "add": add, "sub": sub, "mul": mul, "div": div, "matmul": _matmul, "bmm": _matmul,
        "reshape": _reshape, "view": _reshape, "flatten": _flatten_function,
        "transpose": _transpose, "permute": _permute, "softmax": _softmax, "mean": _mean,
        "relu": _activation_function("relu"), "tanh": _activation_function("tanh"),
        "sigmoid": _activation_function("sigmoid"), "contiguous": _identity_call,
        "size": _size,
    }


class _Lazy(dict):
    """Tables keyed by torch functions, built on first use (torch imported only then)."""

    def __init__(self, make):
        super().__init__()
        self._make = make

    def get(self, key, default=None):
        if not len(self):
            self.update(self._make())
        return super().get(key, default)


_FUNCTIONS = _Lazy(_functions)
_METHODS = _Lazy(_methods)


# --- a graph as a topology mapping -------------------------------------------------------


def graph_to_dict(graph) -> dict:
    vertices = []
    for n, spec in graph.vertices.items():
        entry = {"name": n, "op": spec.op.name}
        if spec.parents:
            entry["parents"] = list(spec.parents)
        for k, v in spec.op.attributes.items():
            entry[k] = list(v) if isinstance(v, tuple) else v
        vertices.append(entry)
    out = {"name": graph.name, "vertices": vertices, "output": graph.output,
           "loss": _loss_entry(graph.loss)}
    if graph.tied:
        out["tied"] = [{"owner": ".".join(g.owner), "members": [".".join(m) for m in g.members]}
                       for g in graph.tied]
    return out


def _loss_entry(loss):
    if loss.name == "mse" and getattr(loss, "scale", 1.0) != 1.0:
        return {"type": "mse", "scale": loss.scale}
    return loss.name
