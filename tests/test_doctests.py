"""Run the examples in the docstrings of the worker's pure modules."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ("state", "batching", "models")


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(f"vigil.services.worker.{name}")
    failures, tried = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert tried > 0 and failures == 0
