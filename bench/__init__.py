"""Benchmarks: each module runs as ``uv run python -m bench.<name>`` and writes bench/results/<name>.md.

A benchmark reports numbers with a baseline measured in the same run; it asserts nothing.
"""
