"""steadysolve.adapters.torch: DEQ layer and functional fixed_point (gradients, stats, failures, ecosystem)."""

import io
import warnings

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import steadysolve as ss  # noqa: E402
from steadysolve.adapters import Implicit, Phantom  # noqa: E402
from steadysolve.adapters.torch import DEQ, DEQConvergenceError, fixed_point  # noqa: E402

ALGORITHMS = ss.available()
BACKWARD_SOLVERS = ["gmres"] + ALGORITHMS
L = 0.5  # spectral norm of W: f is a contraction with Lipschitz constant <= L
TIGHT = dict(abstol=1e-12, reltol=0.0, maxiters=2000)


class Cell(nn.Module):
    """f(z, x) = tanh(W z + U x + b) with ||W||_2 = L."""

    def __init__(self, n=3, m=3, scale=L, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        W = torch.randn(n, n, generator=g, dtype=torch.float64)
        self.W = nn.Parameter(scale * W / torch.linalg.matrix_norm(W, 2))
        self.U = nn.Parameter(torch.randn(n, m, generator=g, dtype=torch.float64))
        self.b = nn.Parameter(0.1 * torch.randn(n, generator=g, dtype=torch.float64))
        self.m = m

    def forward(self, z, x):
        return torch.tanh(z @ self.W.T + x @ self.U.T + self.b)


def cell_fn(z, x, W, U, b):
    return torch.tanh(z @ W.T + x @ U.T + b)


def make_x(batch=2, m=3, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, m, generator=g, dtype=torch.float64)


def unrolled(cell, x, iters=200):
    """z* by unrolling the plain iteration with autograd (reference gradient)."""
    z = torch.zeros(x.shape[0], cell.W.shape[0], dtype=x.dtype)
    for _ in range(iters):
        z = cell(z, x)
    return z


# ---------------------------------------------------------------------------------------
# Gradients
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("alg", ALGORITHMS)
@pytest.mark.slow
def test_gradcheck_implicit_every_algorithm(alg):
    cell = Cell()
    W = cell.W.detach().clone().requires_grad_(True)
    U, b = cell.U.detach(), cell.b.detach()
    x = make_x().requires_grad_(True)
    z0 = torch.zeros(2, 3, dtype=torch.float64)

    def fun(x, W):
        return fixed_point(cell_fn, z0, x, W, U, b, solver=alg, backward=Implicit(reltol=1e-12), **TIGHT)[0]

    assert torch.autograd.gradcheck(fun, (x, W), fast_mode=True)


def test_gradcheck_module_all_parameters():
    cell = Cell()
    deq = DEQ(cell, backward=Implicit(reltol=1e-12), **TIGHT)
    x = make_x().requires_grad_(True)
    z0 = torch.zeros(2, 3, dtype=torch.float64)

    def fun(x, W, U, b):  # the module's own parameters, swapped in functionally
        return torch.func.functional_call(deq, {"f.W": W, "f.U": U, "f.b": b}, (x,), {"z0": z0})

    params = tuple(p.detach().clone().requires_grad_(True) for p in (cell.W, cell.U, cell.b))
    assert torch.autograd.gradcheck(fun, (x,) + params)


@pytest.mark.parametrize("alg", ALGORITHMS)
@pytest.mark.slow
def test_phantom_error_bound_every_algorithm(alg):
    """Phantom gradient of k damped steps: J_phantom - J_exact = -M^k J_exact with
    M = (1 - tau) I + tau J_f, so per sample ||J_ph - J_ex||_2 <= q^k ||J_ex||_2, q = 1 - tau + tau L."""
    cell = Cell()
    x = make_x(batch=2)
    for k, tau in ((1, 0.5), (3, 1.0)):
        jac = {}
        for mode in ("implicit", "phantom"):
            bw = Implicit(reltol=1e-13) if mode == "implicit" else Phantom(steps=k, damping=tau)
            deq = DEQ(cell, solver=alg, backward=bw, **TIGHT)
            jac[mode] = torch.autograd.functional.jacobian(lambda x: deq(x, z0=torch.zeros(2, 3, dtype=x.dtype)), x)
        q = 1 - tau + tau * L
        for bi in range(2):
            je, jp = jac["implicit"][bi, :, bi, :], jac["phantom"][bi, :, bi, :]
            err = torch.linalg.matrix_norm(jp - je, 2)
            assert err <= q ** k * torch.linalg.matrix_norm(je, 2) * (1 + 1e-9) + 1e-12, (k, tau, float(err))
            if k == 1:
                assert err > 1e-6  # the phantom gradient really is approximate


def test_phantom_many_steps_passes_gradcheck():
    cell = Cell()
    deq = DEQ(cell, backward=Phantom(steps=60, damping=1.0), **TIGHT)
    x = make_x().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: deq(x, z0=torch.zeros(2, 3, dtype=x.dtype)), (x,), fast_mode=True)


