"""Seeing what a solve does: ``verbose=True`` (eagerly on every backend, and under ``jax.jit``), the
``steadysolve`` logger, and ``ConvergenceWarning`` for every solver-failure warning."""

import logging
import re
import warnings

import numpy as np
import pytest

import steadysolve as ss

LINE = re.compile(r"^\s+(\d+)\s+(\d+)\s+(\w+)\s+(\S+)\s+(\S+)$")


def _table(text):
    lines = text.strip().splitlines()
    assert lines[0].split() == ["iter", "attempt", "algorithm", "max", "|F|", "max", "|du|"], lines[0]
    return [LINE.match(l).groups() for l in lines[1:] if LINE.match(l)], lines


def test_verbose_prints_one_line_per_iteration(bk, capsys):
    prob = ss.NonlinearProblem(lambda u, p: u - p * bk.xp.cos(u), bk.asarray(np.zeros(3)), bk.asarray([0.5, 1.0, 2.0]))
    seen = []
    sol = ss.solve(prob, "newton_krylov", verbose=True, callback=lambda it, u, fn: seen.append(it))
    rows, lines = _table(capsys.readouterr().out)
    assert [int(r[0]) for r in rows] == seen == list(range(1, sol.stats.niter + 1))  # the user's callback too
    assert {r[2] for r in rows} == {"newton_krylov"} and {r[1] for r in rows} == {"1"}
    norms = [float(r[3]) for r in rows]
    assert norms[-1] <= 1e-10 < norms[0]
    assert lines[-1].strip() == f"-> {sol!r}"


def test_verbose_batch_shows_the_worst_element_and_auto_its_attempts(capsys):
    c = np.array([[-1.0], [1.0], [-4.0]])  # the middle element has no root: the chain moves on
    sol = ss.solve(ss.NonlinearProblem(lambda u, p: u * u + p, np.full((3, 1), 1.5), c), batch_axis=0, maxiters=60,
                   verbose=True)
    rows, lines = _table(capsys.readouterr().out)
    assert len(rows) == sol.stats.niter and [int(r[0]) for r in rows] == list(range(1, len(rows) + 1))
    attempts = sorted({int(r[1]) for r in rows})
    assert attempts == list(range(1, len(sol.stats.attempts) + 1)) and len(attempts) >= 2
    assert float(rows[-1][3]) >= 1.0  # the max over the batch: the element without a root
    assert "Success for 2 of 3 elements" in lines[-1]


def test_verbose_under_jit_prints_from_inside_the_loop(capfd):
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    @jax.jit
    def run(p):
        return ss.solve(ss.NonlinearProblem(lambda u, p: u - p * jnp.cos(u), jnp.zeros(3), p), "newton",
                        verbose=True).stats.niter

    niter = int(run(jnp.asarray([0.5, 1.0, 2.0])))
    jax.effects_barrier()
    rows, _ = _table(capfd.readouterr().out)
    assert [int(r[0]) for r in rows] == list(range(1, niter + 1)) and {r[2] for r in rows} == {"newton"}
    assert float(rows[-1][3]) < 1e-10


def test_verbose_is_checked_and_peers_spellings_point_to_it():
    prob = ss.NonlinearProblem(lambda u, p: u, np.ones(1))
    with pytest.raises(TypeError, match="verbose"):
        ss.solve(prob, verbose="yes")
    for name in ("show_trace", "disp"):
        with pytest.raises(TypeError, match=f"{name}.*'verbose'"):
            ss.solve(prob, **{name: True})


def test_the_library_logger_has_a_null_handler_and_logs_each_solve(caplog):
    logger = logging.getLogger("steadysolve")
    assert any(isinstance(h, logging.NullHandler) for h in logger.handlers)
    with caplog.at_level(logging.DEBUG, logger="steadysolve"):
        sol = ss.solve(ss.NonlinearProblem(lambda u, p: u**3 - 8.0, np.ones(1)), "newton")
    records = [r for r in caplog.records if r.name == "steadysolve"]
    assert len(records) == 1 and records[0].levelno == logging.DEBUG
    assert repr(sol) in records[0].getMessage() and "nf=" in records[0].getMessage()


def test_solver_failures_warn_with_convergence_warning():
    torch = pytest.importorskip("torch")
    from steadysolve.adapters.torch import DEQ

    assert issubclass(ss.ConvergenceWarning, RuntimeWarning)
    torch.manual_seed(0)
    lin = torch.nn.Linear(4, 4)
    deq = DEQ(lambda z, x: torch.tanh(2.0 * lin(z) + x), solver="fixed_point", maxiters=2, abstol=1e-12)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        deq(torch.randn(3, 4))
    cats = [w.category for w in rec if "did not converge" in str(w.message)]
    assert cats == [ss.ConvergenceWarning], [(w.category, str(w.message)[:80]) for w in rec]
