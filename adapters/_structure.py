"""Structured (pytree) states of the implicit layers, shared by the PyTorch and JAX adapters.

A state may be one array or a tuple, list or dict (nested freely) of arrays of different
shapes, e.g. the per-scale feature maps of a multi-scale DEQ. The core always sees one
array: :class:`Structure` flattens the leaves at the adapter boundary into the solver's row
layout ``(batch, n)`` (each leaf through :class:`steadysolve._backend.layout.Layout`, one concatenation
in all) and unflattens a row array back into views of it (column slices + reshapes; no copy
where the framework allows). Framework-neutral: the array namespace comes from the leaves.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Optional

from steadysolve import _backend as backend
from steadysolve._backend.layout import Layout

__all__ = ["Structure", "is_structured", "tree_leaves", "tree_map"]

_NODES = (tuple, list, dict)


def is_structured(z) -> bool:
    """Whether ``z`` is a container state (tuple / list / dict) rather than a single array."""
    return isinstance(z, _NODES)


def _flatten(z, path: str, leaves: list, paths: list):
    """The treedef of ``z`` (nested tuples describing the containers); fills ``leaves`` and ``paths``."""
    if isinstance(z, dict):
        keys = sorted(z, key=repr)
        return ("dict", tuple(keys), tuple(_flatten(z[k], f"{path}[{k!r}]", leaves, paths) for k in keys))
    if isinstance(z, (tuple, list)):
        kind = "list" if isinstance(z, list) else ("tuple", type(z)) if type(z) is not tuple else "tuple"
        return (kind, len(z), tuple(_flatten(v, f"{path}[{i}]", leaves, paths) for i, v in enumerate(z)))
    leaves.append(z)
    paths.append(path)
    return None


def _unflatten(tdef, it):
    if tdef is None:
        return next(it)
    kind, meta, children = tdef
    vals = [_unflatten(c, it) for c in children]
    if kind == "dict":
        return dict(zip(meta, vals))
    if kind == "list":
        return vals
    if kind == "tuple":
        return tuple(vals)
    cls = kind[1]  # a namedtuple (or another tuple subclass)
    return cls(*vals) if hasattr(cls, "_fields") else cls(vals)


def tree_leaves(z, name: str = "z"):
    """``(leaves, paths, treedef)`` of a state; ``paths`` name each leaf as ``z['key'][1]``."""
    leaves, paths = [], []
    tdef = _flatten(z, name, leaves, paths)
    return leaves, paths, tdef


def tree_map(fn: Callable, z):
    """``fn`` applied to every leaf of a state, in the same structure."""
    leaves, _, tdef = tree_leaves(z)
    return _unflatten(tdef, iter([fn(v) for v in leaves]))


def _describe(tdef) -> str:
    if tdef is None:
        return "an array"
    kind, meta, _ = tdef
    if kind == "dict":
        return f"a dict with keys {list(meta)}"
    return f"a {kind if isinstance(kind, str) else kind[1].__name__} of length {meta}"


def _find_mismatch(ref, got, path: str) -> str:
    """The path of the first leaf / container where ``got``'s treedef differs from ``ref``'s."""
    if ref is not None and got is not None and ref[0] == got[0] == "dict" and ref[1] != got[1]:
        extra = [f"{path}[{k!r}]" for k in got[1] if k not in ref[1]]
        missing = [f"{path}[{k!r}]" for k in ref[1] if k not in got[1]]
        return (f"{', '.join(extra) or 'nothing'} returned but not in the state; "
                f"{', '.join(missing) or 'nothing'} missing")
    if ref is None or got is None or ref[0] != got[0] or ref[1] != got[1]:
        return f"{path} is {_describe(got)} but the state has {_describe(ref)} there"
    for i, (a, b) in enumerate(zip(ref[2], got[2])):
        key = repr(ref[1][i]) if ref[0] == "dict" else str(i)
        if a != b:
            return _find_mismatch(a, b, f"{path}[{key}]")
    return path  # pragma: no cover - only called on differing treedefs


class Structure:
    """The layout of a structured state: its treedef, per-leaf shapes/dtypes and column ranges.

    ``flatten(tree) -> (batch, n)`` rows (``(n,)`` when ``batch_axis`` is None);
    ``unflatten(rows) -> tree`` (views). ``checked(tree, what)`` flattens the output of a cell and
    raises a clear error naming the offending leaf when its structure, shape or dtype differs.
    """

    def __init__(self, z, batch_axis: Optional[int], owner: str, name: str = "z"):
        leaves, paths, self.treedef = tree_leaves(z, name)
        if not leaves:
            raise ValueError(f"{owner}: the state {name} is an empty {type(z).__name__}; it needs at least one array")
        self.paths = paths
        self.name = name
        self.xp = backend.namespace(*((p, v) for p, v in zip(paths, leaves)))
        dtypes = {v.dtype for v in leaves}
        if len(dtypes) > 1:
            listing = ", ".join(f"{p}: {v.dtype}" for p, v in zip(paths, leaves))
            raise TypeError(f"{owner}: all arrays of a structured state must share one dtype ({listing})")
        self.dtype = leaves[0].dtype
        self.batch_axis = batch_axis
        self.layouts = []
        for p, v in zip(paths, leaves):
            shape = tuple(v.shape)
            if batch_axis is not None and not -len(shape) <= batch_axis < len(shape):
                raise ValueError(f"{owner}: batch_axis={batch_axis} is out of range for {p} of shape {shape}")
            self.layouts.append(Layout(self.xp, shape, None if batch_axis is None else batch_axis % len(shape)))
        if batch_axis is not None:
            batches = {lay.batch for lay in self.layouts}
            if len(batches) > 1:
                listing = ", ".join(f"{p}: {lay.batch}" for p, lay in zip(paths, self.layouts))
                raise ValueError(f"{owner}: every array of a structured state needs the same batch size along "
                                 f"batch_axis={batch_axis} ({listing})")
        self.batch = self.layouts[0].batch if batch_axis is not None else 1
        sizes = [lay.n for lay in self.layouts]
        self.offsets = [sum(sizes[:i]) for i in range(len(sizes) + 1)]
        self.n = self.offsets[-1]
        self.shape = (self.batch, self.n) if batch_axis is not None else (self.n,)

    @property
    def shapes(self):
        return [lay.shape for lay in self.layouts]

    def _leaves(self, tree, what: Optional[str]):
        leaves, _, tdef = tree_leaves(tree, self.name)
        if tdef != self.treedef:
            where = _find_mismatch(self.treedef, tdef, self.name)
            raise TypeError(f"{what or 'the state'} returned a state of another structure: {where}; the cell "
                            f"must return the same structure as its input state")
        if what is not None:
            for p, v, lay in zip(self.paths, leaves, self.layouts):
                if not hasattr(v, "shape") or not hasattr(v, "dtype"):
                    raise TypeError(f"{what} returned {type(v).__name__} for the leaf {p}; expected an array of "
                                    f"shape {lay.shape}")
                if tuple(v.shape) != lay.shape:
                    raise ValueError(f"{what} returned shape {tuple(v.shape)} for the leaf {p}, but the state has "
                                     f"shape {lay.shape} there; each leaf must keep its shape")
                if v.dtype != self.dtype:
                    raise TypeError(f"{what} returned dtype {v.dtype} for the leaf {p}, but the state has dtype "
                                    f"{self.dtype}; cast the parameters/inputs so that both agree")
        return leaves

    def flatten(self, tree, what: Optional[str] = None):
        """The rows of ``tree`` (one concatenation); ``what`` names the producer for error messages."""
        leaves = self._leaves(tree, what)
        xp = self.xp
        if self.batch_axis is None:
            rows = [xp.reshape(v, (lay.n,)) for v, lay in zip(leaves, self.layouts)]
            return rows[0] if len(rows) == 1 else xp.concat(rows, axis=0)
        rows = [lay.to_rows(v) for v, lay in zip(leaves, self.layouts)]
        return rows[0] if len(rows) == 1 else xp.concat(rows, axis=1)

    def unflatten(self, rows):
        """The tree of a row array (views: column slices and reshapes)."""
        o = self.offsets
        if self.batch_axis is None:
            parts = [lay.from_rows(rows[o[i]:o[i + 1]]) for i, lay in enumerate(self.layouts)]
        else:
            parts = [lay.from_rows(rows[:, o[i]:o[i + 1]]) for i, lay in enumerate(self.layouts)]
        return _unflatten(self.treedef, iter(parts))

    def wrap(self, cell: Callable, what: str) -> Callable:
        """``rows -> rows`` for a cell ``tree -> tree``."""
        return lambda rows: self.flatten(cell(self.unflatten(rows)), what)

    def per_sample_size(self) -> int:
        return self.n if self.batch_axis is not None else math.prod(self.shape)
