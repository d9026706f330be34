"""Simulators shipped for development and benchmarks, outside the runtime packages (no runtime part
imports them; import-linter checks it): :mod:`callvet.sim.population` (seeded applications),
:mod:`callvet.sim.questionnaire` (callers who answer interviews), :mod:`callvet.sim.decision` (a
population with outcomes for the decision engine), :mod:`callvet.sim.workflow` (a scripted decider and
applications for the workflow's own benchmarks and crash tests), :mod:`callvet.sim.calls` (a call
robot streaming a recording over Twilio Media Streams or mod_audio_fork).
"""

__all__: list[str] = []