@pytest.mark.parametrize("bsolver", BACKWARD_SOLVERS)
def test_implicit_gradient_equals_unrolled(bsolver):
    cell = Cell()
    x = make_x(batch=4).requires_grad_(True)
    c = torch.linspace(-1, 1, 12, dtype=torch.float64).reshape(4, 3)
    loss = (unrolled(cell, x) * c).sum()
    ref = torch.autograd.grad(loss, [x] + list(cell.parameters()))
    deq = DEQ(cell, backward=Implicit(solver=bsolver, reltol=1e-12, maxiters=2000), **TIGHT)
    loss = (deq(x) * c).sum()
    got = torch.autograd.grad(loss, [x] + list(cell.parameters()))
    for a, r in zip(got, ref):
        torch.testing.assert_close(a, r, rtol=1e-8, atol=1e-10)
    bs = deq.backward_stats
    assert bs.successful and bs.phase == "backward" and bs.nvjp >= 1
    assert float(bs.resid_norm.max()) <= 1e-8


def test_functional_matches_module():
    cell = Cell()
    x = make_x(batch=3)
    deq = DEQ(cell, **TIGHT)
    deq(x).pow(2).sum().backward()
    W, U, b = (p.detach().clone().requires_grad_(True) for p in (cell.W, cell.U, cell.b))
    z, st = fixed_point(cell_fn, torch.zeros(3, 3, dtype=x.dtype), x, W, U, b, **TIGHT)
    assert st.backward is None
    z.pow(2).sum().backward()
    assert st.backward is not None and st.backward.successful
    for p, q in zip((cell.W, cell.U, cell.b), (W, U, b)):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-9, atol=1e-12)


def test_solution_is_a_fixed_point_and_no_graph_in_eval():
    cell = Cell()
    x = make_x(batch=5)
    deq = DEQ(cell, **TIGHT)
    with torch.no_grad():
        z = deq(x)
    assert z.grad_fn is None and deq.backward_stats is None
    assert torch.max(torch.abs(cell(z, x) - z)) <= 1e-12
    with pytest.raises(RuntimeError, match="(?i)backward|differentiable|twice|once"):
        zg = deq(x.requires_grad_(True))
        (gx,) = torch.autograd.grad(zg.sum(), x, create_graph=True)
        torch.autograd.grad(gx.sum(), x)


# ---------------------------------------------------------------------------------------
# Training sanity
# ---------------------------------------------------------------------------------------

class LinearCell(nn.Module):
    def __init__(self, h=4):
        super().__init__()
        self.W = nn.Linear(h, h, bias=False)
        self.U = nn.Linear(h, h)
        with torch.no_grad():
            self.W.weight.mul_(0.3 / torch.linalg.matrix_norm(self.W.weight, 2))

    def forward(self, z, x):
        return self.W(z) + self.U(x)


@pytest.mark.slow  # training
def test_regression_y_equals_2x():
    torch.manual_seed(0)
    deq = DEQ(LinearCell(), abstol=1e-6, reltol=1e-6, maxiters=100)
    head = nn.Linear(4, 1)
    model = nn.Sequential(nn.Linear(1, 4), deq, head).double()
    x = torch.arange(1.0, 11.0, dtype=torch.float64).reshape(-1, 1)
    y = 2 * x
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(100):
        opt.zero_grad()
        loss = (model(x) - y).pow(2).mean()
        loss.backward()
        opt.step()
    assert deq.forward_stats.successful and deq.backward_stats.successful
    with torch.no_grad():
        pred = model(torch.tensor([[-5.0]], dtype=torch.float64))
    assert abs(float(pred) + 10) <= 0.5, float(pred)


# ---------------------------------------------------------------------------------------
# Stats and failure visibility
# ---------------------------------------------------------------------------------------

