"""The Yin-Yang benchmark under the original's module name: the default parameters ``p``, the
presets and the model class with ``train``, ``test``, ``train_test`` and ``cross_validate``.
Everything lives in ``eventprop.simulators.yinyang``; this module re-exports it.
"""
from eventprop.simulators.yinyang import *  # noqa: F401,F403
