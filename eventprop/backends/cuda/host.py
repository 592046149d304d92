"""The CPU kernels' contract on the GPU: ``forward_batch`` and ``backward_batch`` take the records
of ``cpu.kernels.forward_batch`` / ``backward_batch`` and fill the same output arrays the same
way, so that a test can run both on the same arguments (``CpuBackend(kernels=...)``). One
difference: sparse projections come here in the network's dense layout (``network.synapses`` and
dense weights), where the CPU kernels take them by row of existing synapses
(``cpu.backend.sparse_weights``). Host arrays are copied to the device, and the output and
accumulator arrays back into the caller's arrays (which are copied in first, so accumulation
semantics match the CPU's); device arrays are used in place.
``compile_ptx`` compiles the kernels of a pass for the device without a GPU.
"""
import numba
import numpy as np
from numba import cuda

from eventprop.backends.cuda import launch
from eventprop.backends.cuda.backward import backward_launch
from eventprop.backends.cuda.forward import forward_launch


def _on_device(record):
    """(the record with its host arrays copied to the device, [(device, host) copies])."""
    fields, copies = [], []
    for x in record:
        if isinstance(x, np.ndarray):
            d = cuda.to_device(np.ascontiguousarray(x))
            copies.append((d, x))
            x = d
        fields.append(x)
    return type(record)(*fields), copies


def _copy_back(copies):
    for d, x in copies:
        if x.size:
            if x.flags.c_contiguous and x.flags.writeable:
                d.copy_to_host(x)
            else:
                x[...] = d.copy_to_host()


def forward_batch(params, synapses, model, inputs, options, store, traces):
    """Forward pass of every sample of the batch on the GPU (as ``cpu.kernels.forward_batch``)."""
    if inputs.in_ptr.shape[0] == 0:
        return
    (params, _), (synapses, _), (inputs, _) = (_on_device(r) for r in (params, synapses, inputs))
    (store, back_store), (traces, back_traces) = _on_device(store), _on_device(traces)
    launch.run(forward_launch(params, synapses, model, inputs, options, store, traces,
                              launch.new_array(True)))
    cuda.synchronize()
    _copy_back(back_store + back_traces)


def backward_batch(params, synapses, model, inputs, options, store, terms, traces, grads):
    """Backward pass of every sample on the GPU (as ``cpu.kernels.backward_batch``). ``grads``
    is zeroed, then all samples accumulate (atomically) into its chunk 0, so the sum over chunks
    is the batch gradient."""
    for accumulator in grads:
        accumulator[...] = 0
    if inputs.in_ptr.shape[0] == 0:
        return
    params, synapses, inputs, store, terms, traces = (
        _on_device(r)[0] for r in (params, synapses, inputs, store, terms, traces))
    grads, back = _on_device(grads)
    launch.run(backward_launch(params, synapses, model, inputs, options, store, terms, traces,
                               grads, launch.new_array(True)))
    cuda.synchronize()
    _copy_back(back)


def compile_ptx(kernel, *records, cc=(9, 0)):
    """PTX of the kernels of the "forward" or "backward" pass (a list, in launch order) for the
    types of these records of host arrays (the arguments of ``forward_batch`` /
    ``backward_batch``). Needs NVVM (a CUDA toolkit), not a GPU: checks that the kernels type and
    compile for the device."""
    make = {"forward": forward_launch, "backward": backward_launch}[kernel]
    records = [type(r)(*(np.ascontiguousarray(x) if isinstance(x, np.ndarray) else x
                         for x in r)) for r in records]
    out = []
    for fn, _, args in make(*records, launch.new_array(False), on_device=False):
        signature = tuple(numba.typeof(a) for a in args)
        out.append(cuda.compile_ptx(fn.py_func, signature, cc=cc)[0])
    return out
