"""Run the examples in the docstrings of the runtime packages (STYLE habit 14), so they cannot rot."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

PACKAGES = ("vigil.shared", "vigil.services", "vigil.model")


def _modules() -> list[str]:
    names = []
    for package in PACKAGES:
        root = importlib.import_module(package)
        names += [m.name for m in pkgutil.walk_packages(root.__path__, f"{package}.")]
    return sorted(names)


def _has_examples(name: str) -> bool:
    finder = doctest.DocTestFinder()
    return any(t.examples for t in finder.find(importlib.import_module(name)))


MODULES = [m for m in _modules() if _has_examples(m)]


def test_examples_are_found() -> None:
    assert len(MODULES) >= 8, MODULES


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    failures, tried = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert tried > 0 and failures == 0
