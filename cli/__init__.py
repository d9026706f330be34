"""callvet: voice-first investigation service for card and instalment-loan approval.

The import package maps the product's top-level folders as subpackages: ``callvet.voice`` (voice/),
``callvet.questionnaire``, ``callvet.decision``, ``callvet.workflow``, ``callvet.api``,
``callvet.models`` and the small shared ``callvet.core`` (settings, storage, keys, audit).
"""

__all__ = ["__version__"]

__version__ = "0.1.0"
