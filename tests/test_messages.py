"""Messages the reliability audit found misleading (issue 25 item 7): the DEQs' ``z0=`` hint (a note on
a shape error of the first evaluation, never a re-wrapped exception), a problem's ``jac`` of the wrong
shape or type, a multi-scale DEQ whose ``shapes`` / layers / ``init`` do not fit."""

import sys

import numpy as np
import pytest

import steadysolve as ss

NOTES = sys.version_info >= (3, 11)  # exception notes (PEP 678); on 3.10 the exception is left untouched


class CellError(Exception):
    """A user exception whose constructor takes two arguments (``type(e)(message)`` cannot rebuild it)."""

    def __init__(self, code, where):
        super().__init__(f"cell failure {code} in {where}")
        self.code = code


def _notes(e):
    return "\n".join(getattr(e, "__notes__", []))


# ---------------------------------------------------------------------------------------
# (a) the DEQ's "pass z0=" hint
# ---------------------------------------------------------------------------------------

def test_torch_deq_hint_is_a_note_on_the_first_shape_error():
    torch = pytest.importorskip("torch")
    from steadysolve.adapters.torch import DEQ

    W, U = torch.nn.Linear(4, 4), torch.nn.Linear(3, 4)
    deq = DEQ(lambda z, x: torch.tanh(W(z) + U(x)))
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied") as info:
        deq(torch.randn(5, 3))
    assert type(info.value) is RuntimeError  # torch's own exception, not a new one
    if NOTES:
        assert "zeros of shape (5, 3)" in _notes(info.value) and "pass z0= (or init=)" in _notes(info.value)
    else:
        assert not _notes(info.value)


def test_torch_deq_leaves_a_users_exception_at_a_later_iteration_alone():
    torch = pytest.importorskip("torch")
    from steadysolve.adapters.torch import DEQ

    calls = [0]

    def cell(z, x):
        calls[0] += 1
        if calls[0] == 4:  # iteration 3 of the solve
            raise CellError(7, "block 2")
        return torch.tanh(0.5 * z + x)

    with pytest.raises(CellError, match="cell failure 7 in block 2") as info:
        DEQ(cell)(torch.randn(5, 3))
    assert info.value.code == 7 and "z0=" not in _notes(info.value)  # used to become a TypeError


def test_torch_deq_leaves_a_non_shape_error_of_the_first_evaluation_alone():
    torch = pytest.importorskip("torch")
    from steadysolve.adapters.torch import DEQ

    def cell(z, x):
        raise CellError(3, "setup")

    with pytest.raises(CellError, match="cell failure 3 in setup") as info:
        DEQ(cell)(torch.randn(5, 3))
    assert "z0=" not in _notes(info.value)


def test_jax_deq_hint_is_a_note_on_the_first_shape_error():
    import jax.numpy as jnp
    from steadysolve.adapters.jax import DEQ

    W, U = jnp.ones((4, 4)) * 0.1, jnp.ones((4, 3)) * 0.1
    with pytest.raises(TypeError, match="dot_general requires contracting dimensions") as info:
        DEQ(lambda z, x: jnp.tanh(W @ z + U @ x))(jnp.ones(3))
    if NOTES:
        assert "zeros of shape (3,)" in _notes(info.value) and "pass latent_shape= (or z0=)" in _notes(info.value)


def test_jax_deq_leaves_a_users_exception_alone():
    import jax.numpy as jnp
    from steadysolve.adapters.jax import DEQ

    def cell(z, x):
        raise CellError(5, "the cell")

    with pytest.raises(CellError, match="cell failure 5 in the cell") as info:  # used to become a TypeError
        DEQ(cell)(jnp.ones(3))
    assert "latent_shape" not in _notes(info.value)
    with pytest.raises(CellError):  # a structured state too
        DEQ(cell)((jnp.ones(3), jnp.ones(2)))


