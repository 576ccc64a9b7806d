"""Exporting models to files other runtimes run: ONNX (standard operators only) and torch.export
programs. See :mod:`localmamba.export.onnx` and ``localmamba export``."""
