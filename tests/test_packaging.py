"""The installed distribution: its top-level names, that the tests import it (not the source
tree), that a researcher's own ``models.py``, ``utils.py``, ``network.py`` or ``losses.py`` in the
working directory changes nothing, and the ``eventprop`` console command."""
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys

import pytest

import eventprop

SIMULATORS = ("simulator_yinyang", "simulator_MNIST", "simulator_SHD", "simulator_DVS_gesture",
              "simulator_SMNIST")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def editable():
    """True for a development install (``pip install -e``): the source tree is the package."""
    text = importlib.metadata.distribution("eventprop").read_text("direct_url.json")
    return bool(text) and json.loads(text).get("dir_info", {}).get("editable", False)


needs_regular_install = pytest.mark.skipif(
    editable(), reason="editable install: the source tree is the installed package; CI installs "
                       "with 'pip install .'")


@needs_regular_install
def test_installed_top_level_names_are_eventprop_and_the_simulators():
    files = importlib.metadata.distribution("eventprop").files
    top = {str(f).split("/")[0] for f in files if not str(f).startswith("..")}
    top = {name[:-3] if name.endswith(".py") else name for name in top
           if not name.endswith(".dist-info") and name != "__pycache__"}
    assert top == {"eventprop", *SIMULATORS}


@needs_regular_install
def test_tests_import_the_installed_package_not_the_source_tree():
    dist = importlib.metadata.distribution("eventprop")
    for module in [eventprop, *map(__import__, SIMULATORS)]:
        name = "eventprop/__init__.py" if module is eventprop else f"{module.__name__}.py"
        installed = os.path.realpath(dist.locate_file(name))
        assert os.path.realpath(module.__file__) == installed, module.__file__
        assert installed != os.path.realpath(os.path.join(ROOT, name))


def test_console_command_lists_the_commands_and_benchmarks():
    done = subprocess.run([sys.executable, "-m", "eventprop", "--help"], capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr
    for word in ("train", "sweep", "figures", "yinyang", "shd", "dvs_gesture"):
        assert word in done.stdout
    wrong = subprocess.run([sys.executable, "-m", "eventprop", "train", "shdd"],
                           capture_output=True, text=True)
    assert wrong.returncode == 2 and "'shdd'" in wrong.stderr
    script = shutil.which("eventprop", path=os.path.dirname(sys.executable))
    assert script is not None, "the eventprop console script is not installed next to python"


STRAY = "raise ImportError('the stray {name}.py of the working directory was imported')\n"

TRAIN = """
import json, sys
from simulator_yinyang import p, yinyang
p.update(OUT_DIR=sys.argv[1], NAME="yy", N_EPOCH=1, N_TRAIN=64, N_TEST=32, N_BATCH=32,
         NUM_HIDDEN=16, PROGRESS=False, BACKEND="cpu", MODEL_SEED=1)
*_, train_acc, test_acc = yinyang(p).train_test(p)
print(json.dumps([train_acc, test_acc]))
"""


@pytest.fixture()
def research_folder(tmp_path):
    """A working directory holding a researcher's own modules with generic names."""
    for name in ("models", "utils", "network", "losses", "parameters", "experiment"):
        (tmp_path / f"{name}.py").write_text(STRAY.format(name=name))
    return tmp_path


def test_stray_modules_in_the_working_directory_change_nothing(research_folder, tmp_path):
    out = tmp_path / "out"
    # python -c and python -m put the working directory first on sys.path, a script its folder
    (research_folder / "train.py").write_text(TRAIN)
    runs = [[sys.executable, "-c", TRAIN, str(out / "c")],
            [sys.executable, "-m", "train", str(out / "m")],
            [sys.executable, str(research_folder / "train.py"), str(out / "script")]]
    results = []
    for cmd in runs:
        done = subprocess.run(cmd, cwd=research_folder, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-3000:]
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    assert results[0] == results[1] == results[2]
    imports = subprocess.run(
        [sys.executable, "-c", "import simulator_SHD, simulator_MNIST, simulator_SMNIST, "
         "simulator_DVS_gesture, eventprop.tools.sweep, eventprop.tools.figures"],
        cwd=research_folder, capture_output=True, text=True)
    assert imports.returncode == 0, imports.stderr[-3000:]


def test_console_command_trains_a_benchmark(tmp_path):
    """``eventprop train yinyang`` with KEY=VALUE overrides: the module defaults, the overrides
    and the files of the run, as ``python train_X.py`` gives them."""
    cmd = [sys.executable, "-m", "eventprop", "train", "yinyang", "--out", str(tmp_path),
           "--name", "cli", "N_EPOCH=1", "N_TRAIN=32", "N_TEST=16", "N_BATCH=32",
           "NUM_HIDDEN=8", "PROGRESS=false", "BACKEND=\"cpu\""]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "test accuracy" in done.stdout
    with open(tmp_path / "cli.json") as f:
        saved = json.load(f)
    assert saved["NUM_HIDDEN"] == 8 and saved["N_EPOCH"] == 1 and saved["NAME"] == "cli"
    assert (tmp_path / "cli_results.txt").exists()
    bad = subprocess.run(cmd + ["NUM_HIDEN=3"], capture_output=True, text=True, cwd=tmp_path)
    assert bad.returncode != 0 and "NUM_HIDEN" in bad.stderr and "NUM_HIDDEN" in bad.stderr
