"""EventProp: exact-gradient training of spiking neural networks on numba (CPU and NVIDIA GPU).

The benchmarks of Nowotny, Turner & Knight (2025), "Loss shaping enhances exact gradient learning
with EventProp in spiking neural networks": Yin-Yang, MNIST, SHD, SSC, DVS gesture and sequential
MNIST. Subpackages, one concept each:

* ``eventprop.models``: the neuron and synapse equations (host and device).
* ``eventprop.losses``: the loss functions and regularisation.
* ``eventprop.network``: ``EventPropNetwork``, the parameters of a network and its trials.
* ``eventprop.backends``: the engines that run a trial (``cpu``, ``cuda``).
* ``eventprop.optim``: Adam and the learning-rate schedules.
* ``eventprop.data``: spike data, the data sets and augmentations.
* ``eventprop.training``: epochs, whole runs, recordings, checkpoints.
* ``eventprop.config``: the parameters of the simulators and their checks.
* ``eventprop.simulators``: one module per benchmark (also importable as ``simulator_*``).
* ``eventprop.tools``: the ``eventprop`` command, sweeps and figures.
* ``eventprop.storage``: result and checkpoint files, written atomically.
"""
__version__ = "0.2.0"
