"""The ``lunettes`` command line."""
