"""Validation of parameter dictionaries: unknown keys (with the closest valid spellings) and
the rules that values must follow; a rule is a function value -> error message or None."""
import difflib
import math

import numpy as np


def check_params(p, defaults, rules, where="p"):
    """Fill missing keys from ``defaults`` and validate.

    Raises KeyError naming an unknown key and its closest valid spellings, and ValueError naming
    a key whose value breaks its rule. ``rules`` maps a key to a function value -> error message
    (or None when valid). Returns a new dict.
    """
    unknown = [k for k in p if k not in defaults]
    if unknown:
        lines = []
        for k in unknown:
            close = difflib.get_close_matches(str(k), list(defaults), n=3, cutoff=0.6)
            hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
            lines.append(f"unknown parameter {k!r} in {where}{hint}")
        raise KeyError("; ".join(lines))
    full = dict(defaults)
    full.update(p)
    for key, rule in rules.items():
        message = rule(full[key], full)
        if message:
            raise ValueError(f"invalid {where}[{key!r}] = {full[key]!r}: {message}")
    return full


def positive(value, p=None):
    if not isinstance(value, (int, float, np.integer, np.floating)) or isinstance(value, bool) \
            or not value > 0 or not math.isfinite(value):
        return "must be a positive number"


def non_negative(value, p=None):
    if not isinstance(value, (int, float, np.integer, np.floating)) or isinstance(value, bool) \
            or not value >= 0 or not math.isfinite(value):
        return "must be a non-negative number"


def number(value, p=None):
    if not isinstance(value, (int, float, np.integer, np.floating)) or isinstance(value, bool) \
            or not math.isfinite(value):
        return "must be a finite number"


def probability(value, p=None):
    if non_negative(value) or value >= 1:
        return "must be a probability in [0, 1)"


def integer_at_least(minimum):
    def rule(value, p=None):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < minimum:
            return f"must be an integer >= {minimum}"
    return rule


def one_of(*choices):
    def rule(value, p=None):
        if value not in choices:
            return f"must be one of {', '.join(repr(c) for c in choices)}"
    return rule


def boolean(value, p=None):
    if not isinstance(value, (bool, np.bool_)):
        return "must be True or False"


def optional_seed(value, p=None):
    if value is not None and (not isinstance(value, (int, np.integer)) or isinstance(value, bool)
                              or value < 0):
        return "must be None or a non-negative integer"


def string(value, p=None):
    if not isinstance(value, str):
        return "must be a string"


def optional_string(value, p=None):
    if value is not None and not isinstance(value, str):
        return "must be None or a string"


def anything(value, p=None):
    """For keys accepted for compatibility with the original's scripts and not used."""
    return None


def optional_class_list(value, p=None):
    if value is None:
        return None
    if not isinstance(value, (list, tuple)) or not value or any(
            not isinstance(c, (int, np.integer)) or isinstance(c, bool) or c < 0 for c in value) \
            or len(set(value)) != len(value):
        return "must be None or a list of distinct class numbers"


def list_of_pairs(value, p=None):
    if not isinstance(value, (list, tuple)) or any(
            not isinstance(x, (list, tuple)) or len(x) != 2 for x in value):
        return "must be a list of [epoch, trial] pairs"


def fold_list(value, p):
    """FOLDS: None, or a list of distinct fold indices below N_FOLDS."""
    if value is None:
        return None
    if not isinstance(value, (list, tuple)) or not value or len(set(value)) != len(value) or \
            any(not isinstance(f, (int, np.integer)) or isinstance(f, bool) or
                not 0 <= f < p["N_FOLDS"] for f in value):
        return f"must be None or a list of distinct fold indices in [0, N_FOLDS = {p['N_FOLDS']})"


def list_of(kind):
    def rule(value, p=None):
        if not isinstance(value, (list, tuple)) or any(not isinstance(x, kind) for x in value):
            return f"must be a list of {kind.__name__}"
    return rule
