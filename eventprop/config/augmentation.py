"""Validation of AUGMENTATION, the dict of training-set augmentations applied every epoch in
its order: the rule of each augmentation's value, and the rule of the whole dict for a
simulator's set of augmentations."""
import difflib

from eventprop.config import checks


def _switch(value):
    if not isinstance(value, bool):
        return "must be True or False"


def _probabilities(value):
    if not (isinstance(value, (list, tuple)) and len(value) > 0 and
            all(not checks.non_negative(x) and x <= 1 for x in value)):
        return "must be a non-empty list of probabilities"


def _stretch_range(value):
    if not (isinstance(value, (list, tuple)) and len(value) == 2 and not checks.positive(value[0])
            and not checks.positive(value[1]) and value[0] <= value[1]):
        return "must be [lo, hi] with 0 < lo <= hi"


# augmentation -> rule of its value (value -> error message or None)
VALUE_RULES = {
    "NORMALISE_SPIKE_NUMBER": _switch,
    "random_shift": checks.non_negative,        # channels
    "random_dilate": _stretch_range,            # [lo, hi] time-stretch factors
    "ID_jitter": checks.non_negative,           # std of the channel jitter
    "blend": _probabilities,                    # mixing probabilities
    "spatial_shift": checks.non_negative,       # pixels
}


def augmentations_of(known, refused=None):
    """The rule of AUGMENTATION in a simulator that offers the augmentations ``known`` (named
    in this order in error messages); ``refused`` maps an augmentation to the reason it is not
    offered."""
    refused = refused or {}

    @checks.valid_values(f"dict with keys among {', '.join(known)}")
    def rule(value, p=None):
        if not isinstance(value, dict):
            return "must be a dict"
        for key, v in value.items():
            if key in refused:
                return f"{key!r} {refused[key]}"
            if key not in known:
                close = difflib.get_close_matches(str(key), list(known), n=2)
                return (f"unknown augmentation {key!r}" +
                        (f" (did you mean {', '.join(map(repr, close))}?)" if close else "") +
                        f"; known: {', '.join(known)}")
            message = VALUE_RULES[key](v)
            if message:
                return f"{key!r}: {message}"
    return rule
