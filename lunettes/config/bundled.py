"""The default configuration shipped inside the package (``lunettes.configs``).

In the repository it is ``configs/``; the build maps that directory into the package
(pyproject.toml, setup.py), so a wheel and an editable install read the same files.
"""

from __future__ import annotations

import shutil
from importlib import resources
from pathlib import Path

CONFIG_FILES = ("pipeline.yaml", "stages.yaml", "diagnosis.yaml", "slo.yaml")


def bundled_config_dir() -> Path:
    """The directory of the shipped configuration files (a real directory: lunettes is
    installed unzipped, as pip does)."""
    try:
        root = resources.files("lunettes.configs")
    except ModuleNotFoundError:
        # An editable install made before configs/ was mapped into the package: its
        # import finder knows only lunettes/. `pip install -e .` again makes this unused.
        checkout = Path(__file__).resolve().parents[2] / "configs"
        if not (checkout / "pipeline.yaml").is_file():
            raise
        return checkout
    if not isinstance(root, Path):
        raise RuntimeError(f"lunettes.configs is not a directory on disk: {root}")
    return root


def write_copy(target: Path, overwrite: bool = False) -> list[Path]:
    """Copy the shipped configuration files into ``target`` (created if missing) for
    editing; refuse to replace existing files unless ``overwrite``. Returns the files."""
    source = bundled_config_dir()
    existing = [target / name for name in CONFIG_FILES if (target / name).exists()]
    if existing and not overwrite:
        raise FileExistsError(", ".join(str(path) for path in existing))
    target.mkdir(parents=True, exist_ok=True)
    return [Path(shutil.copyfile(source / name, target / name)) for name in CONFIG_FILES]
