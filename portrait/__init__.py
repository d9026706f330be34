"""Customer portrait: synthetic bank, seven tag dimensions as versioned definitions, propensity models
and campaign selection.

Exception tree: everything raised on purpose is a :class:`callvet.core.errors.CallvetError`
(``InvalidInput`` for a bad definition, filter or file; ``NotFound`` for an unknown customer, dimension or
version; ``Forbidden`` for maker-checker; ``Conflict`` for an invalid status change; ``Unavailable`` when no
bank or model is built).
"""

__all__: list[str] = []
