"""One source for every parameter: the tables of eventprop.config give each simulator's ``p``,
its rules, build_network's defaults and the reference pages under docs/parameters/."""
import ast
import importlib
import importlib.util
import os

import numpy as np
import pytest

from eventprop.config import checks, parameters, reference
from eventprop.config.parameter import Parameter, shared
from eventprop.config.shared import SHARED
from eventprop.training.build import build_network, trainable_parameters

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGES = os.path.join(ROOT, "docs", "parameters")
SIMULATORS = ("yinyang", "mnist", "shd", "dvs_gesture", "smnist")


def simulator(name):
    return importlib.import_module(f"eventprop.simulators.{name}")


def table(name):
    return importlib.import_module(f"eventprop.config.{name}")


@pytest.mark.parametrize("file_name", sorted(reference.pages()))
def test_reference_pages_are_up_to_date(file_name):
    path = os.path.join(PAGES, file_name)
    assert os.path.isfile(path), \
        f"{path} is missing; run `python -m eventprop.config.reference` in the repository root"
    with open(path, encoding="utf-8") as f:
        written = f.read()
    assert written == reference.pages()[file_name], \
        (f"docs/parameters/{file_name} differs from the parameter tables; regenerate it with "
         f"`python -m eventprop.config.reference` in the repository root")


def test_reference_pages_start_with_a_title_and_link_only_to_each_other():
    pages = reference.pages()
    assert set(pages) == {"shared.md", *(f"{name}.md" for name in SIMULATORS)}
    for file_name, markdown in pages.items():
        assert markdown.startswith("# "), file_name
        for target in (part.split(")")[0] for part in markdown.split("](")[1:]):
            assert target in pages, (file_name, target)


@pytest.mark.parametrize("name", SIMULATORS)
def test_every_key_has_a_default_rule_meaning_and_unit(name):
    p = simulator(name).p
    described = table(name).PARAMETERS
    assert list(p) == list(described)
    for key, parameter in described.items():
        assert isinstance(parameter, Parameter), key
        assert callable(parameter.rule) and parameter.rule.valid_values, key
        assert parameter.meaning.strip(), key
        assert isinstance(parameter.unit, str), key


def test_every_shared_key_is_described_and_obeys_its_own_rule():
    for key, parameter in SHARED.items():
        assert parameter.meaning.strip() and isinstance(parameter.unit, str), key
        assert parameter.rule.valid_values, key
    full = {key: parameter.default for key, parameter in SHARED.items()}
    for key, parameter in SHARED.items():
        assert parameter.rule(parameter.default, full) is None, key


@pytest.mark.parametrize("name", SIMULATORS)
def test_p_is_the_tables_defaults_and_rules(name):
    module, described = simulator(name), table(name).PARAMETERS
    assert type(module.p) is dict
    for key, parameter in described.items():
        assert module.p[key] == parameter.default, key
        assert type(module.p[key]) is type(parameter.default), key
        assert module.DEFAULTS[key] == parameter.default, key
        assert module.RULES[key] is parameter.rule, key
    assert module.validate({}) == module.DEFAULTS


@pytest.mark.parametrize("name", SIMULATORS)
def test_a_shared_key_takes_its_meaning_from_shared(name):
    """A simulator changes at most the default of a shared key, never its rule or meaning."""
    entries, described = table(name).TABLE, table(name).PARAMETERS
    for key, entry in entries.items():
        if not isinstance(entry, Parameter):
            assert described[key].rule is SHARED[key].rule, key
            assert described[key].meaning == SHARED[key].meaning, key
            assert described[key].unit == SHARED[key].unit, key


def test_p_is_a_fresh_copy_of_the_defaults():
    module = simulator("shd")
    assert module.p["AUGMENTATION"] is not module.DEFAULTS["AUGMENTATION"]
    assert module.p["AUGMENTATION"] is not table("shd").PARAMETERS["AUGMENTATION"].default


def test_unknown_and_invalid_keys_are_named():
    validate = simulator("yinyang").validate
    with pytest.raises(KeyError, match="NUM_HIDEN.*NUM_HIDDEN"):
        validate({"NUM_HIDEN": 3})
    with pytest.raises(ValueError, match=r"invalid p\['TAU_MEM'\] = -1.0: must be a positive"):
        validate({"TAU_MEM": -1.0})
    with pytest.raises(ValueError, match="V_THRESH.*must exceed V_RESET"):
        validate({"V_THRESH": 0.0})


