"""Simulators shipped for development and benchmarks, outside the runtime packages."""
