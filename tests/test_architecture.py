"""The import rules and file-shape rules of ../shared/DESIGN.md, run with the test suite.

- ruff's PLC0415 (imports at the top of a file) with the per-file exceptions of pyproject.toml;
- import-linter's contracts of pyproject.toml: forbidden imports, protected modules, layers
  and no cycles;
- ``robust_mnist.rundir`` imports only ``robust_mnist.errors``, numpy, pandas and pyarrow;
- every module opens with a docstring and stays under :data:`MAX_LINES` lines;
- ``import robust_mnist`` and ``robust-mnist --help`` load no heavy library.

Each rule runs the real tool in a subprocess and shows its report when the rule is broken.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "robust_mnist"
MODULES = sorted(PACKAGE.rglob("*.py"))

#: Past this many lines a file holds two concerns (DESIGN.md).
MAX_LINES = 700
#: The only third-party libraries the run-directory format may use.
RUNDIR_THIRD_PARTY = {"numpy", "pandas", "pyarrow"}
#: Libraries that `import robust_mnist` and `robust-mnist --help` must not load.
HEAVY = ("tensorflow", "keras", "numba", "pandas", "pyarrow", "scipy", "matplotlib", "dask", "onnxruntime")


def run_tool(*argv: str) -> subprocess.CompletedProcess:
    """Run ``python argv...`` at the repository root (where pyproject.toml configures it)."""
    return subprocess.run(
        [sys.executable, *argv], cwd=REPO, capture_output=True, text=True, timeout=300
    )


def relative(path: Path) -> str:
    return str(path.relative_to(REPO))


def test_imports_sit_at_the_top_of_files():
    result = run_tool("-m", "ruff", "check", "--no-cache", "--select", "PLC0415",
                      "--output-format", "concise", "robust_mnist")
    assert result.returncode == 0, (
        "imports inside functions (only TensorFlow/Keras, Dask and the commands' lazy "
        "loading may do that; see [tool.ruff] in pyproject.toml):\n" + result.stdout + result.stderr
    )


def test_import_contracts_hold():
    result = run_tool(
        "-c",
        "from importlinter.cli import lint_imports_command; "
        "lint_imports_command.main(['--no-cache', '--no-logo', 'pyproject.toml'], prog_name='lint-imports')",
    )
    assert result.returncode == 0, (
        "an import breaks the architecture (see [tool.importlinter] in pyproject.toml):\n"
        + result.stdout + result.stderr
    )


def imported_modules(path: Path) -> set[str]:
    """Absolute names of the modules a file imports, relative imports resolved."""
    package = relative(path.with_suffix("")).replace("/", ".").rsplit(".", 1)[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                names.add(f"{base}.{node.module}" if node.module else base)
            elif node.module != "__future__":
                names.add(node.module)
    return names


def test_rundir_imports_only_errors_numpy_pandas_and_pyarrow():
    imports = imported_modules(PACKAGE / "rundir.py")
    internal = {name for name in imports if name.split(".")[0] == "robust_mnist"}
    external = {name.split(".")[0] for name in imports} - {"robust_mnist"}
    assert internal <= {"robust_mnist.errors"}, f"rundir imports {sorted(internal)}"
    third_party = external - set(sys.stdlib_module_names)
    assert third_party <= RUNDIR_THIRD_PARTY, f"rundir imports {sorted(third_party)}"


@pytest.mark.parametrize("path", MODULES, ids=relative)
def test_module_opens_with_a_docstring_and_stays_small(path):
    text = path.read_text()
    tree = ast.parse(text)
    docstring = ast.get_docstring(tree)
    assert docstring and docstring.strip(), f"{relative(path)} does not open with a docstring saying its concern"
    lines = len(text.splitlines())
    assert lines <= MAX_LINES, f"{relative(path)} has {lines} lines (> {MAX_LINES}): two concerns?"


def test_package_import_and_help_load_no_heavy_library():
    code = (
        "import sys, contextlib, io\n"
        "import robust_mnist, robust_mnist.cli\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "    robust_mnist.cli.main(['--help'])\n"
        f"print(' '.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    result = run_tool("-c", code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"loaded by `robust-mnist --help`: {result.stdout.strip()}"


def test_public_api_is_lazy_and_complete():
    code = (
        "import sys, robust_mnist\n"
        "assert 'robust_mnist.perturbations' not in sys.modules\n"
        "for name in robust_mnist.__all__:\n"
        "    assert getattr(robust_mnist, name) is not None, name\n"
        "assert callable(robust_mnist.perturb)\n"
        "print('ok')\n"
    )
    result = run_tool("-c", code)
    assert result.stdout.strip() == "ok", result.stderr
