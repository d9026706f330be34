"""The portrait service: build a bank's tags, show a customer's portrait, select a campaign list,
propose re-tuned risk thresholds, and the small links the decision engine and questionnaire may call.

A *bank* is a directory of Parquet tables (generated or imported). ``build`` runs every active
definition on DuckDB and writes ``tags.parquet`` (one row per customer: each dimension's tag, the rule
that fired, its facts as ``<dimension>__<fact>``, model scores) and ``build.json`` (definition versions,
model versions, timings). Everything that reads tags reads that file, so a portrait always shows the
facts and thresholds of the versions that produced it.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from callvet.core import audit
from callvet.core.db import Database, utcnow
from callvet.core.errors import InvalidInput, NotFound, Unavailable
from callvet.portrait import propensity, store
from callvet.portrait.generate import TABLES
from callvet.portrait.tables import segment_members, segments
from callvet.portrait.tags import DIMENSIONS, MODEL_DIMENSIONS, connect, explain, run_definition
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import insert, select

__all__ = [
    "SegmentRequest",
    "build",
    "customer_facts",
    "decision_tags",
    "default_bank",
    "get_segment",
    "import_tables",
    "portrait",
    "propose_risk_tuning",
    "select_segment",
]

MAX_SEGMENT = 100_000


def default_bank(settings: Any) -> Path:
    """``CALLVET_PORTRAIT_BANK_DIR`` (settings.portrait_bank_dir) or ``data_dir/portrait``."""
    configured = getattr(settings, "portrait_bank_dir", "")
    return Path(configured).resolve() if configured else Path(settings.data_dir) / "portrait"


def _manifest(bank: Path) -> dict[str, Any]:
    path = Path(bank) / "manifest.json"
    if not path.is_file():
        raise Unavailable(f"no bank at {bank}: run callvet portrait build", code="bank_not_built")
    return json.loads(path.read_text())  # type: ignore[no-any-return]


def build(
    db: Database,
    bank: Path,
    *,
    actor: str,
    retrain: bool = True,
    threads: int | None = None,
    memory_limit: str | None = None,
) -> dict[str, Any]:
    """Train the propensity models (when asked or missing) and compute every tag with the active
    definitions; writes ``tags.parquet`` and ``build.json``."""
    bank = Path(bank)
    as_of = int(_manifest(bank)["as_of_day"])
    defs = store.active_definitions(db)
    con = connect(bank, threads=threads, memory_limit=memory_limit)
    timings: dict[str, float] = {}
    models: dict[str, Any] = {}
    try:
        for dim in MODEL_DIMENSIONS:
            if retrain or not (bank / "models" / dim / "card.json").is_file():
                t = time.perf_counter()
                models[dim] = propensity.train(con, defs[dim][1], bank / "models", as_of_day=as_of)
                timings[f"train_{dim}"] = round(time.perf_counter() - t, 3)
        result: pa.Table | None = None
        model_versions = {}
        for dim in DIMENSIONS:
            t = time.perf_counter()
            _version, defn = defs[dim]
            scores = None
            if defn["kind"] == "model":
                scores, model_versions[dim] = propensity.score(con, defn, bank / "models", as_of_day=as_of)
            out = run_definition(con, defn, as_of_day=as_of, scores=scores)
            renamed = out.rename_columns(
                [
                    c if c == "customer_id" else (dim if c == "tag" else f"{dim}__{c}")
                    for c in out.column_names
                ]
            )
            con.register("acc_new", renamed)
            if result is None:
                result = con.sql("SELECT * FROM acc_new ORDER BY customer_id").to_arrow_table()
            else:
                con.register("acc", result)
                result = con.sql(
                    "SELECT acc.*, acc_new.* EXCLUDE (customer_id) FROM acc "
                    "LEFT JOIN acc_new USING (customer_id) ORDER BY customer_id"
                ).to_arrow_table()
                con.unregister("acc")
            con.unregister("acc_new")
            timings[dim] = round(time.perf_counter() - t, 3)
    finally:
        con.close()
    assert result is not None
    pq.write_table(result, bank / "tags.parquet", compression="zstd")
    info = {
        "built_at": utcnow().isoformat(),
        "built_by": actor,
        "as_of_day": as_of,
        "customers": result.num_rows,
        "versions": {d: defs[d][0] for d in DIMENSIONS},
        "models": model_versions,
        "trained": {k: v["metrics"] for k, v in models.items()},
        "seconds": timings,
    }
    (bank / "build.json").write_text(json.dumps(info, indent=1))
    with db.begin() as conn:
        audit.record(
            conn,
            actor,
            "portrait.build",
            "portrait_bank",
            str(bank.resolve())[-100:],
            details={"versions": info["versions"], "models": model_versions},
        )
    return info


def _build_info(bank: Path) -> dict[str, Any]:
    path = Path(bank) / "build.json"
    if not path.is_file():
        raise Unavailable("the bank's tags are not built: run callvet portrait build", code="tags_not_built")
    return json.loads(path.read_text())  # type: ignore[no-any-return]


def _tags_con(bank: Path) -> duckdb.DuckDBPyConnection:
    _build_info(bank)
    con = duckdb.connect(config={"threads": 1})
    bank = Path(bank).resolve()
    con.execute(f"CREATE VIEW tags AS SELECT * FROM read_parquet('{bank}/tags.parquet')")
    for t in ("customers", "contacts", "cards", "bindings", "transactions", "mcc"):
        con.execute(f"CREATE VIEW {t} AS SELECT * FROM read_parquet('{bank}/{t}.parquet')")
    return con


def _customer_row(bank: Path, customer_id: int) -> dict[str, Any]:
    if not 0 < customer_id < 2**62:
        raise InvalidInput("customer_id must be a positive integer", code="invalid_customer")
    con = _tags_con(bank)
    try:
        rel = con.execute("SELECT * FROM tags WHERE customer_id = ?", [customer_id])
        cols = [d[0] for d in rel.description]
        row = rel.fetchone()
    finally:
        con.close()
    if row is None:
        raise NotFound(f"no customer {customer_id} in this bank", code="customer_not_found")
    return dict(zip(cols, row, strict=True))


def portrait(db: Database, bank: Path, customer_id: int) -> dict[str, Any]:
    """The seven tags of one customer, each with its explanation (facts, thresholds, rule)."""
    info = _build_info(bank)
    row = _customer_row(bank, customer_id)
    out: dict[str, Any] = {
        "customer_id": customer_id,
        "as_of_day": info["as_of_day"],
        "tags": {},
        "explanations": {},
        "built_at": info["built_at"],
    }
    for dim in DIMENSIONS:
        version = info["versions"][dim]
        defn = store.get_version(db, dim, version)["content"]
        sub = {k[len(dim) + 2 :]: v for k, v in row.items() if k.startswith(f"{dim}__")}
        sub.update(tag=row[dim], customer_id=customer_id)
        out["tags"][dim] = row[dim]
        exp = explain(defn, version, sub)
        if dim in info.get("models", {}):
            exp["model_version"] = info["models"][dim]
        out["explanations"][dim] = exp
    return out


class SegmentRequest(BaseModel):
    """A campaign selection: tag filters, a size and why; exclusions are always applied."""

    model_config = ConfigDict(extra="forbid")
    filters: dict[str, list[str]] = Field(default_factory=dict, max_length=7)
    size: int = Field(ge=1, le=MAX_SEGMENT)
    reason: str = Field(min_length=3, max_length=2000)
    rank_by: str = Field(default="response", pattern="^(response|card_binding)$")
    contact_window_days: int = Field(default=30, ge=0, le=365)
    product: str | None = Field(default=None, pattern="^(classic|gold|platinum)$")


def _filter_sql(
    db: Database, info: dict[str, Any], filters: dict[str, list[str]]
) -> tuple[list[str], list[Any]]:
    """WHERE clauses and parameters of the tag filters, checked against the built definitions'
    categories (an unknown dimension or category is an error, not an empty list)."""
    where = []
    params: list[Any] = []
    for dim, cats in filters.items():
        if dim not in DIMENSIONS:
            raise InvalidInput(f"unknown dimension {dim!r}", code="invalid_filter", field=dim)
        allowed = set(store.get_version(db, dim, info["versions"][dim])["content"]["categories"])
        bad = [c for c in cats if c not in allowed]
        if not cats or bad:
            raise InvalidInput(
                f"{dim} filter needs categories among {sorted(allowed)}", code="invalid_filter", field=dim
            )
        where.append(f"t.{dim} IN ({', '.join('?' for _ in cats)})")
        params.extend(cats)
    return where, params


def _candidates(db: Database, bank: Path, req: SegmentRequest, info: dict[str, Any]) -> pa.Table:
    """Every customer matching the filters, with the score and one flag per exclusion."""
    where, params = _filter_sql(db, info, req.filters)
    as_of = int(info["as_of_day"])
    held = "k.kind = 'credit' AND k.status = 'active'" + (" AND k.product = ?" if req.product else "")
    sql = f"""
        WITH base AS (
          SELECT t.customer_id, t.{req.rank_by}__score AS score,
                 t.risk_level = 'high' AS x_high_risk,
                 NOT c.marketing_consent AS x_no_consent,
                 COALESCE(m.last_day >= {as_of} - ?, FALSE) AS x_recent_contact,
                 COALESCE(h.n > 0, FALSE) AS x_card_holder
          FROM tags t JOIN customers c USING (customer_id)
          LEFT JOIN (SELECT customer_id, MAX(day) AS last_day FROM contacts GROUP BY customer_id) m
                 USING (customer_id)
          LEFT JOIN (SELECT customer_id, COUNT(*) AS n FROM cards k WHERE {held} GROUP BY customer_id) h
                 USING (customer_id)
          {"WHERE " + " AND ".join(where) if where else ""})
        SELECT customer_id, score, x_high_risk, x_no_consent, x_recent_contact, x_card_holder FROM base"""
    q_params = [req.contact_window_days, *([req.product] if req.product else []), *params]
    con = _tags_con(bank)
    try:
        return con.sql(sql, params=q_params).to_arrow_table()
    finally:
        con.close()


def _rank(tbl: pa.Table, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, int]]:
    """Drop every excluded customer, rank the rest by score (ties by id); ids, scores, the chosen
    positions and the counts per exclusion."""
    ids = tbl["customer_id"].to_numpy()
    score = tbl["score"].to_numpy()
    flags = {
        k: tbl[f"x_{k}"].to_numpy(zero_copy_only=False).astype(bool)
        for k in ("high_risk", "no_consent", "recent_contact", "card_holder")
    }
    excluded = np.zeros(ids.size, bool)
    for f in flags.values():
        excluded |= f
    keep = np.flatnonzero(~excluded)
    order = keep[np.lexsort((ids[keep], -score[keep]))][:size]
    counts = {
        "matching_filters": int(ids.size),
        **{f"excluded_{k}": int(v.sum()) for k, v in flags.items()},
        "eligible": int(keep.size),
        "selected": int(order.size),
    }
    return ids, score, order, counts


def select_segment(db: Database, bank: Path, req: SegmentRequest, *, actor: str) -> dict[str, Any]:
    """A campaign list ranked by propensity, after the exclusions (high risk, no marketing consent,
    contacted in the last N days, already holding a credit card -- of ``product`` when given); stored
    with who asked and why."""
    info = _build_info(bank)
    ids, score, order, counts = _rank(_candidates(db, bank, req, info), req.size)
    seg_id = uuid.uuid4().hex
    members = [
        {"segment_id": seg_id, "rank": i + 1, "customer_id": int(ids[j]), "score": float(score[j])}
        for i, j in enumerate(order)
    ]
    with db.begin() as conn:
        conn.execute(
            insert(segments).values(
                segment_id=seg_id,
                requested_by=actor,
                reason=req.reason,
                request=req.model_dump(),
                build={"built_at": info["built_at"], "versions": info["versions"], "models": info["models"]},
                counts=counts,
                size=len(members),
                created_at=utcnow(),
            )
        )
        if members:
            conn.execute(insert(segment_members), members)
        audit.record(
            conn,
            actor,
            "portrait.segment",
            "portrait_segment",
            seg_id,
            reason=req.reason,
            details={"request": req.model_dump(), "counts": counts},
        )
    return {
        "segment_id": seg_id,
        "requested_by": actor,
        "reason": req.reason,
        "counts": counts,
        "versions": info["versions"],
        "models": info["models"],
        "customers": [
            {"rank": m["rank"], "customer_id": m["customer_id"], "score": round(m["score"], 6)}
            for m in members
        ],
    }


def get_segment(db: Database, segment_id: str) -> dict[str, Any]:
    with db.connect() as conn:
        s = conn.execute(select(segments).where(segments.c.segment_id == segment_id)).first()
        if s is None:
            raise NotFound(f"no segment {segment_id!r}", code="segment_not_found")
        ms = conn.execute(
            select(segment_members.c.rank, segment_members.c.customer_id, segment_members.c.score)
            .where(segment_members.c.segment_id == segment_id)
            .order_by(segment_members.c.rank)
        ).all()
    d = dict(s._mapping)
    d["created_at"] = d["created_at"].isoformat()
    d["customers"] = [dict(m._mapping) for m in ms]
    return d


def propose_risk_tuning(
    db: Database, bank: Path, *, target_bad_rate: float, field: str = "max_dpd_12m", actor: str
) -> dict[str, Any]:
    """Re-tune the risk tag's thresholds on ``field`` from realised outcomes (``outcomes.parquet`` or
    the generator's ``bad_next_6m``): scale them by one factor k (0.30..2.50) and pick the k that keeps
    the most customers out of ``high`` while the bad rate among them stays <= target. Proposes; never
    activates (a second person must)."""
    from callvet.decision.tuning import scale_thresholds

    if not 0 < target_bad_rate < 1:
        raise InvalidInput("target_bad_rate must be in (0, 1)", code="invalid_target")
    defs = store.active_definitions(db)
    version, defn = defs["risk_level"]
    if defn["kind"] != "jdm":
        raise InvalidInput("only a jdm risk definition can be tuned", code="nothing_to_tune")
    bank = Path(bank)
    out_path = bank / "outcomes.parquet"
    src = out_path if out_path.is_file() else bank / "truth.parquet"
    outcomes = pq.read_table(src, columns=["customer_id", "bad_next_6m"])
    con = connect(bank)
    try:
        con.register("outcomes", outcomes)
        as_of = int(_manifest(bank)["as_of_day"])

        def effect(d: dict[str, Any]) -> dict[str, float]:
            t = run_definition(con, d, as_of_day=as_of)
            con.register("cand", t)
            r = con.sql(
                "SELECT AVG(CASE WHEN tag <> 'high' THEN 1.0 ELSE 0.0 END) AS kept, "
                "AVG(CASE WHEN tag <> 'high' THEN CAST(o.bad_next_6m AS DOUBLE) END) AS bad "
                "FROM cand JOIN outcomes o USING (customer_id)"
            ).fetchall()[0]
            con.unregister("cand")
            assert r is not None
            return {"kept_rate": round(float(r[0]), 4), "bad_rate_kept": round(float(r[1] or 0), 5)}

        before = effect(defn)
        best: tuple[tuple[float, ...], float, dict[str, Any], dict[str, float]] | None = None
        for k in np.round(np.arange(0.3, 2.51, 0.1), 2):
            cand = dict(defn, graph=scale_thresholds(defn["graph"], field, float(k)))
            eff = effect(cand)
            ok = eff["bad_rate_kept"] <= target_bad_rate
            key = (1.0, eff["kept_rate"], -eff["bad_rate_kept"]) if ok else (0.0, -eff["bad_rate_kept"], 0.0)
            if best is None or key > best[0]:
                best = (key, float(k), cand, eff)
    finally:
        con.close()
    assert best is not None
    _, k, tuned, after = best
    effect_doc = {
        "target": f"bad_rate_kept={target_bad_rate}",
        "field": field,
        "factor": k,
        "base_version": version,
        "outcomes": src.name,
        "before": before,
        "after": after,
    }
    note = (
        f"tuned from v{version}: thresholds on {field} x{k:g}; kept {before['kept_rate']:.3f} -> "
        f"{after['kept_rate']:.3f}, bad rate {before['bad_rate_kept']:.4f} -> {after['bad_rate_kept']:.4f}"
    )
    return store.propose(db, "risk_level", tuned, actor=actor, note=note, expected_effect=effect_doc)


def decision_tags(bank: Path, customer_id: int) -> dict[str, Any] | None:
    """For the decision engine: a known customer's risk and value tags (None for an unknown one)."""
    try:
        row = _customer_row(bank, customer_id)
    except NotFound:
        return None
    return {
        "risk_level": row["risk_level"],
        "value": row["value"],
        "max_dpd_12m": row.get("risk_level__max_dpd_12m"),
        "contribution_12m": row.get("value__contribution_12m"),
    }


