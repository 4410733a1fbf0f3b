"""Framework adapters: differentiable implicit layers built on the steadysolve core.

* ``steadysolve.adapters.torch``: ``DEQ`` (an ``nn.Module``) and ``fixed_point``.
* ``steadysolve.adapters.jax``: ``fixed_point``, ``root``, ``steady_state`` and an Equinox ``DEQ``.
* ``Implicit`` and ``Phantom`` (defined in ``steadysolve.adapters.backward``): the backward pass
  as a configuration object, the same for both frameworks (``backward="implicit"`` /
  ``"phantom"`` are shorthands for their defaults).

The framework submodules are imported on demand, so ``import steadysolve.adapters`` needs
neither PyTorch nor JAX.
"""

from .backward import Implicit, Phantom

__all__ = ["Implicit", "Phantom"]
