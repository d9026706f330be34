"""The dual-mode decision engine: credit model score + versioned expert rules + investigation result.

Flow per batch (a single decision is a batch of one): map applications to columns, score them with the
ONNX model in one call, run the ``prescreen`` graph (instant outcome), the ``investigation`` graph for
rows that carry an investigation result (final outcome), and the ``credit_limit`` graph; store every
decision with its inputs and the versions that decided it, in one multi-row insert.

Rules run from an in-process cache of the active versions: zen-engine decisions are compiled once
(``create_decision``) and, when a graph is in the vectorised subset, also compiled to numpy
(:mod:`callvet.decision.compiler`); nothing reads the rules table per decision. The cache is reloaded on
activation through this engine and re-checked against the database at most every ``refresh_seconds``
so that other processes' activations take effect.
"""

from __future__ import annotations

import gc
import json
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import date
from typing import Any

import numpy as np
from callvet.core import audit, outbox
from callvet.core.application import Application
from callvet.core.db import Database
from callvet.core.errors import InvalidInput, NotFound, Unavailable
from callvet.core.ids import random_bytes
from callvet.core.settings import Settings
from callvet.decision import store
from callvet.decision.compiler import CompiledGraph, Unsupported, compile_graph
from callvet.decision.credit import CreditScorer
from callvet.decision.features import extract
from callvet.decision.recorder import DecisionRecorder
from callvet.decision.tables import decision_records, policy_versions
from callvet.decision.types import REASON_TEXT, Decision, Investigation, Outcome, Reason
from pydantic import ValidationError
from sqlalchemy import Connection, delete, func, select

__all__ = ["ROW_MODE_MAX", "ActivePolicy", "DecisionEngine", "load_policy"]

ROW_MODE_MAX = 16
_OUTCOME_FIELDS = ("outcome", "reason")
_LIMIT_FIELDS = ("credit_limit", "band", "income_multiple", "product_cap")
_BAND_TEXT = "Score band {band}: limit = min({mult:g} x disposable income, product cap {cap:,.0f}, requested)"


@dataclass
class ActivePolicy:
    name: str
    version: int
    content: dict[str, Any]
    zen: Any
    compiled: CompiledGraph | None

    def evaluate(self, columns: Mapping[str, np.ndarray], n: int, *, vectorised: bool = True,
                 fields: Sequence[str] | None = None,
                 rows: list[dict[str, Any]] | None = None) -> dict[str, np.ndarray]:
        """Outputs as columns: numpy over columns when compiled, plain Python per row for small batches
        (numpy's per-call overhead dominates there), else zen row by row (the reference). ``rows``: the
        columns already as :func:`as_rows` (policies of one batch that read the same columns share
        them); they are not modified."""
        try:
            compiled = self.compiled if vectorised else None
            if compiled is not None and n > ROW_MODE_MAX:
                return compiled.evaluate(columns)
            if rows is None:
                rows = as_rows(columns, n)
            if compiled is not None:
                results = [compiled.evaluate_row(r) for r in rows]
            else:
                results = [self.zen.evaluate(r)["result"] for r in rows]
        except Exception as exc:
            raise Unavailable(f"policy {self.name} v{self.version} failed: {str(exc).splitlines()[0][:300]}",
                              code="policy_failed", policy=self.name, version=self.version) from None
        wanted = fields if fields is not None else {k for r in results for k in r}
        return {f: np.asarray([r.get(f) for r in results],
                              dtype=object if any(isinstance(r.get(f), str) for r in results) else float)
                for f in wanted}


def as_rows(columns: Mapping[str, np.ndarray], n: int) -> list[dict[str, Any]]:
    """Columns as one dict of plain Python values per row (the row mode's input)."""
    keys = list(columns)
    return [{k: _py(columns[k][i]) for k in keys} for i in range(n)]


