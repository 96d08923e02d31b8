"""Graphs and projects the tests run, importable by module path (``tests.graphs.<module>``) so Ray workers and flow runs can load their node functions."""
