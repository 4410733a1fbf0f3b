"""DEQ-consistent (variational) dropout: one mask per forward of the layer, fixed across the solver's
iterations and the tracked application, a new one at the next forward."""

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from steadysolve.adapters.torch import DEQ, MultiScaleDEQ, VariationalDropout, fixed_point  # noqa: E402


class Cell(nn.Module):
    """``f(z, x) = tanh(W drop(z) + x)``, recording the mask each call used (the zeroed entries)."""

    def __init__(self, n=6, p=0.5):
        super().__init__()
        torch.manual_seed(0)
        self.lin = nn.Linear(n, n).double()
        with torch.no_grad():
            self.lin.weight.mul_(0.5 / torch.linalg.matrix_norm(self.lin.weight, 2))
        self.drop = VariationalDropout(p)
        self.masks = []

    def forward(self, z, x):
        probe = self.drop(torch.ones_like(z))  # the mask this call applies (0 or 1 / (1 - p))
        self.masks.append(probe.detach().clone())
        return torch.tanh(self.lin(self.drop(z)) + x)


def test_mask_constant_within_a_forward_and_new_between_forwards():
    cell = Cell()
    deq = DEQ(cell, abstol=1e-10, reltol=0.0)
    x = torch.randn(8, 6, dtype=torch.float64)
    deq(x.requires_grad_(True)).sum().backward()  # the solve, the tracked application, the adjoint
    first = list(cell.masks)
    assert len(first) >= 5  # every iteration of the solve and the tracked application
    assert all(torch.equal(m, first[0]) for m in first)
    assert set(first[0].unique().tolist()) == {0.0, 2.0}  # scaled by 1 / (1 - p)
    assert deq.forward_stats.successful  # one fixed map: the solve converges
    # z* is that map's fixed point, with the mask of this forward
    z = deq(x.detach())
    second = cell.masks[len(first):]
    assert all(torch.equal(m, second[0]) for m in second)
    assert not torch.equal(second[0], first[0])  # a new mask for the new forward
    mask = second[0]
    assert torch.allclose(z, torch.tanh(cell.lin(z * mask) + x), atol=1e-9)


def test_the_gradient_is_that_of_the_masked_map():
    """The implicit gradient (with the forward's mask) against finite differences of the solve with
    that mask frozen (float64)."""
    cell = Cell(n=4, p=0.3)
    deq = DEQ(cell, abstol=1e-12, reltol=0.0)
    x = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    z = deq(x)
    (g,) = torch.autograd.grad(z.pow(2).sum(), x)
    mask = cell.drop.mask.clone()
    frozen = lambda z, x: torch.tanh(cell.lin(z * mask) + x)  # noqa: E731

    def solve(xx):
        with torch.no_grad():
            return fixed_point(frozen, torch.zeros_like(xx), xx, abstol=1e-13, reltol=0.0)[0]

    eps, fd = 1e-6, torch.zeros_like(x)
    for i in range(x.shape[0]):
        for j in range(x.shape[1]):
            e = torch.zeros_like(x)
            e[i, j] = eps
            fd[i, j] = (solve(x.detach() + e).pow(2).sum() - solve(x.detach() - e).pow(2).sum()) / (2 * eps)
    assert torch.allclose(g, fd, atol=1e-6, rtol=1e-5)


def test_eval_mode_and_p0_are_the_identity_and_bad_p_raises():
    cell = Cell()
    deq = DEQ(cell).eval()
    deq(torch.randn(2, 6, dtype=torch.float64))
    assert cell.drop.mask is None and all(bool((m == 1).all()) for m in cell.masks)
    x = torch.randn(3, 3)
    assert torch.equal(VariationalDropout(0.0)(x), x)
    for bad in (-0.1, 1.0, "0.5", True):
        with pytest.raises(ValueError, match=r"p must be a number in \[0, 1\)"):
            VariationalDropout(bad)


def test_a_new_batch_without_reset_is_an_error_and_reset_draws_anew():
    drop = VariationalDropout(0.5)
    drop(torch.ones(4, 3))
    with pytest.raises(ValueError, match="call reset"):
        drop(torch.ones(5, 3))
    torch.manual_seed(1)
    m1 = drop(torch.ones(4, 3))
    drop.reset()
    masks = {tuple(drop(torch.ones(4, 3)).flatten().tolist())}
    for _ in range(5):
        drop.reset()
        masks.add(tuple(drop(torch.ones(4, 3)).flatten().tolist()))
    assert torch.equal(drop(torch.ones(4, 3)), drop(torch.ones(4, 3))) and len(masks) > 1
    assert m1.shape == (4, 3)


def test_multiscale_layers_reset_the_masks_of_every_scale():
    class Block(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.lin, self.drop = nn.Linear(c, c), VariationalDropout(0.5)

        def forward(self, z, inj):
            return torch.tanh(0.5 * self.lin(self.drop(z)) + inj)

    torch.manual_seed(0)
    blocks = [Block(4), Block(2)]
    deq = MultiScaleDEQ(blocks, [[None, nn.Linear(2, 4)], [nn.Linear(4, 2), None]],
                        injection=[nn.Linear(3, 4), nn.Linear(3, 2)])
    x = torch.randn(5, 3)
    deq(x)
    before = [b.drop.mask.clone() for b in blocks]
    deq(x)
    assert deq.forward_stats.successful
    assert all(not torch.equal(b.drop.mask, m) for b, m in zip(blocks, before))