def test_rules_describe_their_valid_values():
    assert checks.positive.valid_values == "> 0"
    assert checks.integer_at_least(1).valid_values == "integer >= 1"
    assert checks.one_of("cpu", "cuda", "auto").valid_values == "one of 'cpu', 'cuda', 'auto'"
    assert checks.list_of(list, tuple)([1]) == "must be a list of list or tuple"


def _imported_modules(path):
    tree = ast.parse(open(path, encoding="utf-8").read())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


@pytest.mark.parametrize("name", SIMULATORS)
def test_no_simulator_imports_another(name):
    path = importlib.util.find_spec(f"eventprop.simulators.{name}").origin
    others = {f"eventprop.simulators.{other}" for other in SIMULATORS if other != name}
    others |= {f"simulator_{other}" for other in ("yinyang", "MNIST", "SHD", "DVS_gesture",
                                                   "SMNIST")}
    imported = set(_imported_modules(path))
    assert not imported & others, f"{path} imports {imported & others}"


def test_build_network_takes_its_defaults_from_shared():
    """A network from yinyang's p (which lacks most network keys) equals one from the same p
    completed with the shared defaults."""
    p = dict(simulator("yinyang").p, MODEL_SEED=1, BACKEND="cpu")
    completed = dict({key: parameter.default for key, parameter in SHARED.items()}, **p)
    init = {"input_hidden": (1.5, 0.78), "hidden_output": (0.93, 0.1)}
    net, full = build_network(p, 5, 3, init), build_network(completed, 5, 3, init)
    for attribute in ("n_layers", "recurrent", "hidden_type", "output_type", "tau_b", "b_incr",
                      "min_tau_m", "min_tau_syn", "tau_0", "tau_1", "alpha", "tau_accumulator",
                      "reg"):
        assert getattr(net, attribute) == getattr(full, attribute), attribute
    assert net.params.keys() == full.params.keys()
    for key in net.params:
        assert np.array_equal(net.params[key], full.params[key]), key
    assert trainable_parameters(net, p) == trainable_parameters(full, completed)


def test_build_network_has_no_literal_defaults():
    source = open(importlib.util.find_spec("eventprop.training.build").origin).read()
    calls = [node for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Call)
             and isinstance(node.func, ast.Attribute) and node.func.attr == "get"]
    assert not [call for call in calls if len(call.args) > 1
                and isinstance(call.args[1], ast.Constant)]


def test_network_constructor_defaults_are_the_shared_defaults():
    """EventPropNetwork's keyword defaults come from the shared table (its backend excepted: a
    network built directly runs on the CPU unless asked)."""
    import inspect
    from eventprop.network import EventPropNetwork
    keys = {"n_layers": "N_HID_LAYER", "hidden_type": "HIDDEN_NEURON_TYPE",
            "output_type": "OUTPUT_NEURON_TYPE", "dt": "DT_MS", "seed": "MODEL_SEED"}
    checked = 0
    for name, arg in inspect.signature(EventPropNetwork.__init__).parameters.items():
        key = keys.get(name, name.upper())
        if key in SHARED and name != "backend":
            assert arg.default == SHARED[key].default, name
            checked += 1
    assert checked >= 30
    assert inspect.signature(EventPropNetwork.__init__).parameters["backend"].default == "cpu"


def test_defaults_and_rules_of_a_table():
    described = parameters.resolve({"DT_MS": shared(default=0.5), "X": Parameter(
        [], checks.list_of(str), "a list", "")})
    assert described["DT_MS"].default == 0.5 and described["DT_MS"].rule is SHARED["DT_MS"].rule
    p = parameters.defaults(described)
    assert p == {"DT_MS": 0.5, "X": []} and p["X"] is not described["X"].default
    with pytest.raises(KeyError, match="NOT_SHARED"):
        parameters.resolve({"NOT_SHARED": shared()})


@pytest.mark.parametrize("name,module", [
    ("shd", "eventprop.simulators.shd"), ("simulator_SHD", "eventprop.simulators.shd"),
    ("simulator_DVS_gesture", "eventprop.simulators.dvs_gesture"),
    ("sweep_crash", "sweep_crash")])
def test_sweeps_import_the_simulators_of_the_package(name, module):
    from eventprop.tools import sweep
    imported, class_name = sweep.simulator_module(name)
    assert imported == module
    if class_name is not None:
        assert hasattr(importlib.import_module(imported), class_name)