def test_stats_per_element():
    cell = Cell()
    x = make_x(batch=6) * torch.tensor([0.0, 0.01, 0.1, 1.0, 3.0, 10.0], dtype=torch.float64)[:, None]
    deq = DEQ(cell, solver="fixed_point", abstol=1e-10, reltol=0.0, maxiters=500)
    z = deq(x.requires_grad_(True))
    fs = deq.forward_stats
    assert fs.phase == "forward" and fs.solver == "fixed_point" and fs.successful
    assert fs.retcode is ss.ReturnCode.Success and fs.retcodes == [ss.ReturnCode.Success] * 6
    assert fs.resid_norm.shape == (6,) and float(fs.resid_norm.max()) <= 1e-10
    per = fs.niter_per_element
    assert per.shape == (6,) and int(per.max()) == fs.niter and int(per.min()) < fs.niter
    assert fs.nf == fs.niter + 1
    assert deq.backward_stats is None
    z.sum().backward()
    bs = deq.backward_stats
    assert bs.successful and bs.solver == "fixed_point" and bs.niter >= 1
    assert set(fs.as_dict()) >= {"niter", "nf", "retcode", "max_resid"}
    assert "Success" in repr(fs)


def test_forward_failure_warns_once_per_module_and_counts():
    """A training loop that misses its tolerance gets ONE warning per layer, not one per step;
    the stats keep a running count, and on_failure="warn_always" asks for every one."""
    cell = Cell(scale=0.95)
    x = make_x(batch=3)
    deq = DEQ(cell, solver="fixed_point", maxiters=2, abstol=1e-12, reltol=0.0)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        for _ in range(5):
            deq(x)
    msgs = [str(w.message) for w in rec if issubclass(w.category, RuntimeWarning)]
    assert len(msgs) == 1, msgs
    assert "forward" in msgs[0] and "MaxIters" in msgs[0] and "3 of 3" in msgs[0] and "once" in msgs[0]
    assert deq.forward_stats.retcode is ss.ReturnCode.MaxIters and not deq.forward_stats.successful
    assert deq.stats.failures["forward"] == 5
    loud = DEQ(cell, solver="fixed_point", maxiters=2, abstol=1e-12, reltol=0.0, on_failure="warn_always")
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        for _ in range(3):
            loud(x)
    assert sum(issubclass(w.category, RuntimeWarning) for w in rec) == 3


def test_backward_failure_warns_and_raises():
    cell = Cell(scale=0.95)
    x = make_x(batch=3).requires_grad_(True)
    deq = DEQ(cell, backward=Implicit(solver="fixed_point", maxiters=1, reltol=1e-14), **TIGHT)
    z = deq(x)
    with pytest.warns(RuntimeWarning, match="backward solve did not converge.*MaxIters"):
        z.sum().backward()
    assert deq.backward_stats.retcode is ss.ReturnCode.MaxIters
    deq = DEQ(cell, backward=Implicit(solver="fixed_point", maxiters=1, reltol=1e-14), on_failure="raise", **TIGHT)
    z = deq(x)
    with pytest.raises(DEQConvergenceError, match="backward") as ei:
        z.sum().backward()
    assert ei.value.phase == "backward" and isinstance(ei.value, ss.ConvergenceError)
    deq = DEQ(cell, solver="fixed_point", maxiters=1, on_failure="raise")
    with pytest.raises(DEQConvergenceError, match="forward"):
        deq(x)
    deq = DEQ(cell, solver="fixed_point", maxiters=1, on_failure="ignore")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        deq(x)


def test_wrong_shape_and_dtype_errors():
    x = make_x(batch=2)
    deq = DEQ(lambda z, x: z[:, :2], abstol=1e-8)
    with pytest.raises(ValueError, match=r"shape \(2, 2\).*shape \(2, 3\)"):
        deq(x, z0=torch.zeros(2, 3, dtype=torch.float64))
    deq = DEQ(lambda z, x: z.float())
    with pytest.raises(TypeError, match="float32.*float64"):
        deq(x)
    deq = DEQ(lambda z, x: "nope")
    with pytest.raises(TypeError, match="must return a torch.Tensor"):
        deq(x)
    with pytest.raises(TypeError, match="z0= or init="):
        DEQ(lambda z, x: z)(3.0)
    with pytest.raises(TypeError, match="z0= or init="):
        DEQ(lambda z, x: z)((x, 3.0))
    z = DEQ(lambda z, x: (0.5 * z[0] + x[0], 0.5 * z[1] + x[1]))((x, x))  # a structured x: z has its structure
    assert isinstance(z, tuple) and torch.allclose(z[1], 2 * x, atol=1e-2)


