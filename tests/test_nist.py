"""The NIST StRD nonlinear regression problems (benchmarks/problems/nist.py) are read and modelled correctly."""

import numpy as np
import pytest

from benchmarks.problems import nist


def test_all_27_problems_with_two_starts():
    probs = nist.PROBLEMS()
    assert [p.name for p in probs] == list(nist.NAMES) and len(probs) == 27
    assert sum(1 for _ in nist.cases()) == 54
    assert {p.difficulty for p in probs} == {"lower", "average", "higher"}
    for p in probs:
        assert all(s.shape == p.certified.shape for s in p.starts) and p.m > p.n


@pytest.mark.parametrize("name", nist.NAMES)
def test_the_certified_parameters_give_the_certified_residual_sum_of_squares(name):
    p = nist.load(name)
    r = p.residual(p.certified)
    assert r.shape == (p.m,) and r.dtype == np.float64
    if name == "Lanczos1":  # a zero-residual fit: NIST's 1e-25 is below the data's rounding
        assert float(r @ r) < 1e-19
    else:
        np.testing.assert_allclose(float(r @ r), p.rss, rtol=1e-9)


def test_digits_and_errors():
    c = np.array([2.0, -3e-7])
    assert nist.digits(c, c) == 11.0
    assert nist.digits(c * (1 + 1e-5), c) == pytest.approx(5.0)
    assert nist.digits(np.array([2.0, np.nan]), c) == 0.0
    with pytest.raises(KeyError, match="unknown problem 'Nope'"):
        nist.load("Nope")
