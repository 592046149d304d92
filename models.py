"""The neuron and synapse equations under the original's module name (``eventprop.models``)."""
from eventprop.models import *  # noqa: F401,F403