def test_bad_options():
    cell = Cell()
    with pytest.raises(ValueError, match="Valid names"):
        DEQ(cell, solver="andersen")
    with pytest.raises(ValueError, match="backward.*'implicit'"):
        DEQ(cell, backward="unrolled")
    with pytest.raises(ValueError, match="backward solver.*gmres"):
        DEQ(cell, backward=Implicit(solver="cg"))
    with pytest.raises(TypeError, match="unexpected keyword argument 'backward_solver'"):
        DEQ(cell, backward_solver="gmres")
    with pytest.raises(TypeError, match="backward must be"):
        DEQ(cell, backward=3)
    with pytest.raises(ValueError, match="abstol"):
        DEQ(cell, abstol=-1.0)
    with pytest.raises(ValueError, match="damping must be"):
        DEQ(cell, backward=Phantom(damping=0.0))
    with pytest.raises(TypeError, match="unexpected keyword argument 'rtol'"):
        Implicit(rtol=1e-3)
    with pytest.raises(ValueError, match="maxiters"):
        DEQ(cell, maxiters=0)
    with pytest.raises(ValueError, match="on_failure"):
        DEQ(cell, on_failure="shout")
    with pytest.raises(TypeError, match="f must be"):
        DEQ(3)
    with pytest.raises(TypeError, match="unexpected keyword"):
        fixed_point(cell_fn, torch.zeros(2, 3, dtype=torch.float64), make_x(), abstl=1e-3)
    with pytest.raises(ValueError, match="batch_axis"):
        DEQ(cell, batch_axis=5)(make_x())


# ---------------------------------------------------------------------------------------
# DEQ tools
# ---------------------------------------------------------------------------------------

def test_jacobian_regulariser_estimates_frobenius_norm():
    torch.manual_seed(0)
    n = 4
    W = torch.randn(n, n, dtype=torch.float64)
    W = 0.5 * W / torch.linalg.matrix_norm(W, 2)
    lin = nn.Linear(n, n, bias=False).double()
    with torch.no_grad():
        lin.weight.copy_(W)
    deq = DEQ(lambda z, x: lin(z) + x, jacobian_reg=2.0, abstol=1e-10)
    x = torch.randn(4000, n, dtype=torch.float64)
    z = deq(x)
    exact = float(torch.sum(W * W)) / n
    assert deq.stats.jac_estimate == pytest.approx(exact, rel=0.1)
    assert float(deq.jac_loss.detach()) == pytest.approx(2.0 * deq.stats.jac_estimate)
    (deq.aux_loss + 0 * z.sum()).backward()
    assert lin.weight.grad is not None and float(lin.weight.grad.abs().sum()) > 0
    with torch.no_grad():
        deq(x)
    assert deq.jac_loss is None
    deq.eval()
    deq(x)
    assert deq.jac_loss is None
    phantom = DEQ(lambda z, x: lin(z) + x, backward="phantom", jacobian_reg=1.0, abstol=1e-10).train()
    phantom(x)
    assert phantom.stats.jac_estimate == pytest.approx(exact, rel=0.1)


def test_skip_deq_init():
    cell = Cell()
    x = make_x(batch=4)
    init = nn.Linear(3, 3).double()
    deq = DEQ(cell, init=init, **TIGHT)
    z = deq(x)
    ref = DEQ(cell, **TIGHT)(x)
    torch.testing.assert_close(z, ref, rtol=0, atol=1e-11)
    assert deq.init_loss is not None and float(deq.init_loss.detach()) > 0
    deq.aux_loss.backward()
    assert init.weight.grad is not None and float(init.weight.grad.abs().sum()) > 0
    # a perfect initial guess converges at once
    perfect = DEQ(cell, init=lambda x: ref.detach(), **TIGHT)
    perfect(x)
    assert perfect.forward_stats.niter <= 1


def test_batch_axis_and_unbatched():
    cell = Cell()
    x = make_x(batch=5)
    ref = DEQ(cell, **TIGHT)(x).detach()

    def f_t(z, xt):  # z and x stored as (n, batch)
        return cell(z.T, xt.T).T

    zt = DEQ(f_t, batch_axis=1, **TIGHT)(x.T.contiguous(), z0=torch.zeros(3, 5, dtype=torch.float64))
    torch.testing.assert_close(zt.T, ref, rtol=0, atol=1e-11)
    deq = DEQ(cell, batch_axis=None, **TIGHT)
    z = deq(x, z0=torch.zeros(5, 3, dtype=torch.float64))
    torch.testing.assert_close(z, ref, rtol=0, atol=1e-11)
    assert deq.forward_stats.niter_per_element is None and deq.forward_stats.resid_norm.shape == ()


