"""Moved: :mod:`grasplab.platform.report.readback`."""

from grasplab.moved import moved_module

__getattr__ = moved_module(__name__, "grasplab.platform.report.readback")
