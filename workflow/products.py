"""Product and priority configuration, kept in the database and changeable without a deploy.

The shipped defaults (``products/products.yaml`` and :data:`DEFAULT_PRIORITY`) are written to
``wf_config`` on first start; after that the database copy is the truth. Every change is validated
(a malformed band table is a 422, never a half-applied config), versioned and audited. The
``product.configure`` handler reads the current version when an instance starts, so a change alters the
path of new instances while running ones keep the band they were given.

Product rules that must hold before an instance is even stored (the application contract, a known
instalment product, an amount inside its bands) are *start hooks* (:func:`start_hooks`), keyed by
process, so the runtime knows no process key by name.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from callvet.core.audit import record
from callvet.core.db import Database, utcnow
from callvet.core.errors import InvalidInput, NotFound
from callvet.workflow.handlers import HandlerCall, validate_application
from callvet.workflow.tables import wf_config
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from sqlalchemy import Connection, insert, select, update

__all__ = [
    "DEFAULT_PRIORITY",
    "ConfigStore",
    "PriorityConfig",
    "ProductsConfig",
    "StartHook",
    "configure_handler",
    "priority",
    "start_hooks",
]

PRODUCTS_FILE = Path(__file__).resolve().parent / "products" / "products.yaml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Band(_Strict):
    max_amount: float = Field(gt=0)
    calls: int = Field(ge=0, le=5)
    review_levels: int = Field(ge=0, le=3)
    auto_approve: bool
    documents: list[str] = Field(default_factory=list)


class LoanProduct(_Strict):
    title: str
    bands: list[Band] = Field(min_length=1)

    @model_validator(mode="after")
    def _ascending(self) -> LoanProduct:
        maxes = [b.max_amount for b in self.bands]
        if maxes != sorted(maxes) or len(set(maxes)) != len(maxes):
            raise ValueError("bands must have strictly ascending max_amount")
        return self


class CardConfig(_Strict):
    review_deadline: str = "P3D"
    auto_issue_max: float = Field(default=50000, gt=0)


class LimitConfig(_Strict):
    auto_increase_max: float = Field(default=20000, ge=0)
    review_deadline: str = "P2D"


class ProductsConfig(_Strict):
    card: CardConfig = Field(default_factory=CardConfig)
    limit_adjustment: LimitConfig = Field(default_factory=LimitConfig)
    instalment: dict[str, LoanProduct]


class PriorityConfig(_Strict):
    """priority = amount_weight * log10(1 + amount / amount_unit) + risk_weight * risk_score
    + deadline_weight * clamp(1 - hours_left / deadline_horizon_hours, 0, 2)
    + wait_weight * min(waiting_hours / 24, wait_cap_days)."""

    amount_weight: float = 10.0
    amount_unit: float = Field(default=1000.0, gt=0)
    risk_weight: float = 40.0
    deadline_weight: float = 30.0
    deadline_horizon_hours: float = Field(default=24.0, gt=0)
    wait_weight: float = 5.0
    wait_cap_days: float = Field(default=5.0, ge=0)
    reminder_before_hours: float = Field(default=4.0, ge=0)


DEFAULT_PRIORITY = PriorityConfig()

_MODELS: dict[str, type[BaseModel]] = {"products": ProductsConfig, "priority": PriorityConfig}


def _hours(delta_seconds: float) -> float:
    return delta_seconds / 3600.0


def priority(
    cfg: PriorityConfig,
    *,
    amount: float | None,
    risk_score: float | None,
    due_at: datetime | None,
    created_at: datetime,
    now: datetime,
) -> float:
    """The documented formula (see :class:`PriorityConfig`); higher means more urgent."""
    amount_term = cfg.amount_weight * math.log10(1 + max(amount or 0.0, 0.0) / cfg.amount_unit)
    risk_term = cfg.risk_weight * min(max(risk_score or 0.0, 0.0), 1.0)
    deadline_term = 0.0
    if due_at is not None:
        left = _hours((due_at - now).total_seconds())
        deadline_term = cfg.deadline_weight * min(max(1 - left / cfg.deadline_horizon_hours, 0.0), 2.0)
    waiting = _hours((now - created_at).total_seconds())
    wait_term = cfg.wait_weight * min(max(waiting, 0.0) / 24.0, cfg.wait_cap_days)
    return round(amount_term + risk_term + deadline_term + wait_term, 4)


class ConfigStore:
    """Versioned JSON documents in ``wf_config`` (``products``, ``priority``), cached by version."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._cache: dict[str, tuple[int, BaseModel]] = {}

    def ensure_defaults(self) -> None:
        defaults = {
            "products": yaml.safe_load(PRODUCTS_FILE.read_text(encoding="utf-8")),
            "priority": DEFAULT_PRIORITY.model_dump(),
        }
        with self.db.begin() as conn:
            for key, value in defaults.items():
                if conn.execute(select(wf_config.c.key).where(wf_config.c.key == key)).first() is None:
                    conn.execute(
                        insert(wf_config).values(
                            key=key, value=value, version=1, updated_at=utcnow(), updated_by="system"
                        )
                    )

    @staticmethod
    def validate(key: str, value: Any) -> BaseModel:
        model = _MODELS.get(key)
        if model is None:
            raise NotFound(f"no configuration {key!r}; one of {', '.join(_MODELS)}")
        try:
            return model.model_validate(value)
        except ValidationError as exc:
            errs = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:10]]
            raise InvalidInput(
                f"invalid {key} configuration: " + "; ".join(errs), code="invalid_config", errors=errs
            ) from None

    def set(self, key: str, value: Any, *, actor: str) -> int:
        model = self.validate(key, value)
        with self.db.begin() as conn:
            row = conn.execute(select(wf_config.c.version).where(wf_config.c.key == key)).first()
            version = (row.version if row else 0) + 1
            doc = model.model_dump()
            if row is None:
                conn.execute(
                    insert(wf_config).values(
                        key=key, value=doc, version=version, updated_at=utcnow(), updated_by=actor
                    )
                )
            else:
                conn.execute(
                    update(wf_config)
                    .where(wf_config.c.key == key)
                    .values(value=doc, version=version, updated_at=utcnow(), updated_by=actor)
                )
            record(conn, actor, "workflow.config.set", "wf_config", key, details={"version": version})
        return version

    def get_raw(self, key: str, conn: Connection | None = None) -> tuple[int, dict[str, Any]]:
        stmt = select(wf_config.c.version, wf_config.c.value).where(wf_config.c.key == key)
        if conn is not None:
            row = conn.execute(stmt).first()
        else:
            with self.db.connect() as c:
                row = c.execute(stmt).first()
        if row is None:
            raise NotFound(f"configuration {key!r} is not set")
        return int(row.version), row.value

    def get(self, key: str, conn: Connection | None = None) -> Any:
        return self.get_versioned(key, conn)[1]

    def get_versioned(self, key: str, conn: Connection | None = None) -> tuple[int, Any]:
        """(version, validated model); the model is re-validated only when the version changed."""
        hit = self._cache.get(key)
        if hit is not None:
            stmt = select(wf_config.c.version).where(wf_config.c.key == key)
            if conn is not None:
                current = conn.execute(stmt).scalar()
            else:
                with self.db.connect() as c:
                    current = c.execute(stmt).scalar()
            if current == hit[0]:
                return hit  # the version alone is read while it is unchanged, not the document
        version, value = self.get_raw(key, conn)
        model = self.validate(key, value)
        self._cache[key] = (version, model)
        return version, model


