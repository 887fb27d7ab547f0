"""claimsync.memory: the allocator switch a big extraction makes (process-wide, so in a child)."""

from __future__ import annotations

import subprocess
import sys

CHILD = """
import pyarrow as pa
from claimsync.memory import return_freed_memory
before = pa.default_memory_pool().backend_name
print(before, return_freed_memory(), return_freed_memory(), pa.default_memory_pool().backend_name)
"""


def test_arrow_uses_the_system_allocator_and_glibc_a_fixed_mmap_threshold() -> None:
    done = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, check=True, timeout=120)
    before, first, again, after = done.stdout.split()
    assert before != "system"  # the wheel's default (mimalloc or jemalloc) …
    assert after == "system"  # … replaced, so freed buffers go back to the OS
    assert (first, again) == ("True", "True")  # glibc took the threshold; the second call is a no-op