def test_algorithm_instance_and_extra_repr():
    deq = DEQ(Cell(), solver=ss.Anderson(memory=2), **TIGHT)
    z = deq(make_x())
    assert deq.forward_stats.successful and z.shape == (2, 3)
    assert "anderson" in repr(deq)


# ---------------------------------------------------------------------------------------
# Ecosystem
# ---------------------------------------------------------------------------------------

def test_sequential_state_dict_and_dtype():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 3), DEQ(Cell().float(), abstol=1e-6, reltol=1e-6), nn.Linear(3, 1))
    x = torch.randn(7, 2)  # noqa
    out = model(x)
    assert out.dtype == torch.float32
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    buf.seek(0)
    torch.manual_seed(1)
    other = nn.Sequential(nn.Linear(2, 3), DEQ(Cell(seed=5).float(), abstol=1e-6, reltol=1e-6), nn.Linear(3, 1))
    assert set(other.state_dict()) == set(model.state_dict()) and "1.f.W" in model.state_dict()
    other.load_state_dict(torch.load(buf))
    with torch.no_grad():
        torch.testing.assert_close(other(x), model(x), rtol=0, atol=1e-6)
    model64 = model.to(torch.float64)
    out64 = model64(x.double())
    assert out64.dtype == torch.float64 and model64[1].forward_stats.successful
    out64.sum().backward()


def test_torch_compile_surrounding_model():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 3), DEQ(Cell().float(), abstol=1e-6, reltol=1e-6), nn.Linear(3, 1))
    x = torch.randn(5, 2)
    ref = model(x)
    g_ref = torch.autograd.grad(ref.sum(), list(model.parameters()))
    compiled = torch.compile(model, backend="eager")
    out = compiled(x)
    torch.testing.assert_close(out, ref)
    g = torch.autograd.grad(out.sum(), list(model.parameters()))
    for a, b in zip(g, g_ref):
        torch.testing.assert_close(a, b)
    assert model[1].backward_stats.successful


def _shifted_fd_grad(cell, x, z_r, c, eps=1e-6):
    """Central differences in x of ``c . (z*(x) + r)``, where ``z*`` solves ``z = f(z, x) - r`` and
    ``r = f(z_r, x) - z_r`` is held constant: ``z_r`` is that problem's exact fixed point, so this is
    the implicit-function-theorem gradient at ``z_r`` whatever ``z_r``'s own residual."""
    with torch.no_grad():
        r = cell(z_r, x) - z_r
        g = torch.zeros_like(x)
        for i in range(x.shape[0]):
            for j in range(x.shape[1]):
                out = []
                for s in (eps, -eps):
                    xp = x.detach().clone()
                    xp[i, j] += s
                    z = DEQ(lambda z, xx: cell(z, xx) - r, **TIGHT)(xp, z0=z_r.clone())
                    out.append(((z + r) * c).sum())
                g[i, j] = (out[0] - out[1]) / (2 * eps)
    return g


