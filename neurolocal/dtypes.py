"""The floating-point type a run computes in: float64 (the default) or float32 (opt-in).

`--dtype float32` puts parameters, activations, errors and every message between
vertices in single precision (half the bytes on the wire and in the traffic log,
about twice the matmul throughput per core). Exactness tests stay in float64: a
float32 run agrees with backprop to float32's rounding (~1e-6 relative), not to 1e-9.
Each engine casts its own copy of the parameters once; a vertex casts the data it is
clamped to and the feedback it sums (`VertexRule.dtype`), so everything downstream
follows from its inputs' dtype (numpy and the numba kernels keep it).
"""

from __future__ import annotations

import numpy as np

DTYPES = ("float64", "float32")
DEFAULT = "float64"


def check_dtype(name) -> str:
    """The dtype's name, or a ConfigError naming the field."""
    from neurolocal.errors import ConfigError

    if name not in DTYPES:
        raise ConfigError(f"expected one of {', '.join(DTYPES)}, got {name!r}", field="dtype")
    return name


def cast_params(params, dtype: str):
    """`params` itself when already of `dtype` (float64: shared by reference, as ever),
    else a new mapping of new arrays of `dtype` (the caller's stay as they were)."""
    want = np.dtype(dtype)
    if all(a.dtype == want for per in params.values() for a in per.values()):
        return params
    return {v: {k: np.ascontiguousarray(a, dtype=want) for k, a in per.items()}
            for v, per in params.items()}