def configure_handler(store: ConfigStore) -> Any:
    """The ``product.configure`` service-task handler bound to ``store``."""

    def run(call: HandlerCall) -> dict[str, Any]:
        version, cfg = store.get_versioned("products", call.conn)
        data = call.data
        app = data.get("application") or {}
        out: dict[str, Any] = {"config_version": version}
        if call.process_key == "limit_adjustment":
            out.setdefault("auto_increase_max", cfg.limit_adjustment.auto_increase_max)
            out["review_deadline"] = data.get("review_deadline") or cfg.limit_adjustment.review_deadline
            out["amount"] = float(data.get("requested_limit") or 0)
            return out
        if call.process_key == "instalment_loan":
            product = data.get("product")
            if product not in cfg.instalment:
                raise InvalidInput(
                    f"unknown instalment product {product!r}; one of {', '.join(cfg.instalment)}",
                    code="unknown_product",
                )
            amount = float(data.get("amount") or 0)
            bands = cfg.instalment[product].bands
            idx = next((i for i, b in enumerate(bands) if amount <= b.max_amount), None)
            if idx is None or amount <= 0:
                raise InvalidInput(
                    f"amount {amount} outside the bands of {product} (max {bands[-1].max_amount})",
                    code="amount_out_of_band",
                )
            b = bands[idx]
            out.update(
                band=idx,
                calls_required=b.calls,
                review_levels=b.review_levels,
                auto_approve=b.auto_approve,
                documents_required=list(b.documents),
                calls_done=0,
            )
            return out
        out["review_deadline"] = data.get("review_deadline") or cfg.card.review_deadline
        out["amount"] = float(app.get("requested_limit") or 0)
        out["auto_issue_max"] = cfg.card.auto_issue_max
        return out

    return run


StartHook = Callable[[dict[str, Any]], None]
"""Checks an instance's start data (raising :class:`InvalidInput`) before anything is stored."""


def loan_start_hook(store: ConfigStore) -> StartHook:
    """Reject an unknown instalment product or an amount outside its bands."""

    def check(data: dict[str, Any]) -> None:
        cfg = store.get("products")
        product = data.get("product")
        if product not in cfg.instalment:
            raise InvalidInput(
                f"unknown instalment product {product!r}; one of {', '.join(cfg.instalment)}",
                code="unknown_product",
            )
        amount = data.get("amount")
        top = cfg.instalment[product].bands[-1].max_amount
        if not isinstance(amount, int | float) or isinstance(amount, bool) or not 0 < amount <= top:
            raise InvalidInput(
                f"amount must be a number in (0, {top}] for {product}", code="amount_out_of_band"
            )

    return check


def start_hooks(store: ConfigStore) -> dict[str, tuple[StartHook, ...]]:
    """The shipped processes' start hooks, run in order by :meth:`WorkflowRuntime.start`."""
    return {
        "card_issuance": (validate_application,),
        "limit_adjustment": (validate_application,),
        "instalment_loan": (validate_application, loan_start_hook(store)),
    }
