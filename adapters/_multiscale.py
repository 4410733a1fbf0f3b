"""Framework-neutral checks of a multi-scale DEQ's layers (used by both adapters' ``MultiScaleDEQ``).

``main_layers`` is a list of ``S`` per-scale blocks; ``mapping_layers`` an ``S x S`` matrix,
``mapping_layers[i][j]`` mapping scale ``j`` to scale ``i`` (``None`` on the diagonal: identity;
``None`` elsewhere: no connection).
"""

from __future__ import annotations

__all__ = ["check_module", "check_scales", "check_shapes", "links", "apply_layer", "fuse"]


def _is_seq(x) -> bool:
    return hasattr(x, "__len__") and hasattr(x, "__getitem__") and not isinstance(x, (str, dict))


def check_module(owner: str, what: str, m) -> None:
    if not callable(m):
        raise TypeError(f"{owner}: {what} must be an nn.Module or a callable, got {type(m).__name__}")


def check_scales(owner: str, main_layers, mapping_layers):
    """Validate the per-scale blocks and the ``S x S`` matrix of cross-scale maps; returns ``S``."""
    if not _is_seq(main_layers) or len(main_layers) < 1:
        raise TypeError(f"{owner}: main_layers must be a non-empty list of per-scale blocks main_layers[i](z_i, "
                        f"inj_i), got {type(main_layers).__name__}")
    S = len(main_layers)
    for i, m in enumerate(main_layers):
        check_module(owner, f"main_layers[{i}]", m)
    if not _is_seq(mapping_layers) or len(mapping_layers) != S:
        got = len(mapping_layers) if _is_seq(mapping_layers) else type(mapping_layers).__name__
        raise ValueError(f"{owner}: mapping_layers must be a {S} x {S} matrix (a list of {S} rows; "
                         f"mapping_layers[i][j] maps scale j to scale i), got {got} row(s)")
    for i, row in enumerate(mapping_layers):
        if not _is_seq(row) or len(row) != S:
            n = len(row) if _is_seq(row) else type(row).__name__
            raise ValueError(f"{owner}: mapping_layers[{i}] must have {S} entries (one per source scale; None on "
                             f"the diagonal = identity, None elsewhere = no connection), got {n}")
        for j, m in enumerate(row):
            if m is not None:
                check_module(owner, f"mapping_layers[{i}][{j}]", m)
    return S


def check_shapes(owner: str, shapes, S: int, what: str = "state shape"):
    """``shapes``: one ``what`` (a sequence of non-negative ints) per scale -> a tuple of tuples."""
    if shapes is None:
        return None
    if not _is_seq(shapes) or len(shapes) != S:
        got = f"{len(shapes)} entries" if _is_seq(shapes) else type(shapes).__name__
        raise ValueError(f"{owner}: shapes must list one {what} per scale ({S}), got {got}")
    out = []
    for i, sh in enumerate(shapes):
        if not _is_seq(sh) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in sh):
            raise TypeError(f"{owner}: shapes[{i}] must be the {what} of scale {i}, a tuple of non-negative ints "
                            f"such as (16, 8, 8), got {sh!r}")
        out.append(tuple(int(d) for d in sh))
    return tuple(out)


def _shape(x):
    return tuple(x.shape) if hasattr(x, "shape") else type(x).__name__


def apply_layer(owner: str, what: str, fn, args, names, like=None, like_what: str = "", hint: str = ""):
    """``fn(*args)`` for the layer ``what`` (e.g. ``mapping_layers[0][1]``) of a multi-scale cell. An
    exception it raises gets a note naming the layer and the shapes it was given, and ``hint``
    (Python >= 3.11; the exception itself propagates unchanged); with ``like``, an output of another
    shape is a ``ValueError`` naming the layer (``like_what`` says what ``like`` is)."""
    try:
        out = fn(*args)
    except Exception as e:
        if hasattr(e, "add_note"):
            given = ", ".join(f"{n} of shape {_shape(a)}" for n, a in zip(names, args))
            e.add_note(f"(raised by {owner}'s {what}, applied to {given}{hint})")
        raise
    if like is not None and _shape(out) != _shape(like):
        raise ValueError(f"{owner}: {what} returned shape {_shape(out)}, but {like_what} has shape {_shape(like)}")
    return out


def _origin(z, inj, i: int) -> str:
    if _shape(z) == _shape(inj):
        return ""
    return (f"; scale {i}'s state starts as shapes[{i}], init[{i}](inj[{i}]) or z0[{i}] when given, else as zeros "
            f"like inj[{i}]")


def fuse(owner: str, z, inj, S: int, block, maps, post):
    """One application of a multi-scale cell, framework-neutral: ``y_i = block(i)(z_i, inj_i)``,
    ``u_i = sum_j map(i, j)(y_j)`` over ``maps`` (``(i, j, callable or None)``, None: identity), then
    ``post``: None, a tuple of per-scale callables, or one callable on the tuple. Every layer's
    exception names the layer (:func:`apply_layer`); a map or a post-fuse layer that changes its
    scale's shape is a ``ValueError`` naming it."""
    y = [apply_layer(owner, f"main_layers[{i}]", block(i), (z[i], inj[i]), (f"z[{i}]", f"inj[{i}]"),
                     hint=_origin(z[i], inj[i], i)) for i in range(S)]
    u: list = [None] * S
    for i, j, m in maps:
        v = y[j] if m is None else apply_layer(owner, f"mapping_layers[{i}][{j}]", m, (y[j],),
                                               (f"main_layers[{j}]'s output",), y[i],
                                               f"main_layers[{i}]'s output (scale {i})")
        u[i] = v if u[i] is None else u[i] + v
    if post is None:
        for i in range(S):
            if _shape(u[i]) != _shape(z[i]):
                raise ValueError(f"{owner}: scale {i}'s next state (main_layers[{i}]'s output plus the maps into "
                                 f"scale {i}) has shape {_shape(u[i])}, but z[{i}] has shape {_shape(z[i])}")
        return tuple(u)
    if isinstance(post, (tuple, list)):
        return tuple(apply_layer(owner, f"post_fuse_layer[{i}]", p, (u[i],), (f"the fused scale {i}",), z[i],
                                 f"z[{i}]") for i, p in enumerate(post))
    return tuple(apply_layer(owner, "post_fuse_layer", post, (tuple(u),), ("the tuple of fused scales",)))


def links(mapping_layers, S: int):
    """``[(i, j, module or None)]``: the connections of the fuse stage (``None``: identity)."""
    out = []
    for i in range(S):
        for j in range(S):
            m = mapping_layers[i][j]
            if m is not None or i == j:
                out.append((i, j, m))
    return out
