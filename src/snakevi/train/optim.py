"""torch's Adam and AdamW, minus the two-second import of ``torch._dynamo`` they trigger.

torch wraps ``Optimizer.add_param_group``, ``zero_grad``, ``state_dict`` and
``load_state_dict`` in ``torch._disable_dynamo`` and every built-in ``step`` in a wrapper that
calls ``torch._dynamo.graph_break()``. Both import ``torch._dynamo`` on first use: about 2 s on
the 2-core reference machine, as long as ``import torch`` itself, and a third of the demo's
train job outside its epochs. Those wrappers only matter while dynamo traces the optimizer
(``torch.compile``), and dynamo can only trace once it has been imported. So the classes
here call torch's own undecorated methods while ``torch._dynamo`` is absent from
``sys.modules`` and torch's decorated ones once anything has imported it. The update itself
is torch's code either way: the same kernels (fused, foreach or per tensor), the same
numbers, the same ``state_dict`` format, and still ``torch.optim.Optimizer`` instances for
LR schedulers and user code.
"""

from __future__ import annotations

import functools
import inspect
import sys
from collections.abc import Callable
from typing import Any

import torch

__all__ = ["Adam", "AdamW"]


def _dynamo_loaded() -> bool:
    return "torch._dynamo" in sys.modules


def _until_dynamo_loads(decorated: Callable) -> Callable:
    """``decorated`` unwrapped to torch's own function while ``torch._dynamo`` is not loaded."""
    plain = inspect.unwrap(decorated)

    @functools.wraps(plain)
    def method(*args: Any, **kwargs: Any) -> Any:
        return (decorated if _dynamo_loaded() else plain)(*args, **kwargs)

    return method


def _step_until_dynamo_loads(cls: type[torch.optim.Optimizer]) -> Callable:
    """``cls.step`` without its ``graph_break`` wrapper while ``torch._dynamo`` is not loaded.

    The wrapper (``_use_grad_for_differentiable``) also switches autograd off unless the
    optimizer is ``differentiable``; that part is kept. torch adds its profiling hook around
    whatever ``step`` a class defines on first construction, so the hook layer (``hooked``) is
    skipped when looking up the decorated step.
    """
    decorated = inspect.unwrap(cls.step, stop=lambda f: not getattr(f, "hooked", False))
    plain = inspect.unwrap(decorated)

    @functools.wraps(plain)
    def step(self: torch.optim.Optimizer, *args: Any, **kwargs: Any) -> Any:
        if _dynamo_loaded():
            return decorated(self, *args, **kwargs)
        with torch.set_grad_enabled(self.defaults["differentiable"]):
            return plain(self, *args, **kwargs)

    return step


def _without_dynamo_import(cls: type[torch.optim.Optimizer]) -> type[torch.optim.Optimizer]:
    base = torch.optim.Optimizer
    namespace = {
        "__doc__": f"``torch.optim.{cls.__name__}`` that imports ``torch._dynamo`` only if something else did.",
        "__module__": __name__,
        "__qualname__": cls.__name__,
        "add_param_group": _until_dynamo_loads(base.add_param_group),
        "zero_grad": _until_dynamo_loads(base.zero_grad),
        "state_dict": _until_dynamo_loads(base.state_dict),
        "load_state_dict": _until_dynamo_loads(base.load_state_dict),
        "step": _step_until_dynamo_loads(cls),
    }
    return type(cls.__name__, (cls,), namespace)


Adam = _without_dynamo_import(torch.optim.Adam)
AdamW = _without_dynamo_import(torch.optim.AdamW)
