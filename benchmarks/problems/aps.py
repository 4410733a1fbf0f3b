"""Scalar root-bracketing test problems: the 15 functions of Alefeld, Potra & Shi (ACM TOMS 21(3),
1995, "Algorithm 748: enclosing zeros of continuous functions"), 154 cases with their brackets and
roots, and parametrised families for batches of any size.

Every function is written once as ``f(ns, x, p)``: ``ns`` is an array namespace (``x`` an array of
any shape, ``p`` a tuple of arrays or numbers broadcasting against it) or :data:`SCALAR` (``x`` and
``p`` Python floats, for a loop of ``scipy.optimize.brentq``). Only ``+ - * / **``, ``exp``,
``sin``, ``cos`` and ``where`` are used. The case parameters, brackets and roots are the paper's (as
collected in SciPy's ``optimize/_tstutils.py``).

``cases(name)`` gives a function's cases as arrays (one element per case); ``FAMILIES`` gives
samplers ``(rng, size) -> (lo, hi, p)`` of brackets and parameters around the same functions (and
Kepler's equation) for the batch benchmark.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

__all__ = ["SCALAR", "Case", "CASES", "FUNCTIONS", "cases", "all_cases", "Family", "FAMILIES", "by_name"]


class _Scalar:
    """The few namespace functions the problems use, on Python floats."""

    exp = staticmethod(math.exp)
    sin = staticmethod(math.sin)
    cos = staticmethod(math.cos)

    @staticmethod
    def where(cond, a, b):
        return a if cond else b


SCALAR = _Scalar()


def aps01(ns, x, p):
    return ns.sin(x) - x / 2.0


def aps02(ns, x, p):
    total = 0.0 * x
    for i in range(1, 21):
        total = total + (2.0 * i - 5.0) ** 2 / (x - float(i * i)) ** 3
    return -2.0 * total


def aps03(ns, x, p):
    a, b = p
    return a * x * ns.exp(b * x)


def aps04(ns, x, p):
    n, a = p
    return x ** n - a


def aps05(ns, x, p):
    return ns.sin(x) - 0.5


def aps06(ns, x, p):
    (n,) = p
    return 2.0 * x * ns.exp(-n) - 2.0 * ns.exp(-n * x) + 1.0


def aps07(ns, x, p):
    (n,) = p
    return (1.0 + (1.0 - n) ** 2) * x - (1.0 - n * x) ** 2


def aps08(ns, x, p):
    (n,) = p
    return x * x - (1.0 - x) ** n


def aps09(ns, x, p):
    (n,) = p
    return (1.0 + (1.0 - n) ** 4) * x - (1.0 - n * x) ** 4


def aps10(ns, x, p):
    (n,) = p
    return ns.exp(-n * x) * (x - 1.0) + x ** n


def aps11(ns, x, p):
    (n,) = p
    return (n * x - 1.0) / ((n - 1.0) * x)


def aps12(ns, x, p):
    (n,) = p
    return x ** (1.0 / n) - n ** (1.0 / n)


def aps13(ns, x, p):
    # x exp(-1/x^2), every derivative 0 at the root; 0 where exp underflows (as in the paper)
    y = 1.0 / (x * x + 1e-300)
    return ns.where(y > 700.0, 0.0 * x, x * ns.exp(-ns.where(y > 700.0, 700.0, y)))


def aps14(ns, x, p):
    (n,) = p
    return ns.where(x <= 0.0, -n / 20.0, n / 20.0 * (x / 1.5 + ns.sin(x) - 1.0))


def aps15(ns, x, p):
    (n,) = p
    edge = 2e-3 / (1.0 + n)
    inside = ns.exp((n + 1.0) * ns.where(x > edge, edge, x) / 2.0 * 1000.0) - 1.859
    return ns.where(x < 0.0, -0.859, ns.where(x > edge, math.e - 1.859, inside))


FUNCTIONS = {f.__name__: f for f in (aps01, aps02, aps03, aps04, aps05, aps06, aps07, aps08, aps09, aps10,
                                     aps11, aps12, aps13, aps14, aps15)}


@dataclass(frozen=True)
class Case:
    """One test case: function name, parameters, bracket, root."""

    name: str
    p: tuple
    lo: float
    hi: float
    root: float


def _build():
    out = []
    for i in range(1, 11):  # aps02: between consecutive poles at i^2
        out.append(("aps02", (), i * i + 1e-9, (i + 1) ** 2 - 1e-9, None))
    out[:0] = [("aps01", (), math.pi / 2, math.pi, 1.89549426703398094e+00)]
    roots02 = [3.02291534727305677, 6.68375356080807848, 11.2387016550022114, 19.6760000806234103,
               29.8282273265047557, 41.9061161952894139, 55.9535958001430913, 71.9856655865877997,
               90.0088685391666701, 110.026532748330197]
    out = [c if c[0] != "aps02" else (c[0], c[1], c[2], c[3], roots02[int(round(math.sqrt(c[2]))) - 1]) for c in out]
    out += [("aps03", ab, -9.0, 31.0, 0.0) for ab in ((-40.0, -1.0), (-100.0, -2.0), (-200.0, -3.0))]
    for a, ns_ in ((0.2, (4, 6, 8, 10, 12)), (1.0, (4, 6, 8, 10, 12))):
        for n in ns_:
            out.append(("aps04", (float(n), a), 0.0, 5.0, a ** (1.0 / n)))
    out += [("aps04", (float(n), 1.0), -0.95, 4.05, 1.0) for n in (8, 10, 12, 14)]
    out.append(("aps05", (), 0.0, 1.5, math.pi / 6))
    roots06 = {1: 4.22477709641236709e-01, 2: 3.06699410483203705e-01, 3: 2.23705457654662959e-01,
               4: 1.71719147519508369e-01, 5: 1.38257155056824066e-01, 20: 3.46573590208538521e-02,
               40: 1.73286795139986315e-02, 60: 1.15524530093324210e-02, 80: 8.66433975699931573e-03,
               100: 6.93147180559945415e-03}
    out += [("aps06", (float(n),), 0.0, 1.0, r) for n, r in roots06.items()]
    roots07 = {5: 3.84025518406218985e-02, 10: 9.90000999800049949e-03, 20: 2.49375003906201174e-03}
    out += [("aps07", (float(n),), 0.0, 1.0, r) for n, r in roots07.items()]
    roots08 = {2: 0.5, 5: 3.45954815848242059e-01, 10: 2.45122333753307220e-01, 15: 1.95547623536565629e-01,
               20: 1.64920957276440960e-01}
    out += [("aps08", (float(n),), 0.0, 1.0, r) for n, r in roots08.items()]
    roots09 = {1: 2.75508040999484394e-01, 2: 1.37754020499742197e-01, 4: 1.03052837781564422e-02,
               5: 3.61710817890406339e-03, 8: 4.10872918496395375e-04, 15: 2.59895758929076292e-05,
               20: 7.66859512218533719e-06}
    out += [("aps09", (float(n),), 0.0, 1.0, r) for n, r in roots09.items()]
    roots10 = {1: 4.01058137541547011e-01, 5: 5.16153518757933583e-01, 10: 5.39522226908415781e-01,
               15: 5.48182294340655241e-01, 20: 5.52704666678487833e-01}
    out += [("aps10", (float(n),), 0.0, 1.0, r) for n, r in roots10.items()]
    out += [("aps11", (float(n),), 0.01, 1.0, 1.0 / n) for n in (2, 5, 15, 20)]
    out += [("aps12", (float(n),), 1.0, 100.0, float(n)) for n in (2, 3, 4, 5, 6, 7, 9, 11, 13, 15, 17, 19, 21, 23,
                                                                    25, 27, 29, 31, 33)]
    out.append(("aps13", (), -1.0, 4.0, 0.0))
    out += [("aps14", (float(n),), -1000.0, math.pi / 2, 6.23806518961612433e-01) for n in range(1, 41)]
    roots15 = [5.90513055942197166e-05, 5.63671553399369967e-05, 5.39164094555919196e-05, 5.16698923949422470e-05,
               4.96030966991445609e-05, 4.76952852876389951e-05, 4.59287932399486662e-05, 4.42884791956647841e-05,
               4.27612902578832391e-05, 4.13359139159538030e-05, 4.00024973380198076e-05, 3.87524192962066869e-05,
               3.75781035599579910e-05, 3.64728652199592355e-05, 3.54307833565318273e-05, 3.44465949299614980e-05,
               3.35156058778003705e-05, 3.26336162494372125e-05, 3.17968568584260013e-05, 3.10019354369653455e-05,
               3.02457906702100968e-05]
    out += [("aps15", (float(n),), -1000.0, 1e-4, r) for n, r in zip(range(20, 41), roots15)]
    roots15b = {100: 1.22779942324615231e-05, 200: 6.16953939044086617e-06, 300: 4.11985852982928163e-06,
                400: 3.09246238772721682e-06, 500: 2.47520442610501789e-06, 600: 2.06335676785127107e-06,
                700: 1.76901200781542651e-06, 800: 1.54816156988591016e-06, 900: 1.37633453660223511e-06,
                1000: 1.23883857889971403e-06}
    out += [("aps15", (float(n),), -1000.0, 1e-4, r) for n, r in roots15b.items()]
    return [Case(*c) for c in out]


CASES = _build()


def cases(name: str):
    """``(f, lo, hi, p, roots)`` of one function's cases, as float64 NumPy arrays (``p``: a tuple of
    per-case arrays); ``f(x, p)`` is the function on the array namespace of ``x``."""
    import array_api_compat

    rows = [c for c in CASES if c.name == name]
    if not rows:
        raise KeyError(f"no cases for {name!r}; valid: {sorted(FUNCTIONS)}")
    fn = FUNCTIONS[name]
    k = len(rows[0].p)
    p = tuple(np.array([c.p[i] for c in rows]) for i in range(k))
    f = _on_arrays(fn, array_api_compat)
    return (f, np.array([c.lo for c in rows]), np.array([c.hi for c in rows]), p,
            np.array([c.root for c in rows]))


def all_cases():
    """``(f, lo, hi, p, roots, names)`` of all 154 cases as one batch: ``p = (index, a, b)`` per case and
    ``f`` evaluates every function and keeps the case's own (the others may be NaN or Inf there)."""
    import array_api_compat

    names = list(FUNCTIONS)
    idx = np.array([float(names.index(c.name)) for c in CASES])
    pars = np.zeros((2, len(CASES)))
    for j, c in enumerate(CASES):
        pars[:len(c.p), j] = c.p
    fns = [FUNCTIONS[n] for n in names]

    def f(x, p):
        ns = array_api_compat.array_namespace(x)
        k, a, b = p
        out = 0.0 * x
        for i, fn in enumerate(fns):
            out = ns.where(k == float(i), fn(ns, x, (a, b)[:_NPARAMS[fn.__name__]]), out)
        return out

    return (f, np.array([c.lo for c in CASES]), np.array([c.hi for c in CASES]), (idx, pars[0], pars[1]),
            np.array([c.root for c in CASES]), [c.name for c in CASES])


