"""Framework adapters: differentiable implicit layers built on the steadysolve core.

* ``steadysolve.adapters.torch``: :class:`DEQ` (an ``nn.Module``) and :func:`fixed_point`.
* ``steadysolve.adapters.jax``: ``fixed_point``, ``root``, ``steady_state`` with custom VJPs.

The submodules are imported on demand so that ``import steadysolve.adapters`` needs
neither PyTorch nor JAX.
"""
