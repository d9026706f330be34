"""Build time only: the code that builds the model artifacts the service runs (torch, ONNX export).
Nothing that serves imports this package (import-linter checks it); what serving needs to know about
the artifacts is :mod:`callvet.core.artifacts`."""

__all__: list[str] = []
