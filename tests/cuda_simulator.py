"""What the CUDA test files share: whether this process runs numba's CUDA simulator, the mark of
the tests that need ``numba.cuda`` (a GPU or the simulator), and the run of a whole test file
under the simulator in a fresh process (the simulator is switched on by NUMBA_ENABLE_CUDASIM=1
before numba is imported and changes numba for the whole process)."""
import os
import subprocess
import sys
import time

import pytest
from numba import cuda
from numba.core import config

SIMULATOR = bool(config.ENABLE_CUDASIM)
if SIMULATOR:
    # The simulator runs a thread per CUDA thread and polls them at every syncthreads; with
    # Python's default 5 ms switch interval each barrier costs milliseconds.
    sys.setswitchinterval(5e-5)

needs_cuda = pytest.mark.skipif(
    not cuda.is_available(),
    reason="no GPU and not under NUMBA_ENABLE_CUDASIM=1 (test_cuda_simulator_subprocess runs "
           "these tests under the simulator)")

# for a file's test_cuda_simulator_subprocess: only where its tests do not run directly
runs_only_without_cuda = pytest.mark.skipif(
    SIMULATOR or cuda.is_available(), reason="the equality tests run directly in this process")


def run_under_simulator(test_file):
    """Run the test file ``test_file`` with NUMBA_ENABLE_CUDASIM=1 in a fresh process; fail with
    that run's output if any of its tests fail."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    start = time.time()
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           os.path.abspath(test_file)],
                          cwd=root, env=env, capture_output=True, text=True, timeout=900)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"CUDA simulator run failed:\n{output[-20000:]}"
    assert " passed" in output and "skipped" in output, output[-2000:]
    print(f"CUDA simulator run ({time.time() - start:.1f} s): {output.strip().splitlines()[-1]}")
