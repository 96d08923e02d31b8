"""Installs the service guard in a child Python process of a unit test.

Python imports ``sitecustomize`` at start-up from ``sys.path``; the unit-test
fixture puts this folder first on the children's ``PYTHONPATH``, so a CLI or
driver subprocess of a test not marked integration cannot start a service
either. The guard file is loaded by path: the ``tests`` package need not be
importable in the child.
"""

import importlib.util
import os
import sys
from pathlib import Path

if os.environ.get("WTB_UNIT_TEST"):
    _spec = importlib.util.spec_from_file_location(
        "wtb_service_guard", Path(__file__).resolve().parents[1] / "service_guard.py"
    )
    if _spec is not None and _spec.loader is not None:
        _guard = importlib.util.module_from_spec(_spec)
        sys.modules[_spec.name] = _guard
        _spec.loader.exec_module(_guard)
        _guard.install()
