"""NumPy >= 2's own array-API namespace with the hot functions as ndarray methods (see backend)."""

__all__ = ["NumPyNamespace", "fast_numpy"]


class NumPyNamespace:
    """NumPy >= 2's own namespace (array-API conformant for everything the core uses), with the
    hottest functions spelled as ndarray methods, which skip the dispatch of ``np.reshape`` /
    ``fromnumeric`` and of the compat wrapper. Every small eager step issues dozens of these
    (timings in docs/benchmarks.md)."""

    def __init__(self, np):
        self._np = np
        self.__name__ = "numpy"

    def __getattr__(self, name):
        value = getattr(self._np, name)
        setattr(self, name, value)  # cache: the next lookup is a plain attribute
        return value

    @staticmethod
    def reshape(x, shape, copy=None):
        return x.reshape(shape)

    @staticmethod
    def max(x, axis=None, keepdims=False):
        return x.max(axis=axis, keepdims=keepdims)

    @staticmethod
    def min(x, axis=None, keepdims=False):
        return x.min(axis=axis, keepdims=keepdims)

    @staticmethod
    def sum(x, axis=None, dtype=None, keepdims=False):
        return x.sum(axis=axis, dtype=dtype, keepdims=keepdims)

    @staticmethod
    def mean(x, axis=None, keepdims=False):
        return x.mean(axis=axis, keepdims=keepdims)

    @staticmethod
    def all(x, axis=None, keepdims=False):
        return x.all(axis=axis, keepdims=keepdims)

    @staticmethod
    def any(x, axis=None, keepdims=False):
        return x.any(axis=axis, keepdims=keepdims)

    @staticmethod
    def matrix_transpose(x):
        return x.swapaxes(-1, -2)

    @staticmethod
    def astype(x, dtype, copy=True, device=None):
        return x.astype(dtype, copy=copy)

    def __repr__(self) -> str:
        return "<steadysolve NumPy namespace>"


def fast_numpy():
    import numpy as np

    if int(np.__version__.split(".")[0]) < 2:  # NumPy 1.x is not array-API conformant: use the wrapper
        return None
    return NumPyNamespace(np)

