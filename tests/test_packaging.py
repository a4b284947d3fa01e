"""The installed distribution carries every subpackage of the source tree."""

import os
import tomllib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_every_subpackage_is_installed():
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        tool = tomllib.load(f)["tool"]["setuptools"]
    listed = set(tool["packages"])
    # Map the source folders to import names the way pyproject's package-dir does.
    folders = {v: k for k, v in tool["package-dir"].items()}
    found = set()
    for top, name in folders.items():
        for here, dirs, files in os.walk(os.path.join(ROOT, top)):
            dirs[:] = [d for d in dirs if not d.startswith((".", "__"))]
            if "__init__.py" in files:
                rel = os.path.relpath(here, os.path.join(ROOT, top))
                sub = "" if rel == "." else "." + rel.replace(os.sep, ".")
                found.add(name + sub)
    missing = sorted(found - listed)
    assert not missing, f"pyproject.toml [tool.setuptools] packages lacks {missing}"
    assert listed <= found, f"listed but not in the source tree: {sorted(listed - found)}"
