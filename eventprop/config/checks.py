"""Validation of parameter dictionaries: unknown keys (with the closest valid spellings) and
the rules that values must follow.

A rule is a function (value, p) -> error message, or None when the value is valid; its
``valid_values`` attribute says in words which values are valid (the parameter reference pages
show it).
"""
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


def valid_values(text):
    """Decorator: ``text`` describes the values the rule accepts."""
    def describe(rule):
        rule.valid_values = text
        return rule
    return describe


def _is_number(value):
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _is_integer(value):
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


@valid_values("> 0")
def positive(value, p=None):
    if not _is_number(value) or not value > 0 or not math.isfinite(value):
        return "must be a positive number"


@valid_values(">= 0")
def non_negative(value, p=None):
    if not _is_number(value) or not value >= 0 or not math.isfinite(value):
        return "must be a non-negative number"


@valid_values("any finite number")
def number(value, p=None):
    if not _is_number(value) or not math.isfinite(value):
        return "must be a finite number"


@valid_values("0 <= x < 1")
def probability(value, p=None):
    if non_negative(value) or value >= 1:
        return "must be a probability in [0, 1)"


@valid_values("0.0 only")
def zero_only(value, p=None):
    """For keys of the original whose other values this implementation does not support."""
    if value != 0:
        return "only 0.0 is supported"


def integer_at_least(minimum):
    @valid_values(f"integer >= {minimum}")
    def rule(value, p=None):
        if not _is_integer(value) or value < minimum:
            return f"must be an integer >= {minimum}"
    return rule


def one_of(*choices):
    listed = ", ".join(repr(c) for c in choices)

    @valid_values(f"one of {listed}" if len(choices) > 1 else f"{listed} only")
    def rule(value, p=None):
        if value not in choices:
            return f"must be one of {listed}"
    return rule


@valid_values("True or False")
def boolean(value, p=None):
    if not isinstance(value, (bool, np.bool_)):
        return "must be True or False"


@valid_values("None or integer >= 0")
def optional_seed(value, p=None):
    if value is not None and (not _is_integer(value) or value < 0):
        return "must be None or a non-negative integer"


@valid_values("a string")
def string(value, p=None):
    if not isinstance(value, str):
        return "must be a string"


@valid_values("None or a string")
def optional_string(value, p=None):
    if value is not None and not isinstance(value, str):
        return "must be None or a string"


@valid_values("anything (not used)")
def anything(value, p=None):
    """For keys accepted for compatibility with the original's scripts and not used."""
    return None


@valid_values("anything (read as True or False)")
def any_truth_value(value, p=None):
    """For switches the original accepted in any form: only the truth value counts."""
    return None


def _distinct_integers(value, low, high=None):
    """True when ``value`` is a non-empty list of distinct integers in [low, high)."""
    return isinstance(value, (list, tuple)) and bool(value) \
        and all(_is_integer(x) and x >= low and (high is None or x < high) for x in value) \
        and len(set(value)) == len(value)


@valid_values("None or a list of distinct class numbers >= 0")
def optional_class_list(value, p=None):
    if value is not None and not _distinct_integers(value, 0):
        return "must be None or a list of distinct class numbers"


def optional_class_list_below(n_classes, what):
    """REDUCED_CLASSES of a data set with ``n_classes`` classes, called ``what`` ("digits")."""
    @valid_values(f"None or a list of distinct {what} 0..{n_classes - 1}")
    def rule(value, p=None):
        if value is not None and not _distinct_integers(value, 0, n_classes):
            return f"must be None or a list of distinct {what} 0..{n_classes - 1}"
    return rule


@valid_values("list of [epoch, trial] pairs")
def list_of_pairs(value, p=None):
    if not isinstance(value, (list, tuple)) or any(
            not isinstance(x, (list, tuple)) or len(x) != 2 for x in value):
        return "must be a list of [epoch, trial] pairs"


@valid_values("None or a list of distinct fold indices < N_FOLDS")
def fold_list(value, p):
    """FOLDS: None, or a list of distinct fold indices below N_FOLDS."""
    if value is not None and not _distinct_integers(value, 0, p["N_FOLDS"]):
        return f"must be None or a list of distinct fold indices in [0, N_FOLDS = {p['N_FOLDS']})"


def list_of(*kinds):
    """A list whose items are of one of ``kinds`` (types)."""
    names = " or ".join(kind.__name__ for kind in kinds)

    @valid_values(f"list of {names}")
    def rule(value, p=None):
        if not isinstance(value, (list, tuple)) or any(not isinstance(x, kinds) for x in value):
            return f"must be a list of {names}"
    return rule


@valid_values("dict {projection: (low, high)} with 0 <= low <= high <= MAX_DELAY_MS")
def delays(value, p=None):
    """DELAYS: initial delay ranges of projections (``eventprop.projections``)."""
    from eventprop import projections
    if not isinstance(value, dict):
        return "must be a dict {projection: (low, high)}"
    most = p.get("MAX_DELAY_MS", math.inf) if p else math.inf
    for name, bounds in value.items():
        if name not in projections.PROJECTIONS:
            return f"unknown projection {name!r}; projections are {projections.PROJECTIONS}"
        if (not isinstance(bounds, (list, tuple)) or len(bounds) != 2
                or not all(_is_number(x) for x in bounds)):
            return f"[{name!r}] must be (low, high) in ms"
        if not 0 <= bounds[0] <= bounds[1] <= most:
            return f"[{name!r}] = {tuple(bounds)} needs 0 <= low <= high <= MAX_DELAY_MS ({most})"


@valid_values("dict {projection: {'probability': p} or {'inputs_per_neuron': k}, optional "
              "'self_connections': bool}")
def connectivity(value, p=None):
    """CONNECTIVITY: sparse projections (``eventprop.projections``)."""
    from eventprop import projections
    if not isinstance(value, dict):
        return "must be a dict {projection: {'probability': p}}"
    for name, spec in value.items():
        try:
            projections.check_connectivity(name, spec, math.inf)
        except ValueError as error:
            return str(error)
