"""Config errors that name the path and the fix, collected so all are reported at once."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """One or more configuration problems, each a line naming ``file: path: problem``."""

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


def read_yaml(path: Path) -> Any:
    """A YAML file's content; an unreadable or malformed file is a ConfigError naming it."""
    try:
        return yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError([f"{path}: {exc}"]) from exc


def suggest(key: str, known: Iterable[str]) -> str:
    """`` (did you mean X?)`` for the closest known key, or an empty string."""
    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


class Section:
    """A mapping read from YAML, with its path for messages and a shared problem list.

    Factories read values through it (``get``/``require``); unknown keys are reported by
    ``check_unknown`` against what was read, so defaults live in one place: the factory.
    """

    def __init__(self, data: Any, path: str, problems: list[str]) -> None:
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            problems.append(f"{path}: expected a mapping, got {type(data).__name__}")
            data = {}
        self.data: Mapping[str, Any] = data
        self.path = path
        self.problems = problems
        self._read: set[str] = set()

    def join(self, key: str) -> str:
        """The path of one key: ``file: a.b`` (a path ending in ``:`` is a file name)."""
        return f"{self.path} {key}" if self.path.endswith(":") else f"{self.path}.{key}"

    def problem(self, key: str, message: str) -> None:
        """Record a problem with one key of this section."""
        self.problems.append(f"{self.join(key)}: {message}")

    def get(self, key: str, default: Any, kind: type | tuple[type, ...] | None = None) -> Any:
        """The value of ``key`` or ``default``; a value of the wrong type is a problem."""
        self._read.add(key)
        if key not in self.data:
            return default
        value = self.data[key]
        expected = kind if kind is not None else (type(default) if default is not None else None)
        if expected is float:
            expected = (int, float)
        if expected is not None and (
            not isinstance(value, expected) or (isinstance(value, bool) and expected is not bool)
        ):
            names = expected if isinstance(expected, tuple) else (expected,)
            self.problem(key, f"expected {' or '.join(t.__name__ for t in names)}, "
                              f"got {type(value).__name__} {value!r}")
            return default
        return value

    def require(self, key: str, kind: type | tuple[type, ...]) -> Any:
        """The value of a mandatory key; a missing key is a problem (returns None)."""
        if key not in self.data:
            self._read.add(key)
            self.problem(key, "missing (required)")
            return None
        return self.get(key, None, kind)

    def strings(self, key: str) -> list[str] | None:
        """A string or a list of strings as a list; None when absent or mistyped."""
        value = self.get(key, None, (str, list))
        if value is None:
            return None
        items = [value] if isinstance(value, str) else value
        if not all(isinstance(v, str) for v in items):
            self.problem(key, "expected a string or a list of strings")
            return None
        return items

    def sub(self, key: str) -> Section:
        """A nested section (an absent key gives an empty one)."""
        self._read.add(key)
        return Section(self.data.get(key), self.join(key), self.problems)

    def check_unknown(self) -> None:
        """Report every key that no ``get``/``require``/``sub`` call asked for."""
        for key in self.data:
            if key not in self._read:
                self.problem(str(key), f"unknown key{suggest(str(key), self._read)}")
