# Each marked call misspells a keyword: the type checker must report an error on every marked line.
import numpy as np
import torch

import steadysolve as ss
from steadysolve.adapters import jax as ssj
from steadysolve.adapters import torch as sst

prob = ss.NonlinearProblem(lambda u, p: u - np.cos(u), np.zeros(3))
ss.solve(prob, "anderson", abstl=1e-8)  # expect-error
ss.solve(prob, maxiter=10)  # expect-error
ss.NonlinearProblem(lambda u, p: u, np.zeros(3), jvpp=None)  # expect-error
ss.FixedPointProblem(lambda u, p: u, np.zeros(3), jvpp=None)  # expect-error
ss.SteadyStateProblem(lambda u, p, t: u, np.zeros(3), jvpp=None)  # expect-error
ss.Anderson(memroy=5)  # expect-error
ss.NewtonKrylov(linsolver=ss.GMRES())  # expect-error
ss.linear_solve(lambda v: v, np.ones(2), x_0=None)  # expect-error
ss.integrate(lambda u, p, t: -u, np.ones(1), (0.0, 1.0), rtol=1e-6)  # expect-error
sst.DEQ(torch.nn.Linear(2, 2), abstl=1e-6)  # expect-error
sst.fixed_point(lambda z, x: z, torch.ones(1), torch.ones(1), max_iter=3)  # expect-error
sst.MultiScaleDEQ([torch.nn.Identity()], [[None]], reltl=1e-3)  # expect-error
ssj.fixed_point(lambda z: z, np.zeros(2), f_max_iter=3)  # expect-error
ssj.root(lambda u: u, np.zeros(2), tol=1e-3)  # expect-error
ssj.steady_state(lambda u: -u, np.zeros(2), solvr="dynamic_ss")  # expect-error
ssj.DEQ(lambda z, x: z, maxiter=3)  # expect-error
ssj.MultiScaleDEQ([lambda z, x: z], [[None]], abstl=1e-3)  # expect-error
