"""Fitted estimators (scikit-learn's PCA and KernelPCA, umap-learn's UMAP) as tensors and plain values.

A fitted estimator is its ``__dict__``: hyper-parameters and learned attributes. ``encode_estimator``
turns every value into something ``torch.load(weights_only=True)`` reads back — numpy arrays become
tensors (dtype, shape and strides kept), numpy scalars 0-d tensors, CSR matrices their
``data``/``indices``/``indptr`` tensors, ``RandomState`` its ``get_state()`` — and
``decode_estimator`` sets the values back on a freshly constructed estimator of the same class and
hyper-parameters, so the restored estimator computes bit for bit what the fitted one did.

No code is stored. Classes come from a fixed allow-list (``ESTIMATORS``), and functions are stored
as a key into one of umap's / pynndescent's fixed tables of distance functions (``FUNCTION_TABLES``),
which is how UMAP itself derives them from its ``metric`` hyper-parameter. Anything else (a
custom metric callable, an unknown class) is refused when saving, not silently dropped.

pynndescent's ``NNDescent`` (UMAP's search index, present only for N >= 4096 or
``force_approximation_algorithm``) goes through its own persistence protocol: the state is
``__getstate__()`` without the numba-compiled search closures, which ``__setstate__`` compiles
again from the stored arrays (search trees, search graph, data, random states). The index itself
is restored, not rebuilt.
"""

from __future__ import annotations

import importlib
import sys

import numpy as np
import torch

KIND = "__kind__"

# the only classes ever constructed on load, by "module.attribute"
ESTIMATORS = frozenset({"sklearn.decomposition.PCA", "sklearn.decomposition.KernelPCA",
                        "sklearn.preprocessing.KernelCenterer", "umap.UMAP", "pynndescent.NNDescent"})

# tables of named numba distance functions UMAP picks its distance functions from, by "module.attribute"
FUNCTION_TABLES = frozenset({"umap.distances.named_distances", "umap.distances.named_distances_with_gradients",
                             "umap.sparse.sparse_named_distances", "pynndescent.distances.named_distances",
                             "pynndescent.sparse.sparse_named_distances"})

# NNDescent attributes that are compiled closures or caches; its __setstate__ derives them again
# from the metric and the stored arrays (its own __getstate__ drops some of them for that reason)
_NNDESCENT_DERIVED = frozenset({
    "_distance_func", "_distance_correction", "_true_distance_func", "_tree_search", "_search_function",
    "_deheap_function", "_rerank_function", "_query_finisher_fn", "_fast_plan", "_query_workspace",
    "_query_ones",
})


class StateError(ValueError):
    """A value that cannot be stored without pickle, or a stored state that does not decode."""


def _resolve(table, name: str, *, load: bool):
    """The object the allow-listed ``name`` ("module.attribute") names; with ``load=False`` only if
    its module is already imported."""
    assert name in table
    module, _, attr = name.rpartition(".")
    mod = importlib.import_module(module) if load else sys.modules.get(module)
    return getattr(mod, attr, None) if mod is not None else None


def _estimator_name(obj) -> str | None:
    # an object of an allow-listed class is from an imported module, so nothing is imported here
    for name in ESTIMATORS:
        if _resolve(ESTIMATORS, name, load=False) is type(obj):
            return name
    return None


def _function_key(fn) -> tuple[str, str] | None:
    for table_name in FUNCTION_TABLES:
        table = _resolve(FUNCTION_TABLES, table_name, load=False)
        for key, f in (table or {}).items():
            if f is fn:
                return table_name, key
    return None


def _array(a: np.ndarray, where: str) -> torch.Tensor:
    if a.dtype.kind not in "biuf":
        raise StateError(f"{where}: arrays of dtype {a.dtype} cannot be stored")
    if any(s < 0 for s in a.strides) or not a.flags.writeable:
        a = a.copy(order="K")
    return torch.from_numpy(a)  # shares memory and keeps the strides, so C/F layout survives