def customer_facts(bank: Path, customer_id: int) -> dict[str, Any]:
    """For the questionnaire: independent facts the bank knows and an impostor rarely does -- the most
    recent card transaction (day, merchant category, amount) and the payment apps a card is bound to."""
    con = _tags_con(bank)
    try:
        last = con.execute(
            "SELECT t.day, m.category, t.amount, t.channel FROM transactions t "
            "JOIN mcc m USING (mcc) WHERE t.customer_id = ? ORDER BY t.day DESC, t.txn_id DESC "
            "LIMIT 1",
            [customer_id],
        ).fetchone()
        apps = [
            r[0]
            for r in con.execute(
                "SELECT DISTINCT app FROM bindings WHERE customer_id = ? ORDER BY 1", [customer_id]
            ).fetchall()
        ]
    finally:
        con.close()
    return {
        "recent_transaction": None
        if last is None
        else {
            "day": int(last[0]),
            "category": last[1],
            "amount": round(float(last[2]), 2),
            "channel": last[3],
        },
        "bound_payment_apps": apps,
    }


def import_tables(src: Path, bank: Path, *, as_of_day: int) -> dict[str, Any]:
    """Read the bank's tables from CSV or Parquet files named after the tables (``customers.csv`` ...)
    into a bank directory of Parquet files, checking that each has the columns the definitions use."""
    src, bank = Path(src), Path(bank)
    bank.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(config={"threads": 2})
    rows = {}
    try:
        for t in TABLES:
            pq_path, csv_path = src / f"{t}.parquet", src / f"{t}.csv"
            if pq_path.is_file():
                reader = f"read_parquet('{pq_path}')"
            elif csv_path.is_file():
                reader = f"read_csv('{csv_path}', header = true)"
            else:
                raise InvalidInput(f"missing table {t} (.csv or .parquet) in {src}", code="invalid_import")
            missing = set(REQUIRED_COLUMNS[t]) - {
                r[0] for r in con.sql(f"DESCRIBE SELECT * FROM {reader}").fetchall()
            }
            if missing:
                raise InvalidInput(
                    f"table {t} lacks columns {sorted(missing)}", code="invalid_import", table=t
                )
            con.execute(f"COPY (SELECT * FROM {reader}) TO '{bank / t}.parquet' (FORMAT parquet)")
            rows[t] = int(
                con.sql(f"SELECT COUNT(*) FROM read_parquet('{bank / t}.parquet')").fetchall()[0][0]
            )
    except duckdb.Error as exc:
        raise InvalidInput(
            f"cannot import: {str(exc).splitlines()[0][:300]}", code="invalid_import"
        ) from None
    finally:
        con.close()
    manifest = {"imported_from": str(src), "as_of_day": as_of_day, "tables": list(TABLES), "rows": rows}
    (bank / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return manifest


REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    "customers": ("customer_id", "age", "onboard_day", "marketing_consent", "digital_score"),
    "accounts": ("customer_id", "avg_balance", "payroll", "returned_debits_12m"),
    "cards": ("card_id", "customer_id", "kind", "product", "status"),
    "transactions": ("txn_id", "customer_id", "day", "mcc", "channel", "amount"),
    "mcc": ("mcc", "category"),
    "bindings": ("customer_id", "card_id", "app", "bound_day"),
    "contacts": ("customer_id", "kind", "day", "responded"),
    "repayments": ("customer_id", "month", "days_past_due", "utilisation"),
}
