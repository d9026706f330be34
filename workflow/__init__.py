"""Approval workflows: BPMN processes run durably, human tasks, supervision (docs/workflow.md). The
runtime is built by the composition root (:attr:`callvet.services.Services.workflow`)."""

__all__: list[str] = []
