"""Old name of :mod:`callvet.workflow.codec` (the instance-state codec), kept so imports keep working."""

from callvet.workflow.codec import (
    SandboxScriptEngine,
    StateCodec,
    aware,
    current_data,
    next_timer,
    subject,
)

__all__ = ["SandboxScriptEngine", "StateCodec", "aware", "current_data", "next_timer", "subject"]
