"""Reading scvi-tools ``model.pt`` files without running any code from them.

scvi-tools saves its models with ``torch.save`` of a dict that holds, besides tensors, numpy
arrays (var_names, category mappings, split indices) and pandas DataFrames (the training
history), and loads them with ``torch.load(weights_only=False)``: whatever the file asks the
unpickler to call is called. torch's own ``weights_only`` unpickler refuses these files (it
cannot fill the ``defaultdict`` pandas pickles), so snakevi reads them with the restricted
unpickler that Python's pickle documentation describes: every global the file names is looked
up in a fixed allowlist of the types such files hold, and anything else (``os.system``,
``builtins.eval``, any other class or function) is refused before it is called.

``torch.load`` takes the unpickler as its ``pickle_module``; it still resolves the storage
types itself and rebuilds tensors with its own functions.
"""

from __future__ import annotations

import os
import pickle
import types

#: ``(module, name)`` pairs a scvi-tools model file may name, beside torch's tensor rebuilders.
_ALLOWED = {
    ("builtins", "dict"), ("builtins", "list"), ("builtins", "tuple"), ("builtins", "set"),
    ("builtins", "frozenset"), ("builtins", "slice"), ("builtins", "bytes"), ("builtins", "bytearray"),
    ("builtins", "complex"),
    ("collections", "OrderedDict"), ("collections", "defaultdict"),
    ("torch._utils", "_rebuild_tensor_v2"), ("torch._utils", "_rebuild_parameter"),
    ("torch._utils", "_rebuild_tensor"),
    ("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"), ("numpy.core.multiarray", "scalar"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("pandas.core.frame", "DataFrame"), ("pandas.core.series", "Series"),
    ("pandas.core.internals.managers", "BlockManager"), ("pandas.core.internals.managers", "SingleBlockManager"),
    ("pandas._libs.internals", "_unpickle_block"),
    ("pandas.core.indexes.base", "_new_Index"), ("pandas.core.indexes.base", "Index"),
    ("pandas.core.indexes.range", "RangeIndex"),
    ("pandas.core.arrays.categorical", "Categorical"), ("pandas.core.dtypes.dtypes", "CategoricalDtype"),
}
#: Names numpy's dtype classes are pickled under (``numpy.dtypes.Float32DType`` and so on).
_NUMPY_DTYPE_MODULE = "numpy.dtypes"


class UnsafeModelFile(pickle.UnpicklingError):
    """The file names a global outside the allowlist; nothing it asked for was called."""


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """``_codecs.encode`` as pickle protocol 2 uses it for bytes, and nothing else."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise UnsafeModelFile(f"_codecs.encode called with {type(text).__name__} and encoding {encoding!r}")
    return text.encode("latin1")


class Unpickler(pickle.Unpickler):
    """An unpickler whose ``find_class`` admits only the allowlisted types."""

    def find_class(self, module: str, name: str):
        if module == "__builtin__":  # Python 2 name, used by pickle protocol 2 (as torch.save writes)
            module = "builtins"
        if (module, name) == ("_codecs", "encode"):
            return _latin1_encode
        if (module, name) in _ALLOWED or (module == _NUMPY_DTYPE_MODULE and name.endswith("DType")):
            return super().find_class(module, name)
        raise UnsafeModelFile(
            f"the file asks for {module}.{name}, which a scvi-tools model file never holds; it was refused "
            "and nothing in the file was run"
        )


#: A ``pickle_module`` for ``torch.load``: pickle itself, with the restricted unpickler.
restricted_pickle = types.ModuleType("snakevi_restricted_pickle")
restricted_pickle.Unpickler = Unpickler
restricted_pickle.load = lambda fh, **kw: Unpickler(fh, **kw).load()
restricted_pickle.UnpicklingError = pickle.UnpicklingError
restricted_pickle.__dict__.update({k: getattr(pickle, k) for k in ("dumps", "dump", "Pickler", "HIGHEST_PROTOCOL")})


def load_restricted(path: str | os.PathLike):
    """``torch.load`` of ``path`` on the CPU through the restricted unpickler.

    Raises
    ------
    UnsafeModelFile
        The file names a global outside the allowlist (none of the file's requests ran).
    """
    import torch

    # weights_only=False only hands unpickling to the pickle_module given; it is the
    # allowlist above, not torch's, that decides what may be built.
    return torch.load(path, map_location="cpu", weights_only=False, pickle_module=restricted_pickle)


__all__ = ["UnsafeModelFile", "load_restricted"]
