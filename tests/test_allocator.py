"""glibc's malloc settings (``allocator.py``), each tried in a fresh process."""
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
    reason="malloc tuning applies to glibc only")

# A worker thread allocates a 4 MB block and frees it; then the main thread allocates
# 4 MB: the page faults of that allocation are printed. With the arenas apart, the block
# the worker freed stays in its arena and the main thread faults in new pages.
MAIN_AFTER_WORKER = """
import resource, sys, threading
import numpy as np
from rnnlm_cli.allocator import keep_freed_memory, one_arena
assert keep_freed_memory()
if sys.argv[1] == "one":
    assert one_arena()
def work():
    block = np.ones(4 << 20, dtype=np.uint8)
    del block
thread = threading.Thread(target=work)
thread.start()
thread.join()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
block = np.ones(4 << 20, dtype=np.uint8)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def faults(arenas: str) -> int:
    result = subprocess.run([sys.executable, "-c", MAIN_AFTER_WORKER, arenas],
                            capture_output=True, text=True, check=True)
    return int(result.stdout)


def test_with_one_arena_a_block_a_thread_freed_is_used_again_by_another():
    pages = (4 << 20) // 4096
    assert faults("apart") > pages // 8      # (fewer than pages: the kernel maps ahead)
    assert faults("one") < pages // 50
