"""The CPU backend: event-driven numba kernels (``kernels``) behind the ``Backend`` interface
(``backend.CpuBackend``)."""
from eventprop.backends.cpu.backend import CpuBackend

__all__ = ["CpuBackend"]
