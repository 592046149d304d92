"""How many threads the numba engine runs: the cores this process may use, not the machine's.

``allowed_cores()`` counts the cores of the process (its CPU affinity, capped by its SLURM
allocation); ``use_threads(n)`` sets the engine's thread count (default: the allowed cores). A sweep
that runs several workers on one machine gives each ``allowed_cores() // n_workers`` threads.
numba sizes its own thread pool by the CPU affinity; in a SLURM job without one, the pool has the
node's cores but only ``use_threads``' count of them work.

Importing this module also asks OpenMP threads to sleep, not spin, while they wait
(``OMP_WAIT_POLICY=PASSIVE``, unless the variable is set): a spinning thread holds its core while
the threads of another process, or the other threads of its own, wait for that core.
"""
import os
import re

import numba

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

engine_threads = None      # the count set by use_threads() in this process, if any


def allowed_cores():
    """The number of cores this process may use: its CPU affinity (all cores where the system
    has none), capped by the CPUs of its SLURM allocation when it runs in a SLURM job."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:          # no affinity on this system (macOS, Windows)
        cores = os.cpu_count() or 1
    slurm = _slurm_cpus(os.environ)
    if slurm is not None:
        cores = min(cores, slurm)
    return max(1, cores)


def use_threads(n=None):
    """Run the numba engine on ``n`` threads (None: ``allowed_cores()``), at most numba's thread
    pool (NUMBA_NUM_THREADS, fixed when numba starts its threads); returns the count set. It
    holds for the whole process: numba counts threads per calling thread, and the CPU backend
    applies this count in the thread that runs a trial."""
    global engine_threads
    n = allowed_cores() if n is None else int(n)
    if n < 1:
        raise ValueError(f"the number of threads must be at least 1, not {n}")
    n = min(n, numba.config.NUMBA_NUM_THREADS)
    numba.set_num_threads(n)
    engine_threads = n
    return n


def _slurm_cpus(environ):
    """The CPUs of this task's SLURM allocation, or None outside a SLURM job: SLURM_CPUS_PER_TASK
    (set with --cpus-per-task), else SLURM_CPUS_ON_NODE (the CPUs of the job or step on this
    node), else this node's entry of SLURM_JOB_CPUS_PER_NODE (e.g. "72(x2),36": 72 CPUs on
    each of the first two nodes, 36 on the third; its smallest count if SLURM_NODEID is
    missing)."""
    if "SLURM_JOB_ID" not in environ:
        return None
    for key in ("SLURM_CPUS_PER_TASK", "SLURM_CPUS_ON_NODE"):
        if environ.get(key, "").strip().isdigit():
            return int(environ[key])
    per_node = []
    for count, repeat in re.findall(r"(\d+)(?:\(x(\d+)\))?",
                                    environ.get("SLURM_JOB_CPUS_PER_NODE", "")):
        per_node += [int(count)] * int(repeat or 1)
    if not per_node:
        return None
    node = environ.get("SLURM_NODEID", "")
    if node.isdigit() and int(node) < len(per_node):
        return per_node[int(node)]
    return min(per_node)
