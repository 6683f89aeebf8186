"""Bytecode in the Lambda package, so a cold start imports instead of compiling.

Lambda's /var/task is read-only and `chalice package` ships no `.pyc`, so every cold start compiled
every module it imported (378-458 ms for `import app` here; 122-130 ms with bytecode:
../shared/notes/lambda-sqs-limits.md). The build copy of the app (infra/deploy.py's
prepare_build_dir) therefore gets, before Chalice zips it:

- the runtime requirements installed into `vendor/` (Chalice ships vendor/ as it is, at the zip's
  root) instead of left to Chalice, whose pip install writes no bytecode; requirements.txt in the
  copy is emptied so nothing is installed twice;
- a `__pycache__` beside every module of chalicelib/ and vendor/, app.py's as
  vendor/__pycache__/app.<tag>.pyc (it lands next to app.py in the zip), and Chalice's own two
  files' (chalice/app.py, chalice/__init__.py) the same way.

The pycs are `unchecked-hash` (PEP 552): never compared with their source, which an immutable
package wants. They are only valid for the Python that wrote them (the magic number and the
`cpython-311` tag): Chalice sets the functions' runtime from the interpreter it runs on, and
`check_runtime` fails a deploy or package whose runtime is not the one compiled for. (A mismatch
would not break anything, another Python ignores them, but every cold start would compile again.)
"""

from __future__ import annotations

import compileall
import importlib.util
import inspect
import py_compile
import shutil
import subprocess
import sys
from pathlib import Path

#: The Lambda runtime this interpreter compiles for.
RUNTIME = f"python{sys.version_info.major}.{sys.version_info.minor}"
#: Lambda's architecture (Chalice's default): wheels are chosen for it, not for the build machine.
PLATFORM = "manylinux2014_x86_64"
UNCHECKED = py_compile.PycInvalidationMode.UNCHECKED_HASH


class RuntimeMismatch(RuntimeError):
    """The functions run another Python than the one the package's bytecode was compiled for."""


def vendor_requirements(build_dir: Path) -> None:
    """Install the copy's requirements.txt into vendor/ (wheels for Lambda's platform and Python),
    then empty requirements.txt so Chalice installs nothing itself."""
    requirements = build_dir / "requirements.txt"
    vendor = build_dir / "vendor"
    subprocess.run(
        [
            *(sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-compile"),
            *("--target", str(vendor), "--requirement", str(requirements)),
            *("--only-binary=:all:", "--platform", PLATFORM, "--implementation", "cp"),
            *("--python-version", f"{sys.version_info.major}.{sys.version_info.minor}"),
        ],
        check=True,
        stdout=sys.stderr,
    )
    shutil.rmtree(vendor / "bin", ignore_errors=True)  # console scripts, with this machine's shebangs
    requirements.write_text("# installed into vendor/ with bytecode by infra/bytecode.py\n")


def compile_package(build_dir: Path) -> int:
    """Write unchecked-hash bytecode for every module the package ships; returns how many files."""
    vendor = build_dir / "vendor"
    vendor.mkdir(exist_ok=True)
    for tree in (build_dir / "chalicelib", vendor):
        if not compileall.compile_dir(tree, quiet=1, invalidation_mode=UNCHECKED, workers=0):
            raise RuntimeError(f"cannot compile {tree}")
    import chalice
    import chalice.app

    # Files Chalice puts in the zip from outside vendor/: their pycs go where they will sit.
    for source, target in (
        (build_dir / "app.py", vendor / "app.py"),
        (Path(inspect.getfile(chalice.app)), vendor / "chalice" / "app.py"),
        (Path(inspect.getfile(chalice)), vendor / "chalice" / "__init__.py"),
    ):
        cfile = importlib.util.cache_from_source(str(target))
        py_compile.compile(str(source), cfile=cfile, doraise=True, invalidation_mode=UNCHECKED)
    return sum(1 for _ in build_dir.rglob("*.pyc"))


def check_runtime(runtime: str) -> None:
    """Raise RuntimeMismatch unless the functions' runtime is the one the bytecode is for."""
    if runtime != RUNTIME:
        raise RuntimeMismatch(
            f"the functions run {runtime} but the package's bytecode is for {RUNTIME}: "
            f"run the deploy with {runtime}'s interpreter (Chalice takes the runtime from the one it runs on)"
        )
