"""Investigation cases: one application carried from intake through pre-screen, the robot's call, the
investigation-outcome decision and the approval workflow to a card, a decline or a person's review.

Exceptions raised here are :mod:`callvet.core.errors` ones (``InvalidInput`` 422, ``NotFound`` 404,
``Conflict`` 409, ``Forbidden`` 403, ``Unavailable`` 503); nothing here knows HTTP.
"""

from __future__ import annotations

from callvet.cases.state import CaseStatus, QueueStatus

__all__ = ["CaseStatus", "QueueStatus"]