def _column(result: Mapping[str, np.ndarray], key: str, n: int) -> np.ndarray:
    """An object column of a policy's output; None where the policy gave nothing."""
    col = result.get(key)
    return np.full(n, None, dtype=object) if col is None else np.asarray(col, dtype=object)


def _py(v: Any) -> Any:
    if isinstance(v, np.bool_):
        return bool(v)
    if isinstance(v, np.floating | np.integer):
        return float(v)
    return v


def load_policy(name: str, version: int, content: dict[str, Any]) -> ActivePolicy:
    import zen

    decision = zen.ZenEngine().create_decision(json.dumps(content))
    try:
        compiled: CompiledGraph | None = compile_graph(content)
    except Unsupported:
        compiled = None
    return ActivePolicy(name, version, content, decision, compiled)


def _as_application(a: Application | Mapping[str, Any], index: int | None = None) -> Application:
    if isinstance(a, Application):
        return a
    try:
        return Application.model_validate(a)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        where = f"items[{index}]." if index is not None else ""
        raise InvalidInput(f"application field {where}{loc}: {err['msg']}", code="invalid_application",
                           field=f"{where}{loc}") from None


def _as_investigation(v: Investigation | Mapping[str, Any] | None) -> Investigation | None:
    if v is None or isinstance(v, Investigation):
        return v
    try:
        return Investigation.model_validate(v)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        raise InvalidInput(f"investigation field {loc}: {err['msg']}", code="invalid_investigation",
                           field=f"investigation.{loc}") from None


