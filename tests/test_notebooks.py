"""The Colab notebooks in experiments/notebooks: committed without outputs, and every cell runs.

The execution tests run the notebooks in order, in one temporary folder (as a user who opens
them one after the other: 04 reuses 01's student run), each in a fresh python3 kernel of this
interpreter, with `DEX4D_NOTEBOOK_CI=1` (the notebooks' tiny settings) and the suite's
persistent compile cache (tests/conftest.py: $DEX4D_JAX_CACHE, else .jax_cache). XLA compiles
them with LLVM's optimizations off (`--xla_backend_optimization_level=0` in the kernel's
XLA_FLAGS): the CI settings' programs run for seconds, and their compiles, which dominate,
take about half as long. A failing cell fails its notebook's test with the cell's error and the
end of its output. Set `DEX4D_NOTEBOOK_OUTPUTS=DIR` to keep the executed notebooks (with their
outputs) in DIR.
"""

import copy
import json
import os
import re
import subprocess
import sys
import time

import nbformat
import pytest
from helpers import skip_without_gl
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FOLDER = os.path.join(ROOT, "experiments", "notebooks")
NOTEBOOKS = ("01_quickstart.ipynb", "02_robot_environment.ipynb", "03_point_tracks.ipynb",
             "04_benchmark.ipynb")
_CACHE = os.environ.get("DEX4D_JAX_CACHE", os.path.join(ROOT, ".jax_cache"))
CELL_TIMEOUT_S = 900
_FAST_COMPILE = "--xla_backend_optimization_level=0"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _read(name: str):
    return nbformat.read(os.path.join(FOLDER, name), as_version=4)


def test_the_notebooks_are_the_four():
    found = sorted(n for n in os.listdir(FOLDER) if n.endswith(".ipynb"))
    assert found == list(NOTEBOOKS), "a new notebook must be added to NOTEBOOKS to be executed"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_without_outputs(name):
    nb = _read(name)
    nbformat.validate(nb)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, (
                f"{name} cell {i} holds outputs: clear them before committing "
                "(jupyter nbconvert --clear-output --inplace, or Colab's Edit > Clear all outputs)")
        assert "execution" not in cell.metadata, f"{name} cell {i} holds execution timings"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_first_cell_is_the_install_cell(name):
    first = _read(name).cells[0]
    assert first.cell_type == "code"
    assert first.source == _read(NOTEBOOKS[0]).cells[0].source, "the install cells differ"
    for needed in ('REPO_URL = ""', "import dex4d_jax", "dex4d-jax[notebook]"):
        assert needed in first.source, needed


def _run_install_cell(monkeypatch, cwd, repo_url=""):
    """The pip commands the install cell runs, with dex4d_jax not importable.

    pip is replaced by a recorder, which makes the package importable again.
    """
    source = _read(NOTEBOOKS[0]).cells[0].source
    assert source.count('REPO_URL = ""') == 1
    source = source.replace('REPO_URL = ""', f"REPO_URL = {repo_url!r}")
    installed = sys.modules["dex4d_jax"]
    calls = []

    def fake_check_call(argv, **kwargs):
        calls.append(list(argv))
        sys.modules["dex4d_jax"] = installed

    monkeypatch.setitem(sys.modules, "dex4d_jax", None)  # `import dex4d_jax` raises ImportError
    monkeypatch.setattr(subprocess, "check_call", fake_check_call)
    monkeypatch.chdir(cwd)
    exec(compile(source, "install cell", "exec"), {})  # noqa: S102
    return calls


def test_install_cell_without_repo_url_says_what_to_set(monkeypatch, tmp_path, capsys):
    with pytest.raises(RuntimeError, match="REPO_URL"):
        _run_install_cell(monkeypatch, tmp_path)


def test_install_cell_installs_repo_url_or_the_clone(monkeypatch, tmp_path, capsys):
    calls = _run_install_cell(monkeypatch, tmp_path, "https://example.org/dex4d-jax.git")
    assert calls == [[sys.executable, "-m", "pip", "install", "-q",
                      "dex4d-jax[notebook] @ git+https://example.org/dex4d-jax.git"]]
    calls = _run_install_cell(monkeypatch, FOLDER, "https://example.org/dex4d-jax.git")
    assert calls == [[sys.executable, "-m", "pip", "install", "-q", f"{ROOT}[notebook]"]]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """One folder for all notebooks, and a kernelspec `python3` running this interpreter."""
    skip_without_gl()  # every notebook renders (MuJoCo offscreen)
    root = tmp_path_factory.mktemp("notebooks")
    spec = root / "jupyter" / "kernels" / "python3"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (dex4d-jax tests)", "language": "python"}))
    work = root / "work"
    work.mkdir()
    return root


def _failure(nb, name: str, err: Exception) -> str:
    """The failing cell's number, error and the end of its printed output."""
    for i, cell in enumerate(nb.cells):
        outputs = cell.get("outputs", [])
        if any(o.output_type == "error" for o in outputs):
            printed = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
            return (f"{name}: cell {i} failed.\n--- its output (end) ---\n{printed[-4000:]}\n"
                    f"--- error ---\n{_ANSI.sub('', str(err))}")
    return f"{name}: {_ANSI.sub('', str(err))}"


@pytest.mark.slow
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs(name, workdir, monkeypatch):
    nb = _read(name)
    xla_flags = os.environ.get("XLA_FLAGS", "")
    if "xla_backend_optimization_level" not in xla_flags:
        xla_flags = f"{xla_flags} {_FAST_COMPILE}".strip()
    env = {**os.environ, "DEX4D_NOTEBOOK_CI": "1", "DEX4D_JAX_CACHE": _CACHE,
           "XLA_FLAGS": xla_flags, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}
    monkeypatch.setenv("JUPYTER_PATH", str(workdir / "jupyter"))  # finds our python3 first
    client = NotebookClient(nb, kernel_name="python3", timeout=CELL_TIMEOUT_S,
                            startup_timeout=120,
                            resources={"metadata": {"path": str(workdir / "work")}})
    start = time.time()
    try:
        client.execute(env=env)
    except CellExecutionError as err:
        pytest.fail(_failure(client.nb, name, err), pytrace=False)
    finally:
        keep = os.environ.get("DEX4D_NOTEBOOK_OUTPUTS")
        if keep:
            os.makedirs(keep, exist_ok=True)
            nbformat.write(copy.deepcopy(client.nb), os.path.join(keep, name))
    print(f"{name}: {time.time() - start:.0f} s")
