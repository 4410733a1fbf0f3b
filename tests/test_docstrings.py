"""Every public name has a NumPy-style docstring with an example, and the examples run.

The public names are ``steadysolve.__all__`` and the ``__all__`` of ``steadysolve.adapters``,
``steadysolve.adapters.torch`` and ``steadysolve.adapters.jax``. Each docstring's ``>>>``
examples run as doctests (ELLIPSIS and NORMALIZE_WHITESPACE on), in a fresh namespace.
"""

import doctest
import importlib
import inspect

import pytest

MODULES = ["steadysolve", "steadysolve.adapters", "steadysolve.adapters.torch", "steadysolve.adapters.jax"]
NO_DOCSTRING = {"__version__"}  # a plain string: documented on the API reference page
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def _public():
    out = []
    for modname in MODULES:
        mod = importlib.import_module(modname)
        for name in mod.__all__:
            if name not in NO_DOCSTRING:
                out.append((modname, name))
    return out


PUBLIC = _public()


def _doc(modname, name):
    return inspect.getdoc(getattr(importlib.import_module(modname), name)) or ""


def test_the_public_list_is_complete():
    import steadysolve as ss

    assert len(PUBLIC) >= 35
    assert ("steadysolve", "solve") in PUBLIC and ("steadysolve.adapters.torch", "DEQ") in PUBLIC
    assert isinstance(ss.__version__, str)


@pytest.mark.parametrize("modname, name", PUBLIC, ids=lambda v: v)
def test_docstring_has_a_summary_and_an_example(modname, name):
    doc = _doc(modname, name)
    assert doc.strip(), f"{modname}.{name} has no docstring"
    assert len(doc.splitlines()[0].strip()) > 10, f"{modname}.{name}: the first line should summarise it"
    assert ">>>" in doc, f"{modname}.{name}: the docstring has no example (a >>> line)"


def _unique_objects():
    seen, out = set(), []
    for modname, name in PUBLIC:
        obj = getattr(importlib.import_module(modname), name)
        if id(obj) not in seen:  # Implicit / Phantom are re-exported by three modules
            seen.add(id(obj))
            out.append((modname, name))
    return out


# the JAX adapter's examples each jit-compile a solve and its derivatives: seconds each
@pytest.mark.parametrize("modname, name", [
    pytest.param(m, n, marks=pytest.mark.slow) if m == "steadysolve.adapters.jax" else (m, n) for m, n in _unique_objects()
], ids=lambda v: v)
def test_docstring_examples_run(modname, name):
    obj = getattr(importlib.import_module(modname), name)
    parser = doctest.DocTestParser()
    test = parser.get_doctest(inspect.getdoc(obj), {}, f"{modname}.{name}", None, 0)
    assert test.examples, f"{modname}.{name}: no examples parsed"
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    out = []
    runner.run(test, out=out.append)
    assert runner.failures == 0, "".join(out)


def test_a_failing_example_is_caught():
    test = doctest.DocTestParser().get_doctest(">>> 1 + 1\n3\n", {}, "bad", None, 0)
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    runner.run(test, out=lambda s: None)
    assert runner.failures == 1