def _limits(lim: Mapping[str, Any], outcome: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(approved mask, credit limit) from the credit_limit policy's output: an approved application
    without a limit is the policy's fault (``policy_no_limit``); everything else gets 0.

    The same as ``np.maximum(np.nan_to_num(raw), 0.0)`` (nan -> 0, inf -> the largest float) with three
    ufuncs instead of nan_to_num's Python-level checks, a visible share of one decision."""
    approved = outcome == Outcome.APPROVE.value
    raw = np.asarray(lim.get("credit_limit", np.full(n, np.nan)), dtype=float)
    if np.isnan(raw[approved]).any():
        raise Unavailable("the credit_limit policy gave no limit for an approved application",
                          code="policy_no_limit")
    clipped = np.minimum(np.maximum(raw, 0.0), np.finfo(float).max)
    return approved, np.where(approved & ~np.isnan(raw), clipped, 0.0)


class DecisionEngine:
    """Decide card applications. Thread-safe; build one per process (``AppContext.service``)."""

    def __init__(self, db: Database, scorer: CreditScorer, *, refresh_seconds: float = 5.0) -> None:
        self.db = db
        self.scorer = scorer
        self.refresh_seconds = refresh_seconds
        self._lock = threading.Lock()
        self._policies: dict[str, ActivePolicy] = {}
        self._stamp: tuple[Any, ...] = ()
        self._checked = 0.0
        self.recorder = DecisionRecorder(db)
        store.seed(db)
        self.reload()

    @classmethod
    def from_settings(cls, settings: Settings, db: Database) -> DecisionEngine:
        return cls(db, CreditScorer(settings.models_dir))

    @property
    def model_version(self) -> str:
        return self.scorer.version

    # -- policy cache ---------------------------------------------------------------------------------

    def _db_stamp(self) -> tuple[Any, ...]:
        with self.db.connect() as conn:
            return tuple(conn.execute(select(func.count(), func.max(policy_versions.c.activated_at))
                                      .where(policy_versions.c.status == "active")).one())

    def reload(self) -> None:
        """Re-read the active versions and recompile those that changed."""
        with self._lock:
            stamp = self._db_stamp()
            active = store.active_versions(self.db)
            fresh = {}
            for name, (version, content) in active.items():
                old = self._policies.get(name)
                fresh[name] = old if old is not None and old.version == version else \
                    load_policy(name, version, content)
            self._policies = fresh
            self._stamp = stamp
            self._checked = time.monotonic()

    def _maybe_refresh(self) -> None:
        if time.monotonic() - self._checked < self.refresh_seconds:
            return
        self._checked = time.monotonic()
        if self._db_stamp() != self._stamp:
            self.reload()

    def policies(self) -> dict[str, ActivePolicy]:
        self._maybe_refresh()
        return dict(self._policies)

    def activate(self, name: str, version: int, *, actor: str, reason: str = "") -> dict[str, Any]:
        """Activate a proposed version (maker-checker enforced by the store) and refresh the cache."""
        out = store.activate(self.db, name, version, actor=actor, reason=reason)
        self.reload()
        return out

    # -- deciding -------------------------------------------------------------------------------------

    def decide(self, application: Application | Mapping[str, Any],
               investigation: Investigation | Mapping[str, Any] | None = None, *, actor: str,
               store: bool = True, decision_id: str | None = None,
               conn: Connection | None = None) -> Decision:
        """``conn``: store the record in the caller's open transaction (a workflow step's unit of work,
        so that the decision, its effect and the state it leads to commit together) instead of the
        group commit."""
        return self.decide_batch([application], [investigation], actor=actor, store=store,
                                 decision_ids=None if decision_id is None else [decision_id], conn=conn)[0]

    def decide_once(self, application: Application | Mapping[str, Any],
                    investigation: Investigation | Mapping[str, Any] | None = None, *, actor: str,
                    decision_id: str) -> dict[str, Any]:
        """Decide and store under ``decision_id`` (an idempotent request's id); when that id is already
        stored -- the request is a retry -- the stored decision is returned, marked ``replayed``."""
        decision, stored = self.decide_submit(application, investigation, actor=actor,
                                              decision_id=decision_id)
        try:
            stored.result(timeout=30.0)
        except Exception as exc:
            if not self.recorder.is_duplicate(exc):
                raise
            return self.recorder.stored_answer(decision_id, decision.application_id)
        return decision.to_dict()

    def decide_submit(self, application: Application | Mapping[str, Any],
                      investigation: Investigation | Mapping[str, Any] | None = None, *, actor: str,
                      decision_id: str | None = None) -> tuple[Decision, Future[None]]:
        """Decide one application and queue it for the next group commit without waiting: the decision
        may be answered only once the future resolved (an event loop awaits it instead of blocking)."""
        app = _as_application(application)
        inv = _as_investigation(investigation)
        decision = self.decide_batch([app], [inv], actor=actor, store=False,
                                     decision_ids=None if decision_id is None else [decision_id])[0]
        return decision, self.recorder.submit(self.recorder.pending([decision], [app], [inv], actor))

    def decide_batch(self, applications: Sequence[Application | Mapping[str, Any]],
                     investigations: Sequence[Investigation | Mapping[str, Any] | None] | None = None, *,
                     actor: str, store: bool = True, vectorised: bool = True,
                     today: date | None = None,
                     policies: Mapping[str, ActivePolicy] | None = None,
                     decision_ids: Sequence[str] | None = None,
                     conn: Connection | None = None) -> list[Decision]:
        """Decide many applications at once (batched ONNX inference and vectorised rules).

        ``policies`` replaces the active ones for this call (a draft replayed by
        :mod:`callvet.decision.simulate`; never stored, so ``store`` must then be false).

        The cyclic garbage collector is paused for the call: a batch allocates hundreds of thousands of
        small acyclic objects, and the collections they trigger re-scan every live object (the whole
        batch of applications) -- measured as more than half of the batch time.
        """
        enabled = gc.isenabled()
        gc.disable()
        if policies is not None and store:
            raise InvalidInput("decisions made with substituted policies are never stored",
                               code="invalid_replay")
        try:
            return self._decide_batch(applications, investigations, actor=actor, store=store,
                                      vectorised=vectorised, today=today, policies=policies,
                                      decision_ids=decision_ids, conn=conn)
        finally:
            if enabled:
                gc.enable()

    def _decide_batch(self, applications: Sequence[Application | Mapping[str, Any]],
                      investigations: Sequence[Investigation | Mapping[str, Any] | None] | None, *,
                      actor: str, store: bool, vectorised: bool, today: date | None,
                      policies: Mapping[str, ActivePolicy] | None = None,
                      decision_ids: Sequence[str] | None = None,
                      conn: Connection | None = None) -> list[Decision]:
        apps = [_as_application(a, i if len(applications) > 1 else None) for i, a in enumerate(applications)]
        if investigations is not None and len(investigations) != len(apps):
            raise InvalidInput("investigations must be None or one per application",
                               code="invalid_investigation")
        invs = [_as_investigation(v) for v in investigations] if investigations is not None else \
            [None] * len(apps)
        n = len(apps)
        if n == 0:
            return []
        pol = dict(policies) if policies is not None else self.policies()
        feats = extract(apps, self.scorer.encoder, today)
        score = self.scorer.predict(feats.x)
        cols = {**feats.rules, "score": score}
        rows = as_rows(cols, n) if n <= ROW_MODE_MAX else None
        pre = pol["prescreen"].evaluate(cols, n, vectorised=vectorised, fields=_OUTCOME_FIELDS, rows=rows)
        outcome = _column(pre, "outcome", n).copy()
        pre_reason = _column(pre, "reason", n)
        inv_reason = self._investigate(pol, invs, outcome, vectorised=vectorised)
        unknown = set(outcome.tolist()) - {o.value for o in Outcome}
        if unknown:
            raise Unavailable(f"the active policies produced no valid outcome ({sorted(map(str, unknown))}) "
                              "for some applications", code="policy_no_outcome")
        lim = pol["credit_limit"].evaluate(cols, n, vectorised=vectorised, fields=_LIMIT_FIELDS, rows=rows)
        approved, limit = _limits(lim, outcome, n)
        versions = {name: p.version for name, p in pol.items()}
        band = np.asarray(lim["band"], dtype=object).tolist()
        mult = np.asarray(lim["income_multiple"], dtype=float).tolist()
        cap = np.asarray(lim["product_cap"], dtype=float).tolist()
        model_version = self.scorer.version
        ids = random_bytes(16 * n).hex() if decision_ids is None else "".join(decision_ids)
        if len(ids) != 32 * n:
            raise InvalidInput("decision ids must be 32 characters, one per application", code="invalid_id")
        outcomes = {o.value: o for o in Outcome}
        reason_cache: dict[tuple[str, str], Reason] = {}

        def reason(code: str, policy: str) -> Reason:
            r = reason_cache.get((code, policy))
            if r is None:
                r = reason_cache[(code, policy)] = Reason(code, policy, REASON_TEXT.get(code, code))
            return r

        limit_reasons: dict[tuple[str, float, float], Reason] = {}
        out: list[Decision] = []
        rows = zip(apps, outcome.tolist(), pre_reason.tolist(), inv_reason.tolist(), approved.tolist(),
                   limit.tolist(), score.tolist(), band, mult, cap, _column(pre, "outcome", n).tolist(),
                   strict=True)
        for i, (a, final, pre_code, inv_code, ok, lim_i, sc, b, m, c, first) in enumerate(rows):
            r0 = reason_cache.get((pre_code, "prescreen")) or reason(pre_code, "prescreen")
            reasons = [r0]
            if inv_code is not None:
                reasons.append(reason_cache.get((inv_code, "investigation"))
                               or reason(inv_code, "investigation"))
            if ok:
                lr = limit_reasons.get((b, m, c))
                if lr is None:
                    lr = limit_reasons[(b, m, c)] = Reason(f"limit_band_{b}", "credit_limit",
                                                           _BAND_TEXT.format(band=b, mult=m, cap=c))
                reasons.append(lr)
            out.append(Decision(
                decision_id=ids[32 * i:32 * i + 32], application_id=a.application_id,
                decision=outcomes[final], credit_limit=lim_i, score=sc, score_band=b, reasons=reasons,
                policy_versions=versions, model_version=model_version,
                details={"instant_decision": first},
            ))
        if store:
            self._store(out, apps, invs, actor, conn)
        return out

    @staticmethod
    def _investigate(pol: dict[str, ActivePolicy], invs: list[Investigation | None], outcome: np.ndarray, *,
                     vectorised: bool) -> np.ndarray:
        """Run the investigation policy on the applications that have one: their outcome in ``outcome``
        is replaced in place; returns the investigation reason per application (None without one)."""
        n = len(invs)
        inv_idx = np.asarray([i for i, v in enumerate(invs) if v is not None], dtype=np.int64)
        inv_reason = np.full(n, None, dtype=object)
        if len(inv_idx):
            icols = {
                "voiceprint_alarm": np.asarray([bool(invs[i].voiceprint_alarm) for i in inv_idx]),
                "questionnaire_verdict": np.asarray(
                    [(q.verdict or "none") if (q := invs[i].questionnaire) is not None else "none"
                     for i in inv_idx], dtype=object),
                "questionnaire_risk": np.asarray(
                    [float(q.risk_score or 0.0) if (q := invs[i].questionnaire) is not None else 0.0
                     for i in inv_idx]),
                "instant_outcome": outcome[inv_idx],
            }
            res = pol["investigation"].evaluate(icols, len(inv_idx), vectorised=vectorised,
                                                fields=_OUTCOME_FIELDS)
            outcome[inv_idx] = _column(res, "outcome", len(inv_idx))
            inv_reason[inv_idx] = _column(res, "reason", len(inv_idx))
        return inv_reason

    def _store(self, decisions: list[Decision], apps: list[Application], invs: list[Investigation | None],
               actor: str, conn: Connection | None = None) -> None:
        """Group commit (:mod:`callvet.decision.recorder`): returns once the rows are durable; with
        ``conn``, written in the caller's transaction instead (durable with it)."""
        item = self.recorder.pending(decisions, apps, invs, actor)
        if conn is None:
            self.recorder.store(item)
        else:
            self.recorder.write_on(conn, item)

    def get(self, decision_id: str) -> dict[str, Any]:
        """A stored decision with its inputs and the versions that decided it."""
        with self.db.connect() as conn:
            r = conn.execute(select(decision_records).where(decision_records.c.decision_id == decision_id)
                             ).first()
        if r is None:
            raise NotFound(f"no decision {decision_id!r}", code="decision_not_found")
        d = dict(r._mapping)
        d["created_at"] = d["created_at"].isoformat()
        return d

    def delete(self, *, actor: str, reason: str, decision_id: str | None = None,
               application_id: str | None = None) -> int:
        """Erase stored decisions (one, or every decision of an application) with their inputs.

        The audit row keeps who erased what and why, never the erased personal data.
        """
        if not reason.strip():
            raise InvalidInput("a reason is required to erase decisions", code="reason_required")
        if (decision_id is None) == (application_id is None):
            raise InvalidInput("give exactly one of decision_id or application_id", code="invalid_target")
        cond = decision_records.c.decision_id == decision_id if decision_id is not None \
            else decision_records.c.application_id == application_id
        with self.db.begin() as conn:
            ids = list(conn.execute(select(decision_records.c.decision_id).where(cond)).scalars())
            if not ids:
                raise NotFound("no stored decision matches", code="decision_not_found")
            conn.execute(delete(decision_records).where(cond))
            outbox.add(conn, [outbox.event("decision", "erased", i, {"decision_id": i}) for i in ids])
            audit.record(conn, actor, "decision.delete", "decision",
                         decision_id if decision_id is not None else f"application:{application_id}",
                         reason=reason, details={"count": len(ids), "decision_ids": ids[:1000]})
        return len(ids)

    def close(self) -> None:
        self.recorder.close()
