"""Rosenbrock (linearly implicit) methods as data: the tableau checks itself, the methods name one.

A Rosenbrock method needs no nonlinear solve: each step factorises ``W = I / (h gamma) - J`` once
(``J`` the Jacobian of the vector field at the step's start) and makes one linear solve per stage,

    W U_i = sum_{j<=i} E_ij f(t + c_j h, u + sum_{l<j} A_jl U_l) + sum_{j<i} (C_ij / h) U_j + h d_i df/dt,

then ``u_new = u + sum_i m_i U_i`` and the local error estimate is ``sum_i m_err_i U_i``. These
are the *transformed* coefficients of Hairer & Wanner (Solving ODEs II, IV.7): ``A`` (``a``),
``C`` (``couple``), the nodes ``c`` (``nodes``), ``d``, ``m``, ``m_err``; ``E`` (``mix``) is the
identity except in Shampine's ode23s error stage, which reuses earlier ``f`` values.

A tableau checks itself when it is built (:mod:`~steadysolve.ode._trees`): the order conditions
of the propagated solution up to ``order`` and of the comparison solution ``m - m_err`` up to
``error_order`` (one per rooted tree), the nodes and ``d`` against the coefficients (what makes
a non-autonomous ``f`` exact to the same order), ``R(inf) = 0`` when it says it is L-stable, and
its dense output up to ``dense_order``. A typo in a coefficient is an import-time ``ValueError``.

Coefficients: Rosenbrock23 from Shampine & Reichelt, "The MATLAB ODE suite", SIAM J. Sci. Comput.
18 (1997) 1-22 (``d = 1 / (2 + sqrt 2)``, ``e32 = 6 + sqrt 2``); Rodas4 from Hairer & Wanner, Solving
ODEs II (2nd ed., 1996), IV.7, as in their RODAS code; Rodas5P from G. Steinebach, "Construction of
Rosenbrock-Wanner method Rodas5P and numerical benchmarks within the Julia Differential Equations
package", BIT Numer. Math. 63 (2023) 27. The double-precision values (and the dense-output matrices
of the Rodas methods) were read from OrdinaryDiffEq.jl's ``rosenbrock_tableaus.jl`` and are checked
here by the order conditions, not trusted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional

from ._rosenbrock_tableau import RosenbrockTableau, hermite_dense as _hermite_dense
from ._wsolve import DenseLU, SparseLU

__all__ = ["RosenbrockTableau", "Rosenbrock", "Rosenbrock23", "Rodas4", "Rodas5P", "ROSENBROCK23_TABLEAU",
           "RODAS4_TABLEAU", "RODAS5P_TABLEAU"]

_D = 1.0 / (2.0 + math.sqrt(2.0))
_E32 = 6.0 + math.sqrt(2.0)
# ode23s: U_i = h d k_i-type stage variables; u_new = u + h k_2 = u + (U_1 + U_2) / d; the third stage
# (evaluated at u_new, FSAL) only estimates the error against the third-order u + h (k1 + 4 k2 + k3) / 6.
ROSENBROCK23_TABLEAU = RosenbrockTableau(
    name="Rosenbrock23", gamma=_D,
    a=((), (0.5 / _D,), (1.0 / _D, 1.0 / _D)),
    couple=((), (-1.0 / _D,), (-(_E32 + 2.0) / _D, -_E32 / _D)),
    mix=((), (0.0,), (2.0, _E32)),
    nodes=(0.0, 0.5, 1.0), d=(_D, 0.0, _D),
    m=(1.0 / _D, 1.0 / _D, 0.0), m_err=(1.0 / (6 * _D), 2.0 / (6 * _D), -1.0 / (6 * _D)),
    order=2, error_order=3,
    dense=((1.0 / _D,), (-2.0 / (1.0 - 2 * _D), 1.0 / (_D * (1.0 - 2 * _D))), ()), dense_order=2,
)


# Hairer & Wanner's RODAS (order 4(3), 6 stages, stiffly accurate: the last two stage inputs are the
# embedded and the propagated solution, so m = a[5] + e_6 and the error estimate is U_6).
_R4_A5 = (1.221224509226641, 6.019134481288629, 12.53708332932087, -0.6878860361058950)
_R4_M = _R4_A5 + (1.0, 1.0)
RODAS4_TABLEAU = RosenbrockTableau(
    name="Rodas4", gamma=0.25,
    a=((), (1.544,), (0.9466785280815826, 0.2557011698983284),
       (3.314825187068521, 2.896124015972201, 0.9986419139977817), _R4_A5, _R4_A5 + (1.0,)),
    couple=((), (-5.6688,), (-2.430093356833875, -0.2063599157091915),
            (-0.1073529058151375, -9.594562251023355, -20.47028614809616),
            (7.496443313967647, -10.24680431464352, -33.99990352819905, 11.70890893206160),
            (8.083246795921522, -7.981132988064893, -31.52159432874371, 16.31930543123136, -6.058818238834054)),
    nodes=(0.0, 0.386, 0.21, 0.63, 1.0, 1.0), d=(0.25, -0.1043, 0.1035, -0.0362, 0.0, 0.0),
    m=_R4_M, m_err=(0.0,) * 5 + (1.0,), order=4, error_order=3,
    dense=_hermite_dense(_R4_M, (
        (10.12623508344586, -7.487995877610167, -34.80091861555747, -7.992771707568823, 1.025137723295662, 0.0),
        (-0.6762803392801253, 6.087714651680015, 16.43084320892478, 24.76722511418386, -6.594389125716872, 0.0))),
    dense_order=3,
)

# Steinebach's Rodas5P (order 5(4), 8 stages, stiffly accurate like RODAS; dense output of order 4).
_R5_A6 = (-7.502846399306121, 2.561846144803919, -11.627539656261098, -0.18268767659942256, 0.030198172008377946)
_R5_M = _R5_A6 + (1.0, 1.0, 1.0)
RODAS5P_TABLEAU = RosenbrockTableau(
    name="Rodas5P", gamma=0.21193756319429014,
    a=((), (3.0,), (2.849394379747939, 0.45842242204463923),
       (-6.954028509809101, 2.489845061869568, -10.358996098473584),
       (2.8029986275628964, 0.5072464736228206, -0.3988312541770524, -0.04721187230404641),
       _R5_A6, _R5_A6 + (1.0,), _R5_A6 + (1.0, 1.0)),
    couple=((), (-14.155112264123755,), (-17.97296035885952, -2.859693295451294),
            (147.12150275711716, -1.41221402718213, 71.68940251302358),
            (165.43517024871676, -0.4592823456491126, 42.90938336958603, -5.961986721573306),
            (24.854864614690072, -3.0009227002832186, 47.4931110020768, 5.5814197821558125, -0.6610691825249471),
            (30.91273214028599, -3.1208243349937974, 77.79954646070892, 34.28646028294783, -19.097331116725623,
             -28.087943162872662),
            (37.80277123390563, -3.2571969029072276, 112.26918849496327, 66.9347231244047, -40.06618937091002,
             -54.66780262877968, -9.48861652309627)),
    nodes=(0.0, 0.6358126895828704, 0.4095798393397535, 0.9769306725060716, 0.4288403609558664, 1.0, 1.0, 1.0),
    d=(0.21193756319429014, -0.42387512638858027, -0.3384627126235924, 1.8046452872882734, 2.325825639765069,
       0.0, 0.0, 0.0),
    m=_R5_M, m_err=(0.0,) * 7 + (1.0,), order=5, error_order=4,
    dense=_hermite_dense(_R5_M, (
        (25.948786856663858, -2.5579724845846235, 10.433815404888879, -2.3679251022685204, 0.524948541321073,
         1.1241088310450404, 0.4272876194431874, -0.17202221070155493),
        (-9.91568850695171, -0.9689944594115154, 3.0438037242978453, -24.495224566215796, 20.176138334709044,
         15.98066361424651, -6.789040303419874, -6.710236069923372),
        (11.419903575922262, 2.8879645146136994, 72.92137995996029, 80.12511834622643, -52.072871366152654,
         -59.78993625266729, -0.15582684282751913, 4.883087185713722))),
    dense_order=4,
)


_DENSE, _SPARSE = DenseLU(), SparseLU()


@dataclass(frozen=True)
class Rosenbrock:
    """A Rosenbrock integrator defined by its tableau, with the solver of its linear systems.

    Parameters
    ----------
    tableau : the :class:`RosenbrockTableau`.
    linsolve : the W-solver. ``None`` (the default): :class:`~steadysolve.ode.SparseLU` when the problem
        has a sparse Jacobian (``sparsity=`` or a ``jac`` returning a sparse matrix), else
        :class:`~steadysolve.ode.DenseLU` (a dense ``J`` from the problem's ``jac``, automatic
        differentiation on PyTorch/JAX, or ``n`` finite differences on NumPy). Either may be given.
    autonomous : ``f(u, p, t)`` does not depend on ``t``: skip the ``df/dt`` term (one evaluation of
        ``f`` per step, a finite difference in ``t``) and build ``J`` from the problem's residual
        ``f(u, p, inf)``. Problems without ``t`` (``NonlinearProblem``, ``FixedPointProblem``) are
        autonomous whatever this says.
    """

    tableau: RosenbrockTableau
    linsolve: Optional[Any] = None
    autonomous: bool = False

    def __post_init__(self):
        own = type(self).__name__
        if not isinstance(self.tableau, RosenbrockTableau):
            raise TypeError(f"{own}: tableau must be a RosenbrockTableau, got {type(self.tableau).__name__}")
        ls = self.linsolve
        if ls is not None and not (hasattr(ls, "factor") and hasattr(ls, "solve")):
            raise TypeError(f"{own}: linsolve must be None or a W-solver such as DenseLU() or SparseLU(), "
                            f"got {type(ls).__name__}")
        if ls is not None and getattr(ls, "jacobian", None) not in ("dense", "sparse"):
            raise ValueError(f"{own}: linsolve wants a {getattr(ls, 'jacobian', None)!r} Jacobian; dense and sparse "
                             "Jacobians are built")
        if not isinstance(self.autonomous, bool):
            raise TypeError(f"{own}: autonomous must be a bool, got {self.autonomous!r}")

    def w_solver(self, sparse: bool):
        """The W-solver of a solve: ``linsolve``, or by default the sparse LU when the problem has a sparse
        Jacobian (``sparse``), else the dense one."""
        if self.linsolve is not None:
            return self.linsolve
        return _SPARSE if sparse else _DENSE

    @property
    def order(self) -> int:
        return self.tableau.order

    def __repr__(self) -> str:
        opts = [] if self.autonomous is False else ["autonomous=True"]
        return f"{type(self).__name__}({', '.join(opts)})"


@dataclass(frozen=True, repr=False)
class Rosenbrock23(Rosenbrock):
    """Shampine & Reichelt's ode23s pair: order 2 with a third-order error estimate, 3 stages (the third,
    FSAL, only for the estimate), L-stable. Cheap per step; good at loose tolerances.

    Examples
    --------
    >>> import numpy as np, steadysolve as ss
    >>> f = lambda u, p, t: -np.array([1.0, 1e4]) * (u - 1.0)
    >>> sol = ss.solve(ss.SteadyStateProblem(f, np.zeros(2)), ss.DynamicSS(ss.Rosenbrock23(autonomous=True)))
    >>> sol.retcode.name, np.round(sol.u, 6)
    ('Success', array([1., 1.]))
    """

    tableau: RosenbrockTableau = ROSENBROCK23_TABLEAU


@dataclass(frozen=True, repr=False)
class Rodas4(Rosenbrock):
    """Hairer & Wanner's RODAS: order 4(3), 6 stages, stiffly accurate and L-stable, dense output of order 3.
    Loses order on stiff non-autonomous problems (Prothero-Robinson), where :class:`Rodas5P` does not.

    Examples
    --------
    >>> import numpy as np, steadysolve as ss
    >>> f = lambda u, p, t: np.array([-0.04 * u[0] + 1e4 * u[1], 0.04 * u[0] - 1e4 * u[1]])
    >>> sol = ss.solve(ss.SteadyStateProblem(f, np.array([1.0, 0.0])), ss.DynamicSS(ss.Rodas4(autonomous=True)),
    ...                abstol=1e-12)
    >>> sol.retcode.name, [round(float(v), 6) for v in sol.u], round(float(sol.u.sum()), 12)  # keeps u1 + u2 = 1
    ('Success', [0.999996, 4e-06], 1.0)
    """

    tableau: RosenbrockTableau = RODAS4_TABLEAU


@dataclass(frozen=True, repr=False)
class Rodas5P(Rosenbrock):
    """Steinebach's Rodas5P: order 5(4), 8 stages, stiffly accurate and L-stable, dense output of order 4.
    The accurate choice at tight tolerances (SciML's usual stiff default).

    Examples
    --------
    >>> import numpy as np, steadysolve as ss
    >>> sol = ss.integrate(lambda u, p, t: -1e3 * (u - np.cos(t)), np.zeros(1), (0.0, 1.0), ss.Rodas5P(),
    ...                    saveat=[1.0], reltol=1e-8, abstol=1e-10)
    >>> np.round(sol.us[0], 4)                   # close to cos(1) + sin(1) / 1e3
    array([0.5411])
    """

    tableau: RosenbrockTableau = RODAS5P_TABLEAU