def test_capped_forward_gets_the_implicit_gradient_at_its_returned_iterate():
    """The capped-regime policy (as torchdeq): a sample whose forward solve stops at its cap gets the
    implicit-function-theorem gradient at the returned (best) iterate, whatever its residual; the
    layer returns f(z_r, x) in training, z_r without gradients. Finite differences, float64."""
    cell = Cell()
    x = make_x(batch=3) * torch.tensor([0.0, 1.0, 1.0], dtype=torch.float64)[:, None]
    c = torch.tensor([[1.0, -2.0, 0.5]], dtype=torch.float64)
    with torch.no_grad():
        zstar = DEQ(cell, **TIGHT)(x)
    z0 = torch.cat([zstar[:1], torch.zeros(2, 3, dtype=torch.float64)])  # sample 0 starts at its fixed point
    opts = dict(solver="fixed_point", abstol=1e-10, reltol=0.0, maxiters=3, on_failure="ignore")
    deq = DEQ(cell, backward=Implicit(reltol=1e-13, maxiters=500), **opts)
    with torch.no_grad():
        z_r = deq(x, z0=z0)
    codes = deq.forward_stats.retcodes
    assert codes[0] is ss.ReturnCode.Success and codes[1] is ss.ReturnCode.MaxIters
    xg = x.clone().requires_grad_(True)
    z = deq(xg, z0=z0)
    torch.testing.assert_close(z, cell(z_r, x), rtol=0, atol=0)  # one more step of the map
    assert float((z.detach() - z_r)[1:].abs().max()) > 1e-4  # the capped samples are off their fixed point
    (gx,) = torch.autograd.grad((z * c).sum(), xg)
    torch.testing.assert_close(gx, _shifted_fd_grad(cell, x, z_r, c), rtol=1e-6, atol=1e-8)
    assert deq.backward_stats.solver == "fixed_point" and deq.backward_stats.successful
    # failed_grad="jfb": the capped samples get w = g pushed through f once
    jfb_deq = DEQ(cell, failed_grad="jfb", backward=Implicit(reltol=1e-13, maxiters=500), **opts)
    (gj,) = torch.autograd.grad((jfb_deq(xg, z0=z0) * c).sum(), xg)
    (jfb,) = torch.autograd.grad((cell(z_r, xg) * c).sum(), xg)
    torch.testing.assert_close(gj[1:], jfb[1:], rtol=1e-12, atol=1e-14)
    assert not torch.allclose(gx[1:], jfb[1:])
    torch.testing.assert_close(gj[0], gx[0], rtol=1e-8, atol=1e-10)
    with pytest.raises(ValueError, match="failed_grad"):
        DEQ(cell, failed_grad="zero")


