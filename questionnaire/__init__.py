"""The adaptive investigation questionnaire: question bank, answer scoring, interview engine, service,
call adapter and applicant simulator. Entry point: :class:`callvet.questionnaire.service.InterviewService`."""

__all__: list[str] = []
