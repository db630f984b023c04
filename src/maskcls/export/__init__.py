"""A trained run as one self-describing ONNX file, and the torch-free runtime that predicts with it.

``graph`` and ``onnx_export`` (torch) build and write the model; ``metadata`` and ``runtime`` (numpy +
onnxruntime only) read it. Nothing here is imported by this ``__init__``, so the runtime never pulls
torch in.
"""