# ---------------------------------------------------------------------------------------
# (b) the problem's jac: wrong shape or type, named
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("alg", ["newton", "trust_region", "levenberg_marquardt", "auto"])
def test_jac_of_the_wrong_shape_or_type(bk, alg):
    xp = bk.xp
    f = lambda u, p: u * u - 2.0  # noqa: E731
    u0 = bk.asarray(np.ones(3))

    def solve(jac, u0=u0, **kw):
        return ss.solve(ss.NonlinearProblem(f, u0, jac=jac), alg, **kw)

    with pytest.raises(ValueError, match=r"jac\(u, p\) returned shape \(2, 2\); expected \(3, 3\) for a system of "
                                         r"n = 3 unknowns"):
        solve(lambda u, p: xp.eye(2, dtype=u.dtype))
    with pytest.raises(ValueError, match=r"jac\(u, p\) returned shape \(9,\)"):
        solve(lambda u, p: xp.reshape(xp.eye(3, dtype=u.dtype), (9,)))
    with pytest.raises(TypeError, match=r"jac\(u, p\) must return the Jacobian as a .* array like u0, got a list"):
        solve(lambda u, p: [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    with pytest.raises(TypeError, match=r"jac\(u, p\) returned dtype .*float32 but u0 has dtype .*float64"):
        solve(lambda u, p: xp.eye(3, dtype=xp.float32))
    with pytest.raises(ValueError, match=r"expected \(4, 3, 3\) for a batch of 4 systems of n = 3 unknowns each"):
        solve(lambda u, p: xp.eye(3, dtype=u.dtype), u0=bk.asarray(np.ones((4, 3))), batch_axis=0)
    good = solve(lambda u, p: 2.0 * u[:, None] * xp.eye(3, dtype=u.dtype), abstol=1e-12)
    st = good.stats.attempts["newton"] if alg == "auto" else good.stats
    assert good.successful and st.njac >= 1 and st.njvp == 0


def test_jac_of_another_library():
    torch = pytest.importorskip("torch")
    with pytest.raises(TypeError, match=r"as a numpy array like u0, got a torch array"):
        ss.solve(ss.NonlinearProblem(lambda u, p: u - 1.0, np.zeros(2), jac=lambda u, p: torch.eye(2)), "newton")


# ---------------------------------------------------------------------------------------
# (c) multi-scale DEQs: mismatched shapes / mapping / init name the argument
# ---------------------------------------------------------------------------------------

def _torch_ms():
    torch = pytest.importorskip("torch")
    from torch import nn

    class Block(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.lin = nn.Linear(c, c)

        def forward(self, z, inj):
            return torch.tanh(0.5 * self.lin(z) + inj)

    return torch, nn, Block


def test_torch_multiscale_messages():
    torch, nn, Block = _torch_ms()
    from steadysolve.adapters.torch import MultiScaleDEQ, MultiScaleSkipDEQ

    def make(cls=MultiScaleDEQ, up=(2, 4), down=(4, 2), **kw):
        kw.setdefault("injection", [nn.Linear(3, 4), nn.Linear(3, 2)])
        return cls([Block(4), Block(2)], [[None, nn.Linear(*up)], [nn.Linear(*down), None]], **kw)

    x = torch.randn(5, 3)
    assert [tuple(v.shape) for v in make()(x)] == [(5, 4), (5, 2)]
    with pytest.raises(TypeError, match=r"shapes\[0\] must be the per-sample shape of scale 0, a tuple of"):
        make(shapes=[4, 2])
    with pytest.raises(ValueError, match=r"shapes must list one per-sample shape per scale \(2\), got 3 entries"):
        make(shapes=[(4,), (2,), (1,)])
    with pytest.raises(ValueError, match=r"mapping_layers\[0\]\[1\] returned shape \(5, 3\), but main_layers\[0\]'s "
                                         r"output \(scale 0\) has shape \(5, 4\)"):
        make(up=(2, 3))(x)
    with pytest.raises(ValueError, match=r"init must have one entry per scale \(2\), got 1"):
        make(MultiScaleSkipDEQ, init=[nn.Linear(4, 4)])
    with pytest.raises(ValueError, match=r"post_fuse_layer\[1\] returned shape \(5, 5\), but z\[1\] has shape"):
        make(post_fuse_layer=[nn.Linear(4, 4), nn.Linear(2, 5)])(x)
    for bad, layer, given in [(dict(up=(3, 4)), r"mapping_layers\[0\]\[1\]", "main_layers[1]'s output of shape (5, 2)"),
                              (dict(shapes=[(4,), (3,)]), r"main_layers\[1\]", "z[1] of shape (5, 3), inj[1]"),
                              (dict(cls=MultiScaleSkipDEQ, init=[nn.Linear(4, 4), nn.Linear(2, 3)]),
                               r"main_layers\[1\]", "init[1](inj[1])")]:
        with pytest.raises(RuntimeError, match="shapes cannot be multiplied") as info:
            make(**bad)(x)
        if NOTES:
            assert given in _notes(info.value), _notes(info.value)


@pytest.mark.slow
def test_jax_multiscale_messages():
    import equinox as eqx
    import jax
    import jax.numpy as jnp
    from steadysolve.adapters.jax import MultiScaleDEQ, MultiScaleSkipDEQ

    k1, k2 = jax.random.split(jax.random.PRNGKey(0))
    block = lambda z, inj: jnp.tanh(0.5 * z + inj)  # noqa: E731

    def make(cls=MultiScaleDEQ, up=(2, 4), **kw):
        return cls([block, block], [[None, eqx.nn.Linear(*up, key=k1)], [eqx.nn.Linear(4, 2, key=k2), None]],
                   injection=[lambda x: x[:4], lambda x: x[4:]], **kw)

    x = jnp.linspace(-1.0, 1.0, 6)
    assert [v.shape for v in make()(x)] == [(4,), (2,)]
    with pytest.raises(TypeError, match=r"shapes\[1\] must be the state shape of scale 1, a tuple of non-negative"):
        make(shapes=[(4,), 2])
    with pytest.raises(ValueError, match=r"shapes must list one state shape per scale \(2\), got 1 entries"):
        make(shapes=[(4,)])
    with pytest.raises(ValueError, match=r"mapping_layers\[0\]\[1\] returned shape \(3,\), but main_layers\[0\]'s "
                                         r"output \(scale 0\) has shape \(4,\)"):
        make(up=(2, 3))(x)
    with pytest.raises(ValueError, match=r"init must have one entry per scale \(2\), got 3"):
        make(MultiScaleSkipDEQ, init=[lambda v: v] * 3)
    with pytest.raises(TypeError, match="incompatible shapes") as info:
        make(shapes=[(4,), (3,)])(x)
    if NOTES:
        assert "main_layers[1], applied to z[1] of shape (3,), inj[1] of shape (2,)" in _notes(info.value)
        assert "shapes[1]" in _notes(info.value)
