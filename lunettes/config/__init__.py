"""Configuration loading and validation shared by every component factory."""

from lunettes.config.errors import ConfigError, Section

__all__ = ["ConfigError", "Section"]