def test_convergence_warning_points_at_the_users_call():
    """The 'did not converge' warning names the user's line, not a frame inside the adapter."""
    import inspect

    torch.manual_seed(0)
    lin = nn.Linear(3, 3)
    with torch.no_grad():
        lin.weight.mul_(10.0)
    deq = DEQ(lambda z, x: torch.tanh(lin(z) + x), maxiters=3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        line = inspect.currentframe().f_lineno + 1
        deq(torch.randn(2, 3))
        fixed_point(lambda z, x: torch.tanh(lin(z) + x), torch.zeros(2, 3), torch.randn(2, 3), maxiters=3)
    got = [(w.filename, w.lineno) for w in caught if "did not converge" in str(w.message)]
    assert got == [(__file__, line), (__file__, line + 1)]


@pytest.mark.parametrize("norm", ["weight_norm", "spectral_norm"])
def test_parametrized_weights_are_computed_once_per_forward_with_gradients(norm):
    """torchdeq's apply_norm / reset_norm: a cell normalised with torch.nn.utils.parametrizations gets
    its weight computed once per forward (not once per solver iteration), and the gradient reaches
    the parametrization's own parameters, equal to that of the same cell with the weight computed
    by hand (float64)."""
    from torch.nn.utils import parametrizations

    torch.manual_seed(0)
    lin = getattr(parametrizations, norm)(nn.Linear(3, 3).double())
    calls = [0]
    lin.parametrizations.weight[0].register_forward_hook(lambda *a: calls.__setitem__(0, calls[0] + 1))

    class NormCell(nn.Module):  # the parametrized layers must be submodules of the cell
        def __init__(self):
            super().__init__()
            self.lin = lin

        def forward(self, z, x):
            return torch.tanh(0.5 * self.lin(z) + x)

    deq = DEQ(NormCell(), abstol=1e-12, reltol=0.0, maxiters=200)
    x = make_x(batch=4)
    lin.eval()  # spectral_norm: no power-iteration update, so the reference below sees the same weight
    z = deq(x)
    assert calls[0] == 1 and deq.forward_stats.nf > 5
    z.pow(2).sum().backward()
    grads = [p.grad.clone() for p in lin.parameters()]
    assert all(g is not None and bool(g.abs().sum() > 0) for g in grads)
    lin.zero_grad()
    W = lin.weight  # the parametrized weight, with its graph
    ref = DEQ(lambda z, x: torch.tanh(0.5 * (z @ W.T + lin.bias) + x), abstol=1e-12, reltol=0.0, maxiters=200)
    ref(x).pow(2).sum().backward()
    for g, p in zip(grads, lin.parameters()):
        torch.testing.assert_close(g, p.grad, rtol=1e-8, atol=1e-10)
    lin.train()
    calls[0] = 0
    deq(x)
    assert calls[0] == 1  # in training too (spectral_norm's power iteration: once per forward)


def test_sampled_states_each_get_the_implicit_gradient_at_their_iterate():
    """Fixed-point correction (n_states): a training call returns k states, the cap cut into k segments
    each solved from the last state; each state is f of its segment's returned iterate and its gradient
    is the implicit one there (finite differences of the shifted problem, float64)."""
    cell = Cell()
    x = make_x(batch=2)
    c = torch.tensor([[1.0, -2.0, 0.5]], dtype=torch.float64)
    bwd = Implicit(reltol=1e-13, maxiters=500)
    opts = dict(solver="fixed_point", abstol=1e-12, reltol=0.0, on_failure="ignore", backward=bwd)
    deq = DEQ(cell, maxiters=6, n_states=3, **opts)
    xg = x.clone().requires_grad_(True)
    states = deq(xg)
    assert isinstance(states, tuple) and len(states) == 3
    seg = DEQ(cell, maxiters=2, **opts)  # one segment, to recompute each returned iterate
    start = torch.zeros_like(x)
    for z in states:
        with torch.no_grad():
            z_r = seg(x, z0=start)
        torch.testing.assert_close(z, cell(z_r, x), rtol=0, atol=0)
        (gx,) = torch.autograd.grad((z * c).sum(), xg, retain_graph=True)
        torch.testing.assert_close(gx, _shifted_fd_grad(cell, x, z_r, c), rtol=1e-6, atol=1e-8)
        start = z.detach()
    r = [float((cell(z, x) - z).detach().norm()) for z in states]
    assert r[0] > r[1] > r[2]  # each state nearer the fixed point
    with torch.no_grad():
        (z_eval,) = deq(x)
    with torch.no_grad():
        torch.testing.assert_close(z_eval, DEQ(cell, maxiters=6, **opts)(x))
    assert DEQ(cell, maxiters=10, indexing=[3, 7], **opts)._bounds == (3, 7, 10)
    assert DEQ(cell, max_nfe=50, n_states=4, **opts)._bounds == (14, 26, 38, 50)
    with pytest.raises(TypeError, match="not both"):
        DEQ(cell, n_states=2, indexing=[3])
    with pytest.raises(ValueError, match="below the cap"):
        DEQ(cell, maxiters=10, indexing=[10])
    with pytest.raises(ValueError, match="n_states"):
        DEQ(cell, maxiters=3, n_states=4)


@pytest.mark.slow
@pytest.mark.parametrize("solver, floor", [("anderson", 0.87), ("fixed_point", 0.84)])
def test_capped_regime_trains_a_digits_deq(solver, floor):
    """Training where most forward solves stop at their cap (torchdeq's test: abstol=1e-3, reltol=0, l2;
    max_nfe=50): the digits DEQ of benchmarks/deq_torch.py (--data digits --capped, seed 0) reaches
    torchdeq's accuracy (0.884) within a few points; with the former defaults (GMRES adjoint, JFB for
    failed samples) anderson reached 0.710."""
    from benchmarks.problems.digits import load_digits

    torch.manual_seed(0)
    Xtr, ytr, Xte, yte = (torch.from_numpy(v) for v in load_digits(0))
    inp, out = nn.Linear(64, 64), nn.Linear(64, 10)
    a, b = nn.Linear(64, 320), nn.Linear(320, 64)
    deq = DEQ(lambda z, x: b(torch.tanh(a(z + x))), solver=solver, abstol=1e-3, reltol=0.0, norm="l2",
              max_nfe=50, on_failure="ignore")
    params = [p for m in (inp, out, a, b) for p in m.parameters()]
    opt = torch.optim.Adam(params, lr=1e-3)
    g = torch.Generator().manual_seed(0)
    capped = []
    for _ in range(8):
        perm = torch.randperm(len(Xtr), generator=g)
        for i in range(0, len(Xtr), 128):
            idx = perm[i:i + 128]
            opt.zero_grad()
            nn.functional.cross_entropy(out(deq(inp(Xtr[idx]))), ytr[idx]).backward()
            opt.step()
            capped.append(deq.forward_stats.nfailed)
    with torch.no_grad():
        acc = float((out(deq(inp(Xte))).argmax(1) == yte).float().mean())
    assert sum(1 for c in capped if c) >= 10, capped  # the capped regime: solves stop at the cap
    assert acc >= floor, (acc, capped)
