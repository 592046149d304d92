"""setup.py installs every library module of the repository (the ``train_*.py`` scripts are
examples a user copies, not modules)."""
import ast
import glob
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_setup_lists_every_module():
    tree = ast.parse(open(os.path.join(ROOT, "setup.py")).read())
    listed = None
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "py_modules":
            listed = set(ast.literal_eval(node.value))
    assert listed is not None
    modules = {os.path.basename(f)[:-3] for f in glob.glob(os.path.join(ROOT, "*.py"))}
    modules -= {"setup"}
    modules = {m for m in modules if not m.startswith("train_")}
    assert listed == modules
