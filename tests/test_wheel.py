"""The built wheel works on its own: installed into a fresh virtual environment (the
dependencies come from the system site-packages, lunettes itself only from the wheel), it
replays the bundled sample from an unrelated directory with the shipped configuration,
and ``init-config`` writes a copy that validates."""

from __future__ import annotations

import ast
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

from lunettes.config.bundled import CONFIG_FILES

ROOT = Path(__file__).resolve().parents[1]


def run(argv: list[str | Path], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "LUNETTES_CONFIG")}
    done = subprocess.run([str(a) for a in argv], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, f"{argv}: exit {done.returncode}\n{done.stdout}{done.stderr}"
    return done


def test_wheel_replays_the_sample_from_another_directory(tmp_path: Path) -> None:
    # From a clean copy: a checkout's build/ and *.egg-info left by earlier builds can
    # hold stale file lists. No build isolation: the build backend comes from the test
    # environment (the test extra), so the test needs no package index.
    source = tmp_path / "src"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", "build", "dist", "*.egg-info", ".*cache", "__pycache__", ".hypothesis",
        ".benchmarks", "test-artifacts", "*.db", "tests"))
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--wheel-dir", tmp_path / "dist", source], cwd=tmp_path)
    (wheel,) = (tmp_path / "dist").glob("lunettes-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"lunettes/configs/{name}" for name in CONFIG_FILES} <= names
    modules = {str(p.relative_to(ROOT)) for p in (ROOT / "lunettes").rglob("*.py")
               if "__pycache__" not in p.parts}
    assert modules - names == set()  # every module, namespace packages' too
    assert "lunettes/data/sample-audit.jsonl.gz" in names

    env_dir = tmp_path / "venv"
    venv.create(env_dir, system_site_packages=True, with_pip=False)
    python = env_dir / "bin" / "python"
    # An editable install of lunettes in the system site-packages (a development
    # checkout) adds an import hook there: drop it, so a module missing from the wheel
    # cannot be found in the checkout instead.
    site_packages = next(env_dir.glob("lib/python*/site-packages"))
    (site_packages / "sitecustomize.py").write_text(
        "import sys\n"
        "sys.meta_path[:] = [f for f in sys.meta_path\n"
        "                    if not getattr(f, '__module__', '').startswith('__editable__')]\n"
        "sys.path_hooks[:] = [h for h in sys.path_hooks\n"
        "                     if not getattr(h, '__module__', '').startswith('__editable__')]\n"
        "sys.path[:] = [p for p in sys.path if not p.startswith('__editable__')]\n")
    run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps",
         "--no-index", "--quiet", wheel], cwd=tmp_path)

    work = tmp_path / "elsewhere"
    work.mkdir()
    where = json.loads(run([python, "-c", (
        "import json, lunettes; from lunettes.pipeline import DEFAULT_CONFIG_DIR as d; "
        "from importlib.resources import files; "
        "print(json.dumps([lunettes.__file__, str(d), "
        "str(files('lunettes') / 'data' / 'sample-audit.jsonl.gz')]))")], cwd=work).stdout)
    package, config_dir, sample = (Path(p) for p in where)
    assert package.is_relative_to(env_dir), package  # the wheel's copy, not the checkout
    assert config_dir == package.parent / "configs", config_dir

    lunettes = env_dir / "bin" / "lunettes"
    # The replay, then: every lunettes module it loaded came from the wheel (none from a
    # checkout an editable install elsewhere on the system may point at).
    done = run([python, "-c", (
        "import sys; from lunettes.cli.main import main; "
        f"code = main(['replay', {str(sample)!r}, '--format', 'none']); "
        "print([m.__file__ for n, m in list(sys.modules.items()) "
        "if n.split('.')[0] == 'lunettes' and getattr(m, '__file__', None)]); "
        "sys.exit(code)")], cwd=work)
    assert "300 pods" in done.stderr, done.stderr  # the sample's documented Pod count
    loaded = [Path(f) for f in ast.literal_eval(done.stdout)]
    assert len(loaded) > 20 and all(f.is_relative_to(env_dir) for f in loaded), loaded
    with sqlite3.connect(work / "lunettes.db") as db:
        assert db.execute("SELECT count(*) FROM pods").fetchone() == (300,)

    run([lunettes, "init-config", "mine"], cwd=work)
    for name in CONFIG_FILES:
        assert (work / "mine" / name).read_bytes() == (ROOT / "configs" / name).read_bytes()
    run([lunettes, "validate-config", "mine"], cwd=work)
