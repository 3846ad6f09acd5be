"""Configuration loading and validation shared by every component factory."""

from lunettes.config.errors import ConfigError, Section, read_yaml

__all__ = ["ConfigError", "Section", "read_yaml"]
