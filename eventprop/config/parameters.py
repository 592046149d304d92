"""A simulator's parameter table turned into what the simulator needs: the Parameter of every
key, the defaults ``p`` and the validation rules; and the checks across keys every simulator
makes.

A simulator's table (``eventprop.config.<simulator>.TABLE``) maps each key of its ``p``, in
order, to ``shared()`` (the key of ``eventprop.config.shared.SHARED``), ``shared(default=...)``
(that key with another default here) or a ``Parameter`` (a key of this simulator only, or one
that means something else here than in SHARED).
"""
import copy
from dataclasses import replace

from eventprop.config import checks
from eventprop.config.parameter import SharedKey
from eventprop.config.shared import SHARED


def resolve(table):
    """Key -> Parameter for every key of a simulator's table."""
    parameters = {}
    for key, entry in table.items():
        if isinstance(entry, SharedKey):
            if key not in SHARED:
                raise KeyError(f"{key!r} is marked shared() but is not a key of SHARED")
            parameters[key] = (replace(SHARED[key], default=entry.default)
                               if entry.changes_default else SHARED[key])
        else:
            parameters[key] = entry
    return parameters


def defaults(parameters):
    """The parameter dictionary of the defaults: a plain dict of fresh copies."""
    return {key: copy.deepcopy(parameter.default) for key, parameter in parameters.items()}


def rules(parameters):
    """Key -> validation rule."""
    return {key: parameter.rule for key, parameter in parameters.items()}


def check(params, defaults, rules):
    """The full parameter dictionary: ``checks.check_params`` (defaults filled in, every key and
    value checked), then the checks across keys every simulator needs: V_THRESH above V_RESET,
    a trial of at least two steps."""
    full = checks.check_params(params, defaults, rules)
    if full["V_THRESH"] <= full["V_RESET"]:
        raise ValueError(f"invalid p['V_THRESH'] = {full['V_THRESH']}: must exceed V_RESET")
    if full["TRIAL_MS"] < 2 * full["DT_MS"]:
        raise ValueError(f"invalid p['TRIAL_MS'] = {full['TRIAL_MS']}: must be at least 2 DT_MS")
    return full
