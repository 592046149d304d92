"""The parameter reference pages, written from the tables of ``eventprop.config``: shared.md
(the shared keys) and one page per simulator (its own keys and the shared defaults it changes).

    python -m eventprop.config.reference [FOLDER]       (default: docs/parameters)

run in the repository root, after any change to a parameter table.
"""
import html
import os
import sys

from eventprop.config import dvs_gesture, mnist, shd, smnist, yinyang
from eventprop.config.parameter import Parameter
from eventprop.config.parameters import resolve
from eventprop.config.shared import SHARED

# page name -> (title, parameter table, simulator module)
SIMULATORS = {
    "yinyang": ("Yin-Yang", yinyang.TABLE, "yinyang"),
    "mnist": ("MNIST", mnist.TABLE, "mnist"),
    "shd": ("SHD / SSC", shd.TABLE, "shd"),
    "dvs_gesture": ("DVS gesture", dvs_gesture.TABLE, "dvs_gesture"),
    "smnist": ("Sequential MNIST", smnist.TABLE, "smnist"),
}
ORIGINAL_MODULES = {"yinyang": "simulator_yinyang", "mnist": "simulator_MNIST",
                    "shd": "simulator_SHD", "dvs_gesture": "simulator_DVS_gesture",
                    "smnist": "simulator_SMNIST"}
GENERATED = "Generated from `eventprop/config/` by `python -m eventprop.config.reference`; " \
            "edit the tables there, not this page."
COLUMNS = ("key", "default", "unit", "valid values", "meaning")


def text(value):
    """Plain text for a Markdown table cell."""
    return html.escape(value, quote=False).replace("|", "\\|")


def code(value):
    """A Python value as inline code."""
    return "`" + repr(value).replace("|", "\\|") + "`"


def table(rows, columns=COLUMNS):
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def row(key, parameter, default):
    return [f"`{key}`", default, text(parameter.unit), text(parameter.rule.valid_values),
            text(parameter.meaning)]


def shared_page():
    users = {key: [name for name, (_, entries, _) in SIMULATORS.items()
                   if key in entries and not isinstance(entries[key], Parameter)]
             for key in SHARED}
    rows = [row(key, parameter, code(parameter.default)) +
            [", ".join(f"[{name}]({name}.md)" for name in users[key])]
            for key, parameter in SHARED.items()]
    links = ", ".join(f"[{title}]({name}.md)" for name, (title, _, _) in SIMULATORS.items())
    return (f"# Shared parameters\n\n"
            f"The keys that mean the same in every simulator that has them, with their default "
            f"(the SHD simulator's). A simulator's page lists the keys it has of its own and the "
            f"shared defaults it changes: {links}.\n\n"
            f"{GENERATED}\n\n" + table(rows, COLUMNS + ("simulators",)))


def simulator_page(name):
    title, entries, module = SIMULATORS[name]
    parameters = resolve(entries)
    own = [row(key, parameters[key], code(parameters[key].default))
           for key, entry in entries.items() if isinstance(entry, Parameter)]
    changed = [row(key, parameters[key], f"{code(entry.default)} (shared: "
                                         f"{code(SHARED[key].default)})")
               for key, entry in entries.items()
               if not isinstance(entry, Parameter) and entry.changes_default]
    same = [f"`{key}`" for key, entry in entries.items()
            if not isinstance(entry, Parameter) and not entry.changes_default]
    return (f"# {title} parameters\n\n"
            f"The keys of `p` in `eventprop.simulators.{module}` (also importable as "
            f"`{ORIGINAL_MODULES[name]}`), in three groups; `p` holds them all.\n\n"
            f"{GENERATED}\n\n"
            f"## Keys of this simulator\n\n" + table(own) +
            "\n## Shared keys with another default here\n\n" + table(changed) +
            "\n## Shared keys with the shared default\n\n"
            "Default, unit, valid values and meaning in [the shared keys](shared.md): "
            + ", ".join(same) + ".\n")


def pages():
    """File name -> Markdown text of every reference page."""
    out = {"shared.md": shared_page()}
    out.update({f"{name}.md": simulator_page(name) for name in SIMULATORS})
    return out


def write(folder):
    os.makedirs(folder, exist_ok=True)
    for file_name, markdown in pages().items():
        with open(os.path.join(folder, file_name), "w", encoding="utf-8") as f:
            f.write(markdown)


if __name__ == "__main__":
    write(sys.argv[1] if len(sys.argv) > 1 else os.path.join("docs", "parameters"))
