"""Task forms: what a person completing a user task may and must send.

The shipped processes declare them in ``processes/forms.json`` beside the BPMN files (process key ->
user task element -> form). A form is a flat list of typed fields (``string``, ``number``, ``integer``,
``boolean``, ``array`` of strings) with ``required``, ``enum``, ``minimum``/``maximum``, ``maxLength``
and ``maxItems``. Completion data with an unknown field (a misspelt ``review_decison``), a missing
required one or a value outside the form is refused with :class:`InvalidInput` naming the field, before
anything about the task changes. A task without a declared form (uploaded processes) is not checked.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from callvet.core.errors import InvalidInput

__all__ = ["form_for", "validate_completion"]

FORMS_FILE = Path(__file__).resolve().parent / "processes" / "forms.json"
_TYPES: dict[str, tuple[type, ...]] = {"string": (str,), "number": (int, float), "integer": (int,),
                                       "boolean": (bool,), "array": (list,)}


@lru_cache(maxsize=1)
def _catalogue() -> dict[str, Any]:
    return json.loads(FORMS_FILE.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def form_for(process_key: str, element: str) -> dict[str, Any] | None:
    cat = _catalogue()
    name = (cat["tasks"].get(process_key) or {}).get(element)
    if name is None:
        return None
    return {"name": name, **cat["forms"][name]}


def _bad(field: str, message: str, form: dict[str, Any]) -> InvalidInput:
    return InvalidInput(f"{field}: {message}", code="invalid_field", field=field, form=form["name"],
                        allowed_fields=sorted(form["fields"]))


def validate_completion(process_key: str, element: str, data: dict[str, Any]) -> None:
    form = form_for(process_key, element)
    if form is None:
        return
    fields: dict[str, Any] = form["fields"]
    for key in data:
        if key not in fields:
            raise _bad(key, f"not a field of the {form['name']} form; allowed: {', '.join(sorted(fields))}",
                       form)
    for key, spec in fields.items():
        if key not in data or data[key] is None:
            if spec.get("required"):
                raise _bad(key, "is required" + (f" (one of {', '.join(spec['enum'])})"
                                                if spec.get("enum") else ""), form)
            continue
        v = data[key]
        kind = spec["type"]
        if not isinstance(v, _TYPES[kind]) or (kind in ("number", "integer") and isinstance(v, bool)):
            raise _bad(key, f"must be a {kind}", form)
        if "enum" in spec and v not in spec["enum"]:
            raise _bad(key, f"must be one of {', '.join(map(str, spec['enum']))}; got {str(v)[:50]!r}", form)
        if "minimum" in spec and v < spec["minimum"]:
            raise _bad(key, f"must be >= {spec['minimum']}", form)
        if "maximum" in spec and v > spec["maximum"]:
            raise _bad(key, f"must be <= {spec['maximum']}", form)
        if "maxLength" in spec and len(v) > spec["maxLength"]:
            raise _bad(key, f"must be at most {spec['maxLength']} characters", form)
        if kind == "array":
            if len(v) > spec.get("maxItems", 100):
                raise _bad(key, f"must have at most {spec.get('maxItems', 100)} items", form)
            if not all(isinstance(x, str) and len(x) <= 100 for x in v):
                raise _bad(key, "items must be strings of at most 100 characters", form)
