"""DistributedDataParallel (gloo, CPU, 2 processes on 127.0.0.1) trains a DEQ to the same
parameters as one process on the full batch.

The test spawns this file twice as a script (one process per rank) and bounds the whole
run with a timeout.
"""

import os
import socket
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

STEPS = 3
BATCH = 8
TIMEOUT = 150  # seconds for the two workers together


def build_model():
    from steadysolve.adapters import Implicit
    from steadysolve.adapters.torch import DEQ

    torch.manual_seed(0)

    class Cell(nn.Module):
        def __init__(self):
            super().__init__()
            self.W = nn.Linear(5, 5, bias=False)
            self.U = nn.Linear(5, 5)
            with torch.no_grad():
                self.W.weight.mul_(0.5 / torch.linalg.matrix_norm(self.W.weight, 2))

        def forward(self, z, x):
            return torch.tanh(self.W(z) + self.U(x))

    deq = DEQ(Cell(), abstol=1e-12, reltol=0.0, maxiters=500, backward=Implicit(reltol=1e-12))
    return nn.Sequential(nn.Linear(3, 5), deq, nn.Linear(5, 1)).double()


def data():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(STEPS, BATCH, 3, generator=g, dtype=torch.float64)
    y = torch.randn(STEPS, BATCH, 1, generator=g, dtype=torch.float64)
    return x, y


def train(model, x, y):
    opt = torch.optim.SGD(model.parameters(), lr=0.2)
    for s in range(STEPS):
        opt.zero_grad()
        loss = (model(x[s]) - y[s]).pow(2).mean()
        loss.backward()
        opt.step()
    return model


def worker(rank: int, world: int, port: int, out: str) -> None:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        model = DDP(build_model())
        x, y = data()
        per = BATCH // world
        sl = slice(rank * per, (rank + 1) * per)
        train(model, x[:, sl], y[:, sl])
        deq = model.module[1]
        assert deq.forward_stats.successful and deq.backward_stats.successful
        if rank == 0:
            torch.save(model.module.state_dict(), out)
        dist.barrier()
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_ddp_gloo_matches_single_process(tmp_path):
    out = str(tmp_path / "ddp_state.pt")
    port = _free_port()
    env = dict(os.environ, OMP_NUM_THREADS="1")
    procs = [subprocess.Popen([sys.executable, __file__, str(r), "2", str(port), out], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for r in range(2)]
    logs = []
    try:
        for p in procs:
            logs.append(p.communicate(timeout=TIMEOUT)[0])
    except subprocess.TimeoutExpired:
        for p in procs:
            p.kill()
        pytest.fail(f"DDP workers did not finish within {TIMEOUT} s")
    for p, log in zip(procs, logs):
        assert p.returncode == 0, f"worker failed:\n{log[-3000:]}"

    single = train(build_model(), *data())
    ddp_state = torch.load(out)
    ref = single.state_dict()
    assert set(ddp_state) == set(ref)
    init = build_model().state_dict()
    for k in ref:
        torch.testing.assert_close(ddp_state[k], ref[k], rtol=1e-9, atol=1e-11)
        assert not torch.equal(ref[k], init[k]), f"{k} did not train"


if __name__ == "__main__":
    worker(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
