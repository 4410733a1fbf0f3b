"""Mixed precision (``torch.autocast``) and ``torch.func`` with the torch DEQ layer.

The precision policy: under autocast the solver (iterate, histories, convergence test, adjoint solve)
works in float32 with autocast off; every call of ``f`` runs under the caller's autocast and its output is
cast to float32; ``z*`` comes back in float32."""

import pytest

torch = pytest.importorskip("torch")

from steadysolve.adapters.torch import DEQ, fixed_point  # noqa: E402


class Cell(torch.nn.Module):
    """``f(z, x) = b(tanh(a(z + x)))`` (optionally ending in float32), recording the dtypes it sees."""

    def __init__(self, n=8, width=16, out_float32=False, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.a, self.b = torch.nn.Linear(n, width), torch.nn.Linear(width, n)
        with torch.no_grad():
            self.b.weight.mul_(0.5)
        self.out_float32 = out_float32
        self.seen = set()

    def forward(self, z, x):
        out = self.b(torch.tanh(self.a(z + x)))
        self.seen.add((z.dtype, out.dtype))
        return out.float() if self.out_float32 else out


@pytest.mark.slow
@pytest.mark.parametrize("case", ["x_float32", "x_bfloat16", "f_returns_float32"])
def test_training_under_bfloat16_autocast(case):
    torch.manual_seed(0)
    X, y = torch.randn(64, 4), torch.randn(64, 1)
    enc, head = torch.nn.Linear(4, 8), torch.nn.Linear(8, 1)
    cell = Cell(out_float32=case == "f_returns_float32")
    deq = DEQ(cell, reltol=1e-2, on_failure="ignore")
    params = [*enc.parameters(), *cell.parameters(), *head.parameters()]
    opt = torch.optim.Adam(params, lr=1e-2)
    losses = []
    for _ in range(8):
        opt.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            x = enc(X)
            if case == "x_float32":
                x = x.float()
            z = deq(x)
            loss = ((head(z).float() - y) ** 2).mean()
        loss.backward()
        losses.append(float(loss.detach()))
        assert torch.isfinite(loss)
        for p in params:
            assert p.grad is not None and p.grad.dtype == torch.float32 and torch.isfinite(p.grad).all()
        opt.step()
        # the dtype flow: the iterate and z* in float32; f's matmuls in bfloat16 under the caller's autocast
        assert z.dtype == torch.float32
        assert cell.seen == {(torch.float32, torch.bfloat16)}, cell.seen
        fwd, bwd = deq.forward_stats, deq.backward_stats
        assert fwd.resid_norm.dtype == torch.float32 and bwd is not None and bwd.niter >= 1
    # the solver's test is met at a tolerance bfloat16's f can reach (its eps is 7.8e-3)
    assert deq.forward_stats.nfailed == 0
    assert losses[-1] < losses[0]


def test_autocast_fixed_point_gradient_matches_float32():
    """The autocast result and gradient are the float32 ones up to bfloat16 rounding of f."""
    cell = Cell(seed=1)
    x = torch.randn(4, 8)

    def grads(amp):
        cell.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            z, _ = fixed_point(lambda z, x: cell(z, x), torch.zeros_like(x), x, reltol=1e-2)
        z.pow(2).sum().backward()
        return z.detach(), cell.a.weight.grad.clone()

    z32, g32 = grads(False)
    z16, g16 = grads(True)
    assert z16.dtype == torch.float32
    assert torch.allclose(z16, z32, atol=0.05, rtol=0.05)
    assert torch.linalg.vector_norm(g16 - g32) <= 0.1 * torch.linalg.vector_norm(g32)


def test_outside_autocast_a_dtype_mismatch_is_still_an_error():
    cell = Cell(out_float32=True).to(torch.float64)  # returns float32 for a float64 state: a real bug
    with pytest.raises(TypeError, match="returned dtype torch.float32 but z has dtype torch.float64"):
        DEQ(cell)(torch.randn(2, 8, dtype=torch.float64))


@pytest.mark.slow
def test_torch_func_grad_names_the_alternative_and_the_alternative_is_exact():
    cell = Cell(seed=2).double()
    deq = DEQ(cell, abstol=1e-12, reltol=0.0)
    x = torch.randn(3, 8, dtype=torch.float64)
    params = {k: v.detach() for k, v in deq.named_parameters()}

    def loss(p):
        return torch.func.functional_call(deq, p, (x,)).pow(2).sum()

    with pytest.raises(RuntimeError, match=r"torch\.func transform .* torch\.autograd\.grad\(loss, list\(params"):
        torch.func.grad(loss)(params)
    with pytest.raises(RuntimeError, match="torch.func transform"):  # fixed_point too, under vmap
        torch.func.vmap(lambda xi: fixed_point(lambda z, x: cell(z, x), torch.zeros_like(xi), xi))(x)
    # the alternative the message names: functional_call with parameters that require grad + autograd
    names = list(params)
    leaves = [params[k].clone().requires_grad_(True) for k in names]

    def as_fn(*ps):
        return torch.func.functional_call(deq, dict(zip(names, ps)), (x,)).pow(2).sum()

    assert torch.autograd.gradcheck(as_fn, tuple(leaves), eps=1e-6, atol=1e-6, rtol=1e-5)


def test_structured_state_under_autocast():
    from torch import nn

    from steadysolve.adapters.torch import MultiScaleDEQ

    torch.manual_seed(0)
    lins = [nn.Linear(4, 4), nn.Linear(2, 2)]  # each scale's block: its linear layer runs in bfloat16
    blocks = [lambda z, inj, lin=lin: torch.tanh(0.5 * lin(z) + inj) for lin in lins]
    deq = MultiScaleDEQ(blocks, [[None, nn.Linear(2, 4)], [nn.Linear(4, 2), None]],
                        injection=[nn.Linear(3, 4), nn.Linear(3, 2)], reltol=1e-2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        z = deq(torch.randn(5, 3))
    sum(v.sum() for v in z).backward()
    assert [v.dtype for v in z] == [torch.float32, torch.float32] and deq.forward_stats.successful
    assert all(torch.isfinite(p.grad).all() for p in [*deq.parameters(), *lins[0].parameters()])
