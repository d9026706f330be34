"""Each package's public surface is its ``__init__``'s ``__all__``; this test is the record of it.

As httpx does: the exported names are listed here, so adding or dropping one is a visible change to
this file (a review question: "is this public now?"), and every listed name must resolve. Packages
with nothing to export yet declare an empty ``__all__`` rather than none.
"""

from __future__ import annotations

import importlib

import pytest

EXPORTS: dict[str, list[str]] = {
    "callvet": ["__version__"],
    "callvet.api": ["create_app"],
    "callvet.cases": ["CaseStatus", "QueueStatus"],
    "callvet.core": [
        "ArtifactError", "CallvetError", "Conflict", "Forbidden", "InvalidArgument", "InvalidInput",
        "NotFound", "Settings", "Unavailable", "get_settings",
    ],
    "callvet.decision": [
        "POLICY_NAMES", "Decision", "DecisionEngine", "Investigation", "Outcome", "PolicyStatus",
        "QuestionnaireResult", "Reason",
    ],
    "callvet.forms": [
        "BatchReport", "ExtractedField", "Extraction", "FormReader", "FormResult", "NormalisedPage",
        "NotAForm", "OcrEngine", "RapidOcrEngine", "Template", "TemplateSet", "TesseractEngine", "TextLine",
        "decode_image", "extract_fields", "flatten", "load_templates", "normalise_page",
        "rapidocr_model_paths", "remove_red", "run_batch",
    ],
    "callvet.api.routes": [],
    "callvet.models": [],
    "callvet.portrait": [],
    "callvet.questionnaire": [
        "AnswerOutcome", "Bank", "BankError", "InterviewEngine", "InterviewService", "InterviewState",
        "Judgement", "Question", "Validity", "Verdict", "load_bank",
    ],
    "callvet.services": ["CASE_STREAM_URL", "Services", "open_services"],
    "callvet.sim": [],
    "callvet.voice": [],
    "callvet.workflow": [],
    "callvet.voice.spoof": ["DEFAULT_FFR", "SpoofDetector", "SpoofResult", "SpoofWatch", "load_detector"],
}


@pytest.mark.parametrize("package", sorted(EXPORTS))
def test_package_exports_exactly_its_listed_names(package: str) -> None:
    module = importlib.import_module(package)
    exported = getattr(module, "__all__", None)
    assert exported is not None, f"{package} declares no __all__"
    assert sorted(exported) == sorted(EXPORTS[package]), f"{package}.__all__ changed: update EXPORTS"
    for name in exported:
        assert hasattr(module, name), f"{package}.__all__ names {name!r}, which it does not define"


def test_no_duplicates_and_error_names_are_errors() -> None:
    for package, names in EXPORTS.items():
        assert len(names) == len(set(names)), package
    core = importlib.import_module("callvet.core")
    for name in ("ArtifactError", "Conflict", "Forbidden", "InvalidArgument", "InvalidInput", "NotFound",
                 "Unavailable"):
        assert issubclass(getattr(core, name), core.CallvetError), name


def test_the_errors_outside_core_are_in_the_tree() -> None:
    """Issue 10: every error class callvet raises on purpose is a CallvetError (and those callers
    caught as ValueError still are ValueErrors)."""
    from callvet.core.errors import CallvetError, InvalidInput
    from callvet.core.outbox import PublishError
    from callvet.decision.compiler import Unsupported
    from callvet.questionnaire.bank import BankError
    from callvet.voice.index import IndexLoadError
    from callvet.workflow.sandbox import SandboxError

    for cls in (IndexLoadError, Unsupported, SandboxError, PublishError, BankError):
        assert issubclass(cls, CallvetError), cls
    for cls in (Unsupported, SandboxError, BankError):
        assert issubclass(cls, ValueError), cls
    assert issubclass(SandboxError, InvalidInput)
    assert SandboxError("x").code == "script_refused" and IndexLoadError("x").code == "index_unreadable"
