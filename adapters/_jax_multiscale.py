"""The Equinox multi-scale cell (``MultiScaleDEQ`` lives in ``adapters/jax.py``): per-scale
blocks, the fuse stage over an ``S x S`` matrix of cross-scale maps, an optional post-fuse layer."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

import equinox as eqx
import jax
import jax.numpy as jnp

from steadysolve._checks import reject_unknown
from steadysolve.registry import resolve

from ._jax_solve import OPTIONS, LayerOptions, run_fixed_point
from ._multiscale import check_module, check_scales, check_shapes, fuse, links

if TYPE_CHECKING:
    from typing_extensions import Unpack  # typing.Unpack from Python 3.11

__all__ = ["MultiScaleCell", "MultiScaleDEQ", "MultiScaleSkipDEQ", "per_scale"]


def _apply_cell(z, cell, x):
    return cell(z, x)


def per_scale(owner: str, what: str, obj, S: int):
    """A list of ``S`` callables -> a tuple; a single callable stays as it is; None stays None."""
    if obj is None:
        return None
    if isinstance(obj, (list, tuple)):
        if len(obj) != S:
            raise ValueError(f"{owner}: {what} must have one entry per scale ({S}), got {len(obj)}")
        for i, m in enumerate(obj):
            check_module(owner, f"{what}[{i}]", m)
        return tuple(obj)
    check_module(owner, what, obj)
    return obj


class MultiScaleCell(eqx.Module):
    """``(z, inj) -> z_next`` over a tuple of ``S`` states: ``y_i = main_layers[i](z_i, inj_i)``,
    ``u_i = sum_j mapping_layers[i][j](y_j)`` (None diagonal: identity; None elsewhere: no link),
    then ``post_fuse_layer`` (None, one callable per scale, or one callable on the tuple)."""

    main_layers: tuple
    mapping_layers: tuple
    post_fuse_layer: Any
    scales: int = eqx.field(static=True)
    owner: str = eqx.field(static=True)

    def __init__(self, main_layers, mapping_layers, post_fuse_layer=None, owner: str = "MultiScaleDEQ"):
        S = check_scales(owner, main_layers, mapping_layers)
        self.scales, self.owner = S, owner
        self.main_layers = tuple(main_layers)
        self.mapping_layers = tuple(tuple(row) for row in mapping_layers)
        self.post_fuse_layer = per_scale(owner, "post_fuse_layer", post_fuse_layer, S)

    def __call__(self, z, inj):
        return fuse(self.owner, z, inj, self.scales, lambda i: self.main_layers[i], links(self.mapping_layers, self.scales),
                    self.post_fuse_layer)


class MultiScaleDEQ(eqx.Module):
    """A multi-scale DEQ (MDEQ) over a tuple of per-scale states; ``deq(x) -> (z*_0, ..., z*_{S-1})``.

    Same layers as the torch ``MultiScaleDEQ`` (callables / Equinox modules): ``main_layers[i](z_i,
    inj_i)``, the ``S x S`` ``mapping_layers`` (``[i][j]``: scale ``j`` -> ``i``; None on the diagonal:
    identity), ``post_fuse_layer``, ``injection`` (one callable per scale on ``x``, one callable
    ``x -> tuple``, or None when ``x`` is the tuple of injections) and ``shapes`` (each scale's state
    shape; default: its injection's). Options as ``steadysolve.adapters.jax.fixed_point``; ``solver="dynamic_ss"`` is the
    continuous variant (the Julia package's ``MultiScaleNeuralODE``).

    Examples
    --------
    >>> import jax, jax.numpy as jnp, equinox as eqx
    >>> from steadysolve.adapters.jax import MultiScaleDEQ
    >>> k1, k2 = jax.random.split(jax.random.PRNGKey(0))
    >>> block = lambda z, inj: jnp.tanh(0.5 * z + inj)
    >>> deq = MultiScaleDEQ([block, block], [[None, eqx.nn.Linear(2, 4, key=k1)], [eqx.nn.Linear(4, 2, key=k2), None]],
    ...                     injection=[lambda x: x[:4], lambda x: x[4:]])
    >>> z_fine, z_coarse = eqx.filter_jit(deq)(jnp.linspace(-1.0, 1.0, 6))
    >>> z_fine.shape, z_coarse.shape
    ((4,), (2,))
    """

    cell: Any
    injection: Any
    init: Any
    solver: Any = eqx.field(static=True)
    shapes: Optional[tuple] = eqx.field(static=True)
    options: tuple = eqx.field(static=True)

    def __init__(self, main_layers: Any, mapping_layers: Any, post_fuse_layer: Any = None, solver: Any = "anderson", *,
                 shapes: Any = None, injection: Any = None, init: Any = None, **options: Unpack[LayerOptions]):
        owner = type(self).__name__
        self.cell = MultiScaleCell(main_layers, mapping_layers, post_fuse_layer, owner=owner)
        S = self.cell.scales
        reject_unknown(owner, {k: v for k, v in options.items() if k not in OPTIONS}, OPTIONS)
        resolve(solver)
        self.shapes = check_shapes(owner, shapes, S)
        self.injection, self.init = per_scale(owner, "injection", injection, S), per_scale(owner, "init", init, S)
        self.solver, self.options = solver, tuple(sorted(options.items()))

    def _inject(self, x):
        inj = x if self.injection is None else (tuple(m(x) for m in self.injection)
                                                if isinstance(self.injection, tuple) else self.injection(x))
        if not isinstance(inj, (tuple, list)) or len(inj) != self.cell.scales:
            raise ValueError(f"{type(self).__name__}: the injection must give one array per scale "
                             f"({self.cell.scales}), got {type(inj).__name__}")
        return tuple(inj)

    def initial_guess(self, x):
        """The initial state: zeros, or the learned guess ``init[i](inj_i)`` (Skip)."""
        inj = self._inject(x)
        if self.init is not None:
            return tuple(m(v) for m, v in zip(self.init, inj)) if isinstance(self.init, tuple) else \
                tuple(self.init(inj))
        if self.shapes is None:
            return tuple(jnp.zeros_like(v) for v in inj)
        return tuple(jnp.zeros(sh, dtype=jnp.result_type(inj[0])) for sh in self.shapes)

    def __call__(self, x, z0=None, *, return_stats: bool = False):
        inj = self._inject(x)
        z0 = self.initial_guess(x) if z0 is None else z0
        z, stats = run_fixed_point(type(self).__name__, _apply_cell, tuple(z0), self.cell, inj, solver=self.solver,
                                   **dict(self.options))
        return (z, stats) if return_stats else z

    def init_loss(self, x, z):
        """Skip DEQ: ``mean((z0 - z*)^2)`` over all scales (``z*`` constant), the guess's training loss."""
        z0 = self.initial_guess(x)
        sq = [jnp.sum((a - jax.lax.stop_gradient(b)) ** 2) for a, b in zip(z0, z)]
        return sum(sq) / sum(a.size for a in z0)

class MultiScaleSkipDEQ(MultiScaleDEQ):
    """``MultiScaleDEQ`` with a learned initial guess per scale: ``init`` (required) is one
    callable per scale, ``z0_i = init[i](inj_i)``; train it with ``deq.init_loss(x, z)``.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> from steadysolve.adapters.jax import MultiScaleSkipDEQ
    >>> block = lambda z, inj: jnp.tanh(0.5 * z + inj)
    >>> deq = MultiScaleSkipDEQ([block, block], [[None, None], [None, None]],
    ...                         injection=[lambda x: x[:4], lambda x: x[4:]], init=[lambda v: 0.5 * v] * 2)
    >>> x = jnp.linspace(-1.0, 1.0, 6)
    >>> z = deq(x)
    >>> [v.shape for v in z], bool(deq.init_loss(x, z) > 0)
    ([(4,), (2,)], True)
    """

    def __init__(self, main_layers: Any, mapping_layers: Any, post_fuse_layer: Any = None, solver: Any = "anderson", *,
                 init: Any, **options: Unpack[LayerOptions]):
        if init is None:
            raise TypeError("MultiScaleSkipDEQ: init= (one callable per scale, z0_i = init[i](inj_i)) is required")
        super().__init__(main_layers, mapping_layers, post_fuse_layer, solver, init=init, **options)
