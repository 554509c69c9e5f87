"""The ``modelexport`` command: ``commands`` (export, recommend, zoo, gate), ``file_tools``
(analyze, validate, extract, profile, ...) and ``args`` (typed argument parsers)."""

from modelexport.cli.commands import EXIT_OK, EXIT_PARITY_FAILED, EXIT_USER_ERROR, main

__all__ = ["EXIT_OK", "EXIT_PARITY_FAILED", "EXIT_USER_ERROR", "main"]
