"""Every public function, class and method of the package says what it computes."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import grokscope


def public_objects():
    for info in pkgutil.walk_packages(grokscope.__path__, "grokscope."):
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
                continue
            if inspect.isfunction(obj) or inspect.isclass(obj):
                yield f"{module.__name__}.{name}", obj
                if inspect.isclass(obj):
                    for meth_name, meth in vars(obj).items():
                        if not meth_name.startswith("_") and inspect.isfunction(meth):
                            # inspect.getdoc inherits a base class's docstring (e.g. Measure.at_checkpoint)
                            yield f"{module.__name__}.{name}.{meth_name}", getattr(obj, meth_name)


def test_every_public_function_has_a_docstring():
    objects = list(public_objects())
    assert len(objects) > 150
    missing = [name for name, obj in objects if not inspect.getdoc(obj)]
    assert not missing, missing