_NPARAMS = {"aps01": 0, "aps02": 0, "aps03": 2, "aps04": 2, "aps05": 0, "aps13": 0}
_NPARAMS.update({n: 1 for n in FUNCTIONS if n not in _NPARAMS})

_ON_ARRAYS: dict = {}


def _on_arrays(fn, array_api_compat):
    """``fn`` as ``f(x, p)`` on the namespace of ``x``; one object per function (so that a jitted solve
    compiled for it is reused)."""
    f = _ON_ARRAYS.get(fn)
    if f is None:
        def f(x, p):
            return fn(array_api_compat.array_namespace(x), x, p)

        f.__name__ = fn.__name__
        _ON_ARRAYS[fn] = f
    return f


@dataclass(frozen=True)
class Family:
    """A function and a sampler of ``size`` brackets and parameters ``(lo, hi, p)`` for it."""

    name: str
    fn: Callable  # fn(ns, x, p)
    sample: Callable  # (rng, size) -> (lo, hi, p)

    def on_arrays(self):
        import array_api_compat

        return _on_arrays(self.fn, array_api_compat)

    def on_floats(self):
        fn = self.fn

        def f(x, *p):
            return fn(SCALAR, x, p)

        return f


def kepler(ns, x, p):
    """Kepler's equation for the eccentric anomaly: ``E - e sin(E) - M``."""
    e, m = p
    return x - e * ns.sin(x) - m


