"""The package list, which pyproject.toml alone cannot express: lunettes and its
subpackages, plus lunettes.configs mapped from configs/ (see pyproject.toml)."""

from setuptools import find_packages, setup

setup(packages=[*find_packages(include=["lunettes", "lunettes.*"]), "lunettes.configs"])
