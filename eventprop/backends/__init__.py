"""The backends that run a network's trials: ``cpu`` (numba on the host) and ``cuda`` (an NVIDIA
GPU, or numba's CUDA simulator), behind the interface of ``base.Backend``."""
from eventprop.backends.base import Backend
from eventprop.backends.cpu import CpuBackend

BACKENDS = ("cpu", "cuda", "auto")


def check_available(name):
    """ValueError for a BACKEND name not in BACKENDS; RuntimeError when "cuda" finds no usable
    GPU. Cheap: a run makes this check before it loads any data."""
    if name not in BACKENDS:
        raise ValueError(f"BACKEND {name!r} not in {BACKENDS}")
    if name != "cuda":
        return
    from numba import cuda
    if not cuda.is_available():
        raise RuntimeError("BACKEND 'cuda' needs an NVIDIA GPU with a working CUDA driver "
                           "(numba.cuda.is_available() is False); use 'cpu' or 'auto'")


def select_backend(name, cuda_visible_devices=True, manual_gpu=None):
    """A new backend (one per network) by the BACKEND name: "cpu"; "cuda" (an NVIDIA GPU, or
    numba's CUDA simulator when NUMBA_ENABLE_CUDASIM=1; the device is chosen by
    ``cuda.backend.select_gpu(cuda_visible_devices, manual_gpu)``); "auto" ("cuda" when a GPU is
    usable, else "cpu"; never the simulator)."""
    check_available(name)
    if name == "cpu":
        return CpuBackend()
    from numba import cuda
    from numba.core import config
    if name == "auto" and (config.ENABLE_CUDASIM or not cuda.is_available()):
        return CpuBackend()
    from eventprop.backends.cuda import CudaBackend
    return CudaBackend(cuda_visible_devices, manual_gpu)


__all__ = ["BACKENDS", "Backend", "CpuBackend", "check_available", "select_backend"]
