"""Simulators shipped for development and benchmarks, outside the runtime packages (no runtime part
imports them; import-linter checks it): :mod:`callvet.sim.population` (seeded applications),
:mod:`callvet.sim.questionnaire` (callers who answer interviews), :mod:`callvet.sim.decision` (a
population with outcomes for the decision engine).
"""

__all__: list[str] = []
