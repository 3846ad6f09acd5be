"""The package list, which pyproject.toml alone cannot express: lunettes and its
subpackages (with or without ``__init__.py``), plus lunettes.configs mapped from configs/
(see pyproject.toml)."""

from setuptools import find_namespace_packages, setup

setup(packages=[*find_namespace_packages(include=["lunettes", "lunettes.*"]),
                "lunettes.configs"])
