"""Moved: ``grasplab report``'s documents are :mod:`grasplab.platform.report.document`."""

from grasplab.moved import moved_module

__getattr__ = moved_module(
    __name__,
    "grasplab.platform.report.document",
    elsewhere={"main": "grasplab.cli.report.main", "parse_args": "grasplab.cli.report.parser"},
)
