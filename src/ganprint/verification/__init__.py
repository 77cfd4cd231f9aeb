"""Checking images against a decoder export (floor 3, beside the methods, whose exports it reads): the in-memory
`Detector` behind `ganprint.load_detector` and `ganprint check` (`detector`). Its ONNX path imports no torch."""
