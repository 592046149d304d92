"""The shared helpers under the original's module name: parameter checks
(``eventprop.config.checks``), Adam and the learning-rate schedules (``eventprop.optim``) and the
atomically written files (``eventprop.storage``)."""
from eventprop.config.checks import *  # noqa: F401,F403
from eventprop.optim import *  # noqa: F401,F403
from eventprop.storage import *  # noqa: F401,F403
