"""Every Python package folder of the repository ships in the wheel: pyproject.toml lists packages one by one
(the code folders are mapped into one import package), so a new subpackage must be added there. An editable
install finds it anyway, which is how a missing entry went unnoticed until an installed wheel failed."""

from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[2]


def test_every_package_folder_is_listed_in_pyproject():
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = {name: ROOT / path for name, path in setuptools["package-dir"].items()}
    found = set()
    for name, folder in folders.items():
        for init in folder.rglob("__init__.py"):
            relative = init.parent.relative_to(folder).parts
            if "__pycache__" not in relative:
                found.add(".".join((name, *relative)))
    # a mapped folder's subfolders that are mapped themselves are the same package under its own name
    assert found - set(setuptools["packages"]) == set()
