"""Threads: the cores a process may use (CPU affinity, SLURM allocation), the engine's thread count,
and training results that do not depend on it. Each case runs in a fresh Python, as the thread
count is fixed for a process when numba starts its threads."""
import os
import subprocess
import sys

import numpy as np
import pytest

from eventprop.backends.threads import _slurm_cpus

needs_affinity = pytest.mark.skipif(not hasattr(os, "sched_setaffinity"),
                                    reason="no CPU affinity on this system")


def run_python(code, **env):
    """What ``code`` prints, run by a fresh Python whose environment has no SLURM or
    NUMBA_NUM_THREADS variables but those of ``env``."""
    environ = {k: v for k, v in os.environ.items()
               if not k.startswith("SLURM_") and k != "NUMBA_NUM_THREADS"}
    environ.update(env)
    done = subprocess.run([sys.executable, "-c", code], env=environ, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


ON_ONE_CORE = "import os; os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:1]); "
CORES = "from eventprop.backends.threads import allowed_cores; print(allowed_cores())"


@pytest.mark.parametrize("environ,cpus", [
    ({}, None),                                                     # not in a SLURM job
    ({"SLURM_CPUS_PER_TASK": "4"}, None),
    ({"SLURM_JOB_ID": "7", "SLURM_CPUS_PER_TASK": "4", "SLURM_CPUS_ON_NODE": "8"}, 4),
    ({"SLURM_JOB_ID": "7", "SLURM_CPUS_ON_NODE": "8", "SLURM_JOB_CPUS_PER_NODE": "64"}, 8),
    ({"SLURM_JOB_ID": "7", "SLURM_JOB_CPUS_PER_NODE": "4(x2)"}, 4),
    ({"SLURM_JOB_ID": "7", "SLURM_JOB_CPUS_PER_NODE": "72(x2),36", "SLURM_NODEID": "2"}, 36),
    ({"SLURM_JOB_ID": "7", "SLURM_JOB_CPUS_PER_NODE": "72(x2),36", "SLURM_NODEID": "1"}, 72),
    ({"SLURM_JOB_ID": "7", "SLURM_JOB_CPUS_PER_NODE": "72(x2),36"}, 36),
    ({"SLURM_JOB_ID": "7"}, None),
])
def test_slurm_allocation_from_its_variables(environ, cpus):
    assert _slurm_cpus(environ) == cpus


def test_allowed_cores_is_the_affinity_outside_slurm():
    assert run_python(CORES) == [str(len(os.sched_getaffinity(0)))]


@needs_affinity
def test_allowed_cores_and_numba_pool_follow_the_affinity():
    """A process allowed one core counts one, and numba's pool and the engine have one thread."""
    out = run_python(ON_ONE_CORE + "import numba; from eventprop.backends import CpuBackend; "
                     "CpuBackend(); " + CORES + "; print(numba.config.NUMBA_NUM_THREADS, "
                     "numba.get_num_threads())")
    assert out == ["1", "1", "1"]


def test_slurm_allocation_caps_the_cores():
    """One CPU per task, or one per node: one core; SLURM's 64 never exceed the affinity."""
    assert run_python(CORES, SLURM_JOB_ID="7", SLURM_CPUS_PER_TASK="1") == ["1"]
    assert run_python(CORES, SLURM_JOB_ID="7", SLURM_JOB_CPUS_PER_NODE="1(x2)") == ["1"]
    assert run_python(CORES, SLURM_JOB_ID="7", SLURM_CPUS_ON_NODE="64") == [
        str(len(os.sched_getaffinity(0)))]


def test_use_threads_sets_and_caps_the_count():
    out = run_python("import numba; from eventprop.backends.threads import use_threads, "
                     "allowed_cores; print(use_threads(1), numba.get_num_threads(), "
                     "use_threads(10 ** 6) == numba.config.NUMBA_NUM_THREADS, "
                     "use_threads() == allowed_cores() == numba.get_num_threads())")
    assert out == ["1", "1", "True", "True"]
    with pytest.raises(ValueError, match="at least 1"):
        from eventprop.backends.threads import use_threads
        use_threads(0)


TRIAL_IN_A_THREAD = """
import threading
import numba
import numpy as np
from eventprop.data.spikes import SpikeData
from eventprop.network import EventPropNetwork
seen = []
def trial():
    net = EventPropNetwork(4, {n_hidden}, 2, dt=1.0, trial_ms={n_steps}.0, n_batch=4, seed=1)
    data = SpikeData.from_lists([[1, 5]] * 4, [[0, 3]] * 4, [0, 1, 0, 1], {n_steps}, 4)
    net.run_batch(*data.batch(np.arange(4)), data.labels, learn=True)
    seen.append(numba.get_num_threads())
t = threading.Thread(target=trial)
t.start()
t.join()
print(seen[0])
"""


def trial_threads(n_hidden=8, n_steps=20, before="", **env):
    """The threads of a trial of 4 samples run in a new thread of a fresh Python, after the
    code ``before`` (in the main thread)."""
    code = before + "\n" + TRIAL_IN_A_THREAD.format(n_hidden=n_hidden, n_steps=n_steps)
    return int(run_python(code, **env)[0])


USE_TWO = "from eventprop.backends.threads import use_threads; use_threads(2)"


def test_engine_threads_hold_in_every_thread_and_user_settings_win():
    """The engine runs on the allowed cores by default, on the count of ``use_threads`` (called
    in another thread), and on NUMBA_NUM_THREADS when the user set it."""
    assert trial_threads(SLURM_JOB_ID="7", SLURM_CPUS_PER_TASK="1") == 1
    assert trial_threads(2000, 1000, "from eventprop.backends.threads import use_threads; "
                         "use_threads(1)") == 1
    assert trial_threads(NUMBA_NUM_THREADS="3") == 3


def test_trials_with_little_work_run_on_fewer_threads():
    """4 samples of 20 steps of 10 neurons: one thread; of 1000 steps of 2002 neurons (8
    million updates): the two of ``use_threads``."""
    assert trial_threads(8, 20, USE_TWO, NUMBA_NUM_THREADS="2") == 1
    assert trial_threads(2000, 1000, USE_TWO, NUMBA_NUM_THREADS="2") == 2


TRAIN_YINYANG = """
import sys
from eventprop.simulators.yinyang import p, yinyang
p.update(N_TRAIN=200, N_TEST=64, N_EPOCH=2, NUM_HIDDEN=40, MODEL_SEED=3, PROGRESS=False,
         ETA=5e-3, OUT_DIR=sys.argv[1], NAME="yy")
yinyang(p).train_test(p)
"""


def test_results_do_not_depend_on_the_number_of_threads(tmp_path):
    """The same training on 1 and 2 threads writes bit-identical weights and results (but for the
    seconds)."""
    folders = []
    for n in (1, 2):
        folder = tmp_path / f"threads_{n}"
        folder.mkdir()
        environ = dict(os.environ, NUMBA_NUM_THREADS=str(n))
        done = subprocess.run([sys.executable, "-c", TRAIN_YINYANG, str(folder)], env=environ,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr
        folders.append(folder)
    one, two = folders
    results = [np.loadtxt(f / "yy_results.txt")[:, :-1] for f in folders]
    assert results[0].shape[0] == 2 and np.array_equal(results[0], results[1])
    weights = sorted(f for f in os.listdir(one) if f.endswith(".npy"))
    assert "yy_w_input_hidden_last.npy" in weights
    assert weights == sorted(f for f in os.listdir(two) if f.endswith(".npy"))
    for name in weights:
        a, b = np.load(one / name), np.load(two / name)
        identical = a.dtype == b.dtype and a.tobytes() == b.tobytes()
        assert identical, name
