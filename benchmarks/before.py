"""An earlier commit's ``rtbwe`` importable next to the working tree's, for before/after timings
in one process (issue 14).

    from before import load_package, submodule
    old = load_package("933c42f")          # the package as it was at that commit
    bwe = submodule(old, "processor").BandwidthExtender("default", backend="onnx")

The commit's ``rtbwe/`` and ``kernels/`` (``git archive``) are unpacked into a temporary
folder as a package named ``rtbwe_<commit>`` (``kernels/`` becomes its ``kernels``
sub-package, as ``pyproject.toml`` maps it), whose ``weights`` folder is a link to the working
tree's, so both load the same model cards. Its Numba kernels compile into the usual cache under
their own module name. ``rtbwe`` imports itself relatively throughout, except the lazy names
of ``rtbwe/__init__.py`` (``rtbwe.BandwidthExtender`` imports ``rtbwe.processor`` by its
absolute name): so reach the old package's modules with :func:`submodule`, never through its
top-level attributes.
"""
from __future__ import annotations

import atexit
import importlib
import io
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[1]


def load_package(commit: str, folder: Path | None = None) -> ModuleType:
    """Import ``rtbwe`` as of ``commit`` (any name ``git rev-parse`` knows) as a separate
    package; returns it. ``folder``: where to unpack (default: a temporary folder,
    removed at exit)."""
    sha = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", commit],
                         capture_output=True, text=True, check=True).stdout.strip()
    name = f"rtbwe_{sha}"
    if name in sys.modules:
        return sys.modules[name]
    if folder is None:
        folder = Path(tempfile.mkdtemp(prefix="rtbwe-before-"))
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
    folder = Path(folder)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", sha, "rtbwe", "kernels"],
                             capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(folder / "src", filter="data")
    package = folder / name
    (folder / "src" / "rtbwe").rename(package)
    (folder / "src" / "kernels").rename(package / "kernels")
    weights = package / "weights"
    if weights.exists():
        for item in weights.iterdir():
            item.unlink()
        weights.rmdir()
    weights.symlink_to(REPO / "rtbwe" / "weights", target_is_directory=True)
    sys.path.insert(0, str(folder))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(folder))


def submodule(package: ModuleType, name: str) -> ModuleType:
    """``package.<name>`` imported from the earlier package's own files (checked)."""
    module = importlib.import_module(f"{package.__name__}.{name}")
    if not module.__name__.startswith(package.__name__ + "."):
        raise RuntimeError(f"{module.__name__} is not part of {package.__name__}")
    return module