def _kepler(rng, size):
    e, m = rng.uniform(0.0, 0.99, size), rng.uniform(1e-3, 2.0 * math.pi - 1e-3, size)
    return np.zeros(size), np.full(size, 2.0 * math.pi), (e, m)


def _aps01(rng, size):  # random brackets around the root 1.8955 (the other roots 0 and -1.8955 stay out)
    return math.pi / 2 - rng.uniform(0.0, 0.5, size), math.pi + rng.uniform(0.0, 0.5, size), ()


def _aps04(rng, size):
    return np.zeros(size), np.full(size, 5.0), (rng.integers(4, 15, size).astype(float), rng.uniform(0.2, 1.0, size))


def _aps06(rng, size):
    return np.zeros(size), np.ones(size), (rng.uniform(1.0, 100.0, size),)


def _aps11(rng, size):
    return np.full(size, 0.01), np.ones(size), (rng.uniform(2.0, 50.0, size),)


def _aps12(rng, size):
    return np.ones(size), np.full(size, 100.0), (rng.uniform(2.0, 33.0, size),)


FAMILIES = [
    Family("kepler E - e sin E - M", kepler, _kepler),
    Family("aps01 sin x - x/2", aps01, _aps01),
    Family("aps04 x^n - a", aps04, _aps04),
    Family("aps06 2x e^-n - 2 e^-nx + 1", aps06, _aps06),
    Family("aps11 (nx - 1) / ((n - 1) x)", aps11, _aps11),
    Family("aps12 x^(1/n) - n^(1/n)", aps12, _aps12),
]


def by_name(prefix: str) -> Family:
    for fam in FAMILIES:
        if fam.name.startswith(prefix):
            return fam
    raise KeyError(prefix)
