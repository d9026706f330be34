"""What the case service needs from the workflow and the questionnaire, as Protocols.

``cases`` and ``workflow`` are sibling layers that must not import each other (issue 10's layer
contract), so the case service names the few runtime and interview-store calls it makes here and the
composition root hands it the real objects (``WorkflowRuntime``, ``InterviewService``).
"""

from __future__ import annotations

from typing import Any, Protocol

__all__ = ["CaseInterviews", "CaseWorkflow"]


class CaseWorkflow(Protocol):
    """The workflow runtime calls a case makes: start its instance, read it, deliver the call result."""

    def start(
        self,
        process_key: str,
        data: dict[str, Any],
        *,
        actor: str,
        version: int | None = None,
        run: bool = True,
        instance_id: str | None = None,
        detail: bool = False,
    ) -> dict[str, Any]: ...

    def summary(self, instance_id: str, *, with_events: bool = False) -> dict[str, Any]: ...

    def deliver_message(
        self, instance_id: str, name: str, payload: dict[str, Any], *, actor: str, detail: bool = False
    ) -> dict[str, Any]: ...


class CaseInterviews(Protocol):
    """The interview store calls a case makes: open the interview its call runs, read its state."""

    def get(self, interview_id: str, *, include_answers: bool = True) -> dict[str, Any]: ...

    def create(
        self, application: Any, *, language: str | None = None, actor: str = "system"
    ) -> dict[str, Any]: ...
