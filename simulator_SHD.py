"""The Spiking Heidelberg Digits and Spiking Speech Commands benchmark under the original's module name: the default parameters ``p``, the
presets and the model class with ``train``, ``test``, ``train_test`` and ``cross_validate``.
Everything lives in ``eventprop.simulators.shd``; this module re-exports it.
"""
from eventprop.simulators.shd import *  # noqa: F401,F403
