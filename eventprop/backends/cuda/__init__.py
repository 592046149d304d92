"""Event-driven EventProp on an NVIDIA GPU (numba CUDA): the CPU backend's kernels for the GPU.

One module per job:

* ``launch``: how units map to threads and blocks, block sizes, launch configurations.
* ``forward``, ``backward``: the kernels of the two passes and the launches that run them.
* ``loss``: the loss terms on the device.
* ``optimiser``: the Adam step (``optim.adam_update`` compiled for the device) and the
  time-constant kernel, on the parameters where they are.
* ``workspace``: device buffers, parameters and inputs kept from trial to trial.
* ``host``: the CPU kernels' contract (host records in, results copied back) for the equality
  tests, and the PTX compilation check.
* ``backend``: ``CudaBackend`` (the ``Backend`` interface) and the choice of the GPU.

Delays and sparse connectivity (``eventprop.projections``) arrive in the ``records.Synapses``
record; networks without them run the same loops as before (flags from the arrays' shapes, tested
outside the inner loops): see ``forward`` and ``backward``.

The neuron equations are not written here: the kernels call the functions of ``models`` (numba
``njit`` functions; a CPU dispatcher called inside a CUDA kernel is compiled for the device from
the same Python source), so CPU and GPU share one copy of the model. The kernels take the named
records of ``backends.records``, as the CPU kernels do.

Precision follows the weights' dtype (float32 or float64) exactly as on the CPU: the same scalar
arguments are cast to that dtype, and no float64 literal is mixed into float32 arithmetic. Results
of the model functions are wrapped in ``real(...)``: a no-op in compiled code, but under the CUDA
simulator (where a kernel is plain Python and an ``njit`` call returns a Python float) it keeps
the simulated arithmetic in the kernel's precision, so the simulator checks the same maths.

Where the time goes (H100, SHD-shaped workload, BENCHMARKS.md): Nsight Compute shows the forward
kernel issuing an instruction every 6.8 cycles per warp at 14 % occupancy, so at B = 32 (32
blocks on 132 multiprocessors) a trial is bound by the instructions per step of each block. Hence
no 64-bit integer division in the step loops (``launch.layer_of`` instead of ``// N``; ``while``
loops instead of ``range`` with a run-time step, which divides to count its trips), the per-unit
constants in thread-local memory, the input spikes out of the time loops, and warp shuffles
instead of barriers in the backward pass. A trial is still a chain of dependent steps per sample
on one multiprocessor, so at small batches most of a large GPU is idle; spreading a sample over
a cluster of blocks is what BENCHMARKS.md names as the next step.
"""
from eventprop.backends.cuda.backend import CudaBackend

__all__ = ["CudaBackend"]