def encode(value, where: str = "state"):
    """``value`` as tensors, plain values, lists, tuples and tagged dicts (see the module's docstring).

    Parameters
    ----------
    value : object
        An attribute value of a fitted estimator.
    where : str
        Its path, for error messages.

    Raises
    ------
    StateError
        For a value that could only be stored by pickling it.
    """
    import scipy.sparse

    if isinstance(value, np.generic):  # before the plain types: np.float64 is a float
        if value.dtype.kind not in "biuf":
            raise StateError(f"{where}: numpy scalars of dtype {value.dtype} cannot be stored")
        return {KIND: "scalar", "value": torch.from_numpy(np.asarray(value).copy())}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.ndarray):
        return _array(value, where)
    if isinstance(value, tuple) and not hasattr(value, "_fields"):
        return tuple(encode(v, f"{where}[{i}]") for i, v in enumerate(value))
    if isinstance(value, list):
        return [encode(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise StateError(f"{where}: dict keys must be strings")
        return {KIND: "dict", "items": {k: encode(v, f"{where}.{k}") for k, v in value.items()}}
    if type(value) in (scipy.sparse.csr_matrix, scipy.sparse.csr_array):
        return {KIND: "csr", "array": type(value) is scipy.sparse.csr_array, "shape": tuple(value.shape),
                "data": _array(value.data, where), "indices": _array(value.indices, where),
                "indptr": _array(value.indptr, where)}
    if isinstance(value, np.random.RandomState):
        name, keys, pos, has_gauss, cached = value.get_state(legacy=True)
        return {KIND: "random_state", "name": name, "keys": _array(keys, where), "pos": int(pos),
                "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}
    if isinstance(value, type) and issubclass(value, np.generic):
        return {KIND: "dtype", "name": np.dtype(value).name}
    if _estimator_name(value) is not None:
        return encode_estimator(value, where)
    if callable(value):
        key = _function_key(value)
        if key is None:
            raise StateError(f"{where}: the function {getattr(value, '__name__', value)!r} is not one of "
                             "umap's named distances (a custom metric cannot be saved)")
        return {KIND: "function", "table": key[0], "key": key[1]}
    raise StateError(f"{where}: a {type(value).__module__}.{type(value).__qualname__} cannot be stored "
                     "without pickle")


def encode_estimator(est, where: str = "estimator") -> dict:
    """A fitted estimator of an allow-listed class (``ESTIMATORS``) as a tagged dict."""
    name = _estimator_name(est)
    if name is None:
        raise StateError(f"{where}: {type(est).__qualname__} is not an estimator Globscope can store")
    if name == "pynndescent.NNDescent":
        # prepares the search graph if needed (what the first query would do) and drops the
        # closures that are not data; the remaining dict is what its __setstate__ expects
        attrs = {k: v for k, v in est.__getstate__().items() if k not in _NNDESCENT_DERIVED}
    else:
        attrs = dict(vars(est))
    return {KIND: "estimator", "class": name,
            "attrs": {k: encode(v, f"{where}.{k}") for k, v in attrs.items()}}


def decode(value):
    """The inverse of ``encode``: numpy arrays, numpy scalars, CSR matrices, estimators, ….

    Raises
    ------
    StateError
        For a structure ``encode`` does not write (a damaged or foreign file).
    """
    if isinstance(value, torch.Tensor):
        return value.numpy()
    if isinstance(value, tuple):
        return tuple(decode(v) for v in value)
    if isinstance(value, list):
        return [decode(v) for v in value]
    if not isinstance(value, dict):
        return value
    kind = value.get(KIND)
    if kind == "scalar":
        return value["value"].numpy()[()]
    if kind == "dict":
        return {k: decode(v) for k, v in value["items"].items()}
    if kind == "csr":
        import scipy.sparse

        cls = scipy.sparse.csr_array if value["array"] else scipy.sparse.csr_matrix
        return cls((value["data"].numpy(), value["indices"].numpy(), value["indptr"].numpy()),
                   shape=tuple(value["shape"]))
    if kind == "random_state":
        rs = np.random.RandomState()
        rs.set_state((value["name"], value["keys"].numpy(), value["pos"], value["has_gauss"],
                      value["cached_gaussian"]))
        return rs
    if kind == "dtype":
        return np.dtype(value["name"]).type
    if kind == "function":
        if value["table"] not in FUNCTION_TABLES:
            raise StateError(f"unknown function table {value['table']!r}")
        fn = _resolve(FUNCTION_TABLES, value["table"], load=True).get(value["key"])
        if not callable(fn):
            raise StateError(f"no function {value['key']!r} in {value['table']}")
        return fn
    if kind == "estimator":
        return decode_estimator(value)
    raise StateError(f"unknown stored value kind {kind!r}")


def decode_estimator(value: dict):
    """A fitted estimator from ``encode_estimator``'s dict, without calling its ``fit``.

    scikit-learn and umap estimators are constructed with the stored hyper-parameters, then the
    learned attributes are set; ``NNDescent`` is restored through its ``__setstate__``.
    """
    if not isinstance(value, dict) or value.get(KIND) != "estimator":
        raise StateError("not a stored estimator")
    name = value["class"]
    if name not in ESTIMATORS:
        raise StateError(f"{name!r} is not an estimator Globscope restores")
    cls = _resolve(ESTIMATORS, name, load=True)
    attrs = {}
    for k, v in value["attrs"].items():
        if not (isinstance(k, str) and k.isidentifier() and not k.startswith("__")):
            raise StateError(f"{name}: bad attribute name {k!r}")
        attrs[k] = decode(v)
    if name == "pynndescent.NNDescent":
        obj = cls.__new__(cls)
        obj.__setstate__(attrs)  # compiles the search closures again from the stored arrays
        return obj
    params = {k: attrs.pop(k) for k in cls._get_param_names() if k in attrs}
    obj = cls(**params)
    for k, v in attrs.items():
        setattr(obj, k, v)
    return obj
