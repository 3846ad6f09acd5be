"""The default configuration, shipped inside the package as ``lunettes.configs``."""
