"""How the work of a trial is laid out on the GPU: units to threads, blocks, launch sizes.

One thread block per sample, threads over the "units" of that sample: hidden neuron i of layer l
is unit l * N + i (its global spike index), output c is unit L * N + c. A thread owns the units
t, t + T, t + 2T, ... (T threads per block, at most MAX_UNITS_PER_THREAD units each) for the
whole kernel. T is the fewest warps that cover the units in the fewest rounds of at most
MAX_THREADS threads, and never more than the compiled kernel's registers allow.

Tests and benchmarks change the settings below at run time (``launch.THREADS_PER_BLOCK = 16``);
the other modules therefore read them from this module when they launch.
"""
import numba
import numpy as np
from numba import cuda
from numba.core import config

# Threads per block on a GPU: the units of a sample are spread over at most MAX_THREADS threads
# (in warps); each thread owns at most MAX_UNITS_PER_THREAD units. Under the CUDA simulator every
# thread is a Python thread, so a few suffice (and exercise the strided loops).
MAX_THREADS = 640
MAX_UNITS_PER_THREAD = 32
SIM_THREADS = 4
# Set to an int to force the block size (tests, benchmarks); None chooses as above.
THREADS_PER_BLOCK = None
# Dynamic shared memory a block may use without opting in; larger networks keep the spike lists
# (forward) and the postsynaptic adjoints (backward) in global memory instead.
SHARED_BYTES = 48 * 1024
# Kernels under the simulator (no warp shuffles there) take another branch for a reduction.
SIMULATOR = bool(config.ENABLE_CUDASIM)


def threads_per_block(n_units, max_threads=None):
    """Threads per block for samples of ``n_units`` units (hidden neurons + outputs): the units
    spread evenly over the fewest rounds of at most ``max_threads`` (default MAX_THREADS)."""
    if THREADS_PER_BLOCK is not None:
        t = int(THREADS_PER_BLOCK)
    elif config.ENABLE_CUDASIM:
        t = max(SIM_THREADS, -(-n_units // MAX_UNITS_PER_THREAD))
    else:
        rounds = -(-n_units // (max_threads or MAX_THREADS))
        t = 32 * (-(-n_units // (32 * rounds)))
    if not 1 <= t <= 1024:
        raise ValueError(f"threads per block must be in 1..1024, got {t}")
    if -(-n_units // t) > MAX_UNITS_PER_THREAD:
        raise ValueError(f"{n_units} units on {t} threads: more than MAX_UNITS_PER_THREAD = "
                         f"{MAX_UNITS_PER_THREAD} units per thread")
    return t


# (kernel, dtype) -> most threads per block the compiled kernel can be launched with
_THREAD_LIMITS = {}


def block_size(kernel, dtype, n_units, args):
    """``threads_per_block(n_units)``, or fewer where the compiled kernel's registers per thread
    do not allow that many in one block (asked once per kernel and precision, compiling the
    kernel for the types of ``args`` if it is not compiled yet)."""
    T = threads_per_block(n_units)
    if config.ENABLE_CUDASIM or THREADS_PER_BLOCK is not None:
        return T
    key = (kernel, np.dtype(dtype).str)
    if key not in _THREAD_LIMITS:
        signature = tuple(numba.typeof(a) for a in args)
        _THREAD_LIMITS[key] = kernel.compile(signature).max_threads_per_block
    limit = _THREAD_LIMITS[key]
    return T if T <= limit else threads_per_block(n_units, max_threads=32 * (limit // 32))


def input_launch(B, n_steps, N):
    """Launch configuration of the kernels over the input spikes: blocks (sample, part of the
    steps), threads over the hidden neurons of layer 0."""
    if config.ENABLE_CUDASIM:
        return (B, 1), SIM_THREADS
    parts = max(1, min(n_steps, 8192 // max(B, 1)))
    return (B, parts), min(256, 32 * (-(-N // 32)))


def neuron_launch(B, N):
    """Launch configuration of a kernel with a thread per (sample, neuron of layer 0): blocks
    (sample, part of the neurons)."""
    if config.ENABLE_CUDASIM:
        return (B, 1), SIM_THREADS
    threads = min(128, 32 * (-(-N // 32)))
    return (B, -(-N // threads)), threads


def flat_launch(size):
    """(blocks, threads) of an elementwise kernel over ``size`` elements."""
    if config.ENABLE_CUDASIM:
        return 1, SIM_THREADS
    return max(1, min(1024, -(-size // 256))), 256


def run(kernels):
    """Launch kernels in order: (kernel, (blocks, threads, stream, dynamic shared memory
    bytes), arguments) each."""
    for kernel, launch, args in kernels:
        kernel[launch](*args)


def new_array(on_device):
    """``alloc(name, shape, dtype)`` for the launch functions: new device arrays, or (compiling
    without a GPU, ``on_device`` False) new host arrays of the same types."""
    if on_device:
        return lambda name, shape, dtype: cuda.device_array(shape, dtype)
    return lambda name, shape, dtype: np.empty(shape, dtype)


def device_function(f):
    """A device function for the kernels, inlined where a kernel calls it: an ``njit`` function
    with ``inline="always"`` (numba's CUDA target compiles it from its Python source into the
    calling kernel, which needs no GPU to compile, as ``compile_ptx`` does; a
    ``cuda.jit(device=True)`` function asks the GPU for its compute capability); under the
    simulator, where an ``njit`` function would run compiled for the CPU and cannot take the
    simulator's arrays, a simulated device function."""
    if config.ENABLE_CUDASIM:
        return cuda.jit(device=True)(f)
    return numba.njit(inline="always")(f)


@numba.njit(inline="always")
def layer_of(g, N):
    """Layer of hidden unit g, that is g // N, by comparisons: networks have few layers, and a
    64-bit integer division is a long subroutine on a GPU."""
    l = 0
    while g >= (l + 1) * N:
        l += 1
    return l
