"""Shared helpers for the decision tests: a credit model built once per session into a temp dir."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = json.loads((ROOT / "docs" / "contracts" / "application.example.json").read_text(encoding="utf-8"))


def example(**overrides: Any) -> dict[str, Any]:
    """The contract example with nested overrides: ``example(credit_profile={"delinquencies_24m": 4})``."""
    app = json.loads(json.dumps(EXAMPLE))
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(app.get(key), dict):
            app[key].update(value)
        else:
            app[key] = value
    return app


_BUILT: dict[str, Path] = {}


def credit_models_dir() -> Path:
    """A models dir with the credit model, trained once per test process (about 3 s)."""
    if "dir" not in _BUILT:
        import atexit
        import shutil
        import tempfile

        from callvet.models import credit

        d = Path(tempfile.mkdtemp(prefix="callvet-credit-"))
        atexit.register(shutil.rmtree, d, True)
        credit.build(d)
        _BUILT["dir"] = d
    return _BUILT["dir"]


def make_engine(db: Any) -> Any:
    from callvet.decision import DecisionEngine
    from callvet.decision.credit import CreditScorer

    return DecisionEngine(db, CreditScorer(credit_models_dir()))
