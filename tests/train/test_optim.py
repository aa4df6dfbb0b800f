"""snakevi.train.optim: torch's Adam and AdamW without the torch._dynamo import, same numbers."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch

from snakevi.train import optim

PAIRS = [(optim.Adam, torch.optim.Adam), (optim.AdamW, torch.optim.AdamW)]


def _params(seed: int) -> list[torch.nn.Parameter]:
    g = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(shape, generator=g)) for shape in [(7, 5), (5,), (3, 7)]]


def _run(cls, steps: int, **kwargs) -> tuple[list[torch.Tensor], dict]:
    """``steps`` updates on fixed pseudo-random gradients; zero_grad between them as in training."""
    params = _params(0)
    opt = cls(params, **kwargs)
    g = torch.Generator().manual_seed(1)
    for _ in range(steps):
        opt.zero_grad()
        for p in params:
            p.grad = torch.randn(p.shape, generator=g)
        opt.step()
    return [p.detach().clone() for p in params], opt.state_dict()


@pytest.mark.parametrize(("ours", "torchs"), PAIRS, ids=["Adam", "AdamW"])
@pytest.mark.parametrize("kernel", [{"fused": True}, {"foreach": False}, {"foreach": True}], ids=str)
def test_same_parameters_and_state_as_torch_bit_for_bit(ours, torchs, kernel):
    kwargs = dict(lr=0.05, eps=0.01, weight_decay=1e-3, **kernel)
    mine, my_state = _run(ours, 5, **kwargs)
    theirs, their_state = _run(torchs, 5, **kwargs)
    for a, b in zip(mine, theirs):
        assert torch.equal(a, b)
    assert my_state["param_groups"] == their_state["param_groups"]
    for key, state in their_state["state"].items():
        for name, value in state.items():
            assert torch.equal(my_state["state"][key][name], value), name


@pytest.mark.parametrize(("ours", "torchs"), PAIRS, ids=["Adam", "AdamW"])
def test_is_the_torch_optimizer_for_schedulers_and_user_code(ours, torchs):
    opt = ours(_params(0), lr=0.1)
    assert isinstance(opt, torchs) and isinstance(opt, torch.optim.Optimizer)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, patience=0, factor=0.5)
    scheduler.step(1.0)
    scheduler.step(2.0)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.05)


def test_state_dict_round_trips_through_torchs_optimizer():
    # A checkpoint written with one loads into the other: the format is torch's.
    _, state = _run(optim.Adam, 3, lr=0.05, fused=True)
    params = _params(0)
    theirs = torch.optim.Adam(params, lr=0.05, fused=True)
    theirs.load_state_dict(state)
    ours = optim.Adam(_params(0), lr=0.05, fused=True)
    ours.load_state_dict(theirs.state_dict())
    assert ours.state_dict()["param_groups"] == state["param_groups"]
    assert torch.equal(ours.state_dict()["state"][0]["exp_avg"], state["state"][0]["exp_avg"])


def test_step_keeps_autograd_off_and_runs_a_closure_with_it_on():
    params = _params(0)
    opt = optim.Adam(params, lr=0.1)
    seen = []

    def closure():
        seen.append(torch.is_grad_enabled())
        opt.zero_grad()
        loss = sum((p**2).sum() for p in params)
        loss.backward()
        return loss

    # Were autograd on during the update, its in-place change of leaf parameters would raise.
    assert opt.step(closure) is not None
    assert seen == [True]


def _fresh_interpreter(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().splitlines()[-1]


def test_training_with_them_never_imports_torch_dynamo():
    # The point of the module: with torch.optim.Adam this prints True (its first zero_grad,
    # add_param_group or step imports torch._dynamo, about 2 s).
    code = """
        import sys, torch
        from snakevi.train import optim
        for cls in (optim.Adam, optim.AdamW):
            p = torch.nn.Parameter(torch.ones(3))
            opt = cls([p], lr=0.1, fused=True)
            for _ in range(2):
                opt.zero_grad()
                (p ** 2).sum().backward()
                opt.step()
            opt.load_state_dict(opt.state_dict())
            torch.optim.lr_scheduler.ReduceLROnPlateau(opt).step(1.0)
        print("torch._dynamo" in sys.modules)
    """
    assert _fresh_interpreter(code) == "False"
    control = code.replace("optim.Adam, optim.AdamW", "torch.optim.Adam, torch.optim.AdamW")
    assert _fresh_interpreter(control) == "True"


def test_defers_to_torchs_wrappers_once_dynamo_is_loaded():
    # After `import torch._dynamo` (e.g. a user's torch.compile) the graph breaks and
    # disable-wrappers are torch's again; the numbers stay the same.
    code = """
        import torch, torch._dynamo
        from unittest import mock
        from snakevi.train import optim
        p, q = torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(3))
        ours, theirs = optim.Adam([p], lr=0.1), torch.optim.Adam([q], lr=0.1)
        with mock.patch.object(torch._dynamo, "graph_break", wraps=torch._dynamo.graph_break) as gb:
            for opt, w in ((ours, p), (theirs, q)):
                opt.zero_grad()
                (w ** 2).sum().backward()
                opt.step()
        assert gb.call_count == 4, gb.call_count  # two per step, as torch's own step does
        print(torch.equal(p, q))
    """
    assert _fresh_interpreter(code) == "True"
