"""A seeded synthetic retail bank with hidden truth, written as Parquet tables.

Why synthetic: no real customer data may leave a bank, yet tags and propensity models must be checked
against a known truth. Every customer first receives hidden classes (risk, value, stickiness,
preference, lifecycle) and true propensities (response to a card offer, binding a card to a payment
app); the observable tables are then drawn from those. A fraction ``noise`` of customers behaves like a
different class on each dimension (their observable behaviour follows the other class), so no rule can
reach 100 % and agreement measures how well a rule recovers the truth from data, not from the labels.

Generation is vectorised with numpy and chunked by customer, so memory is bounded by ``chunk`` customers
whatever ``n_customers`` is (1,000 to millions). Days are integers: day 0 is the first day of the
12-month window, ``WINDOW_DAYS`` - 1 its last; ``as_of_day`` = ``WINDOW_DAYS``.

Tables (``TABLES``; all keyed by ``customer_id``): customers, accounts, cards, transactions, mcc (the
merchant-category lookup), bindings, contacts, repayments. ``truth.parquet`` (hidden; never read by tag
definitions) and ``manifest.json`` sit beside them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

__all__ = [
    "APPS",
    "CATEGORIES",
    "CHANNELS",
    "LIFECYCLE",
    "MAX_CUSTOMERS",
    "TABLES",
    "WINDOW_DAYS",
    "BankSpec",
    "generate",
    "simulate_campaign",
]

WINDOW_DAYS = 360
MONTH_DAYS = 30
MAX_CUSTOMERS = 20_000_000
RISK = ("low", "medium", "high")
VALUE = ("low", "medium", "high")
STICKINESS = ("low", "medium", "high")
LIFECYCLE = ("new", "growing", "mature", "declining", "dormant")
CATEGORIES = ("dining", "groceries", "travel", "online_shopping", "fuel", "entertainment", "luxury")
CHANNELS = ("pos", "online", "wallet", "atm")
APPS = ("alipay", "wechat_pay", "unionpay_quickpass", "apple_pay")
PRODUCTS = ("classic", "gold", "platinum")
# Four-digit MCCs per category (ISO 18245 codes of that kind of merchant).
MCC: dict[str, tuple[int, ...]] = {
    "dining": (5812, 5813, 5814),
    "groceries": (5411, 5422, 5499),
    "travel": (3000, 4511, 7011, 4722),
    "online_shopping": (5310, 5311, 5399, 5964),
    "fuel": (5541, 5542),
    "entertainment": (7832, 7922, 7996),
    "luxury": (5944, 5094, 5681),
}
_CAT_BASE = np.array([0.22, 0.28, 0.06, 0.2, 0.1, 0.1, 0.04])
_CAT_AMOUNT = np.array([120.0, 160.0, 1800.0, 350.0, 300.0, 200.0, 3500.0])
TABLES = ("customers", "accounts", "cards", "transactions", "mcc", "bindings", "contacts", "repayments")


@dataclass(frozen=True)
class BankSpec:
    n_customers: int = 1000
    seed: int = 1
    noise: float = 0.02
    chunk: int = 100_000

    def __post_init__(self) -> None:
        if not 1 <= self.n_customers <= MAX_CUSTOMERS:
            raise ValueError(f"n_customers must be in 1..{MAX_CUSTOMERS}")
        if not 0 <= self.noise <= 0.5:
            raise ValueError("noise must be in [0, 0.5]")
        if not 1_000 <= self.chunk <= 2_000_000:
            raise ValueError("chunk must be in 1,000..2,000,000")


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _noisy(rng: np.random.Generator, true: np.ndarray, k: int, noise: float) -> np.ndarray:
    """Behaviour class: the true class, or for a fraction ``noise`` a different class at random."""
    flip = rng.random(true.size) < noise
    other = (true + rng.integers(1, k, true.size)) % k
    return np.where(flip, other, true).astype(np.int8)


def _choice(rng: np.random.Generator, p: list[float] | np.ndarray, n: int) -> np.ndarray:
    return rng.choice(len(p), size=n, p=np.asarray(p) / np.sum(p)).astype(np.int8)


def _dict(values: tuple[str, ...], codes: np.ndarray) -> pa.DictionaryArray:
    return pa.DictionaryArray.from_arrays(pa.array(codes.astype(np.int32)), pa.array(list(values)))


class _Writers:
    """One ParquetWriter per table, opened on the first chunk."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self._w: dict[str, pq.ParquetWriter] = {}

    def write(self, name: str, cols: dict[str, Any]) -> None:
        table = pa.table(cols)
        if name not in self._w:
            self._w[name] = pq.ParquetWriter(self.out / f"{name}.parquet", table.schema, compression="zstd")
        self._w[name].write_table(table, row_group_size=1 << 20)

    def close(self) -> None:
        for w in self._w.values():
            w.close()


@dataclass
class _Customers:
    """One chunk's customers: hidden classes, their behaviour classes and the drawn attributes that the
    observable tables are made from (shared by the per-table writers below)."""

    ids: np.ndarray
    risk: np.ndarray
    value: np.ndarray
    stick: np.ndarray
    pref: np.ndarray
    life: np.ndarray
    b_risk: np.ndarray
    b_value: np.ndarray
    b_stick: np.ndarray
    b_pref: np.ndarray
    b_life: np.ndarray
    age: np.ndarray
    tier: np.ndarray
    onboard: np.ndarray
    consent: np.ndarray
    digital: np.ndarray
    payroll: np.ndarray
    n_accounts: np.ndarray
    has_credit: np.ndarray
    n_credit: np.ndarray
    aum: np.ndarray
    spend_level: np.ndarray
    rate_year: np.ndarray


def _draw_customers(rng: np.random.Generator, ids: np.ndarray, noise: float) -> _Customers:
    """Hidden classes first, then the customer attributes drawn from the behaviour classes (the order
    of the draws is part of the seed's meaning: changing it changes every bank)."""
    n = ids.size
    risk = _choice(rng, [0.75, 0.18, 0.07], n)
    value = _choice(rng, [0.5, 0.35, 0.15], n)
    stick = _choice(rng, [0.3, 0.45, 0.25], n)
    pref = _choice(rng, [0.2, 0.22, 0.1, 0.22, 0.1, 0.1, 0.06], n)
    life = _choice(rng, [0.08, 0.12, 0.6, 0.1, 0.1], n)
    b_risk, b_value, b_stick = (_noisy(rng, x, 3, noise) for x in (risk, value, stick))
    b_pref, b_life = _noisy(rng, pref, 7, noise), _noisy(rng, life, 5, noise)

    age = np.clip(rng.normal(40, 12, n), 18, 85).astype(np.int16)
    tier = _choice(rng, [0.25, 0.35, 0.4], n) + 1
    # Onboarding: new customers joined in the last 150 days of the window, others 1..15 years ago.
    onboard = np.where(
        b_life == 0, rng.integers(WINDOW_DAYS - 150, WINDOW_DAYS - 10, n), -rng.integers(200, 5500, n)
    ).astype(np.int32)
    consent = rng.random(n) < 0.82
    digital = np.clip(rng.normal(0.55 - 0.008 * (age - 40), 0.2), 0.02, 0.98)

    # Stickiness: payroll deposit and the number of products.
    payroll = rng.random(n) < np.array([0.01, 0.5, 0.99])[b_stick]
    n_accounts = np.select(
        [b_stick == 0, b_stick == 1], [rng.integers(1, 2, n), rng.integers(2, 3, n)], rng.integers(3, 5, n)
    ).astype(np.int8)
    credit_p = np.array([0.35, 0.6, 0.85])[b_stick]
    has_credit = rng.random(n) < credit_p
    n_credit = np.where(has_credit, 1 + (rng.random(n) < 0.25), 0).astype(np.int8)

    # Value: assets under management drive contribution; spend level follows value.
    aum = np.exp(rng.normal(np.log(np.array([6_000.0, 60_000.0, 600_000.0])[b_value]), 0.5))
    spend_level = np.exp(rng.normal(np.log(np.array([1_500.0, 5_000.0, 15_000.0])[b_value]), 0.35))
    rate_year = np.array([42.0, 60.0, 110.0])[b_value] * (0.8 + 0.4 * rng.random(n))
    return _Customers(
        ids, risk, value, stick, pref, life, b_risk, b_value, b_stick, b_pref, b_life, age, tier, onboard,
        consent, digital, payroll, n_accounts, has_credit, n_credit, aum, spend_level, rate_year,
    )  # fmt: skip


def _accounts(rng: np.random.Generator, c: _Customers, w: _Writers) -> None:
    ids, n, onboard, has_credit = c.ids, c.ids.size, c.onboard, c.has_credit
    acc_owner = np.repeat(np.arange(n), c.n_accounts)
    acc_k = np.arange(acc_owner.size) - np.repeat(np.cumsum(c.n_accounts) - c.n_accounts, c.n_accounts)
    share = rng.dirichlet(np.ones(4), acc_owner.size)[:, 0] + 0.2
    tot = np.bincount(acc_owner, share, n)
    balance = (c.aum[acc_owner] * share / tot[acc_owner]).astype(np.float32)
    kind = np.where(acc_k == 0, 0, np.where(rng.random(acc_owner.size) < 0.6, 1, 2)).astype(np.int8)
    returned = np.zeros(acc_owner.size, np.int16)
    first_acc = acc_k == 0
    # Customers without credit show risk through returned direct debits: none, 1-3, 4 or more.
    fo = acc_owner[first_acc]
    ret = np.select(
        [c.b_risk[fo] == 0, c.b_risk[fo] == 1],
        [rng.poisson(0.01, fo.size), np.minimum(1 + rng.poisson(0.4, fo.size), 3)],
        4 + rng.poisson(1.0, fo.size),
    )
    returned[first_acc] = ret * ~has_credit[fo]
    w.write(
        "accounts",
        {
            "account_id": ids[acc_owner] * 10 + acc_k,
            "customer_id": ids[acc_owner],
            "kind": _dict(("current", "savings", "deposit"), kind),
            "avg_balance": balance,
            "payroll": first_acc & c.payroll[acc_owner],
            "returned_debits_12m": returned,
            "opened_day": np.maximum(onboard[acc_owner], onboard[acc_owner] + 30 * acc_k).astype(np.int32),
        },
    )


def _cards(rng: np.random.Generator, c: _Customers, w: _Writers) -> np.ndarray:
    """One debit card each, credit cards for some; returns the number of cards per customer."""
    ids, n, onboard = c.ids, c.ids.size, c.onboard
    n_cards = 1 + c.n_credit
    card_owner = np.repeat(np.arange(n), n_cards)
    card_k = np.arange(card_owner.size) - np.repeat(np.cumsum(n_cards) - n_cards, n_cards)
    card_id = ids[card_owner] * 10 + card_k
    is_credit = card_k > 0
    product = np.where(
        is_credit, np.minimum(c.b_value[card_owner] + (rng.random(card_owner.size) < 0.2), 2), 0
    )
    limit = np.where(is_credit, np.array([10_000.0, 30_000.0, 80_000.0])[product], 0.0).astype(np.float32)
    w.write(
        "cards",
        {
            "card_id": card_id,
            "customer_id": ids[card_owner],
            "kind": _dict(("debit", "credit"), is_credit.astype(np.int8)),
            "product": _dict(PRODUCTS, product.astype(np.int8)),
            "credit_limit": limit,
            "opened_day": np.maximum(onboard[card_owner], onboard[card_owner] + 45 * card_k).astype(np.int32),
            "status": _dict(("active", "closed"), (rng.random(card_owner.size) < 0.02).astype(np.int8)),
        },
    )
    return n_cards


def _bindings(
    rng: np.random.Generator, c: _Customers, n_cards: np.ndarray, w: _Writers
) -> tuple[np.ndarray, np.ndarray]:
    """Payment-app bindings; returns the true binding propensity and whether any card is bound."""
    ids, n, age, b_life = c.ids, c.ids.size, c.age, c.b_life
    bind_logit = (
        -1.2 + 3.2 * (c.digital - 0.5) - 0.03 * (age - 40) + 0.5 * (b_life == 1) - 0.9 * (b_life == 4)
    )
    p_bind = _sigmoid(bind_logit)
    n_bound = rng.binomial(n_cards, np.clip(p_bind * 0.9, 0, 1))
    bound_any = n_bound > 0
    bcard = np.repeat(np.arange(n), n_bound)
    bk = np.arange(bcard.size) - np.repeat(np.cumsum(n_bound) - n_bound, n_bound)
    app = rng.choice(4, bcard.size, p=[0.45, 0.4, 0.1, 0.05]).astype(np.int8)
    w.write(
        "bindings",
        {
            "customer_id": ids[bcard],
            "card_id": ids[bcard] * 10 + np.minimum(bk, n_cards[bcard] - 1),
            "app": _dict(APPS, app),
            "bound_day": np.maximum(
                c.onboard[bcard] + 5, rng.integers(-700, WINDOW_DAYS - 20, bcard.size)
            ).astype(np.int32),
        },
    )
    return p_bind, bound_any


# Monthly transaction-rate shape per lifecycle class.
_LIFE_SHAPE = np.stack(
    [
        np.ones(12),  # new (cut by onboarding)
        np.r_[np.full(6, 0.3), np.full(6, 1.7)],  # growing
        np.ones(12),  # mature
        np.r_[np.full(6, 1.7), np.full(6, 0.3)],  # declining
        np.r_[np.full(8, 1.25), np.zeros(4)],  # dormant: nothing in the last 4 months
    ]
)


def _transactions(
    rng: np.random.Generator, c: _Customers, n_cards: np.ndarray, bound_any: np.ndarray, w: _Writers
) -> None:
    """Monthly Poisson counts shaped by lifecycle, from onboarding on; category, amount and channel
    follow preference, value and digital habits."""
    ids, n, b_life = c.ids, c.ids.size, c.b_life
    months = np.arange(12)
    active = ((months[None, :] + 1) * MONTH_DAYS > c.onboard[:, None]).astype(float)
    lam = c.rate_year[:, None] / 12 * _LIFE_SHAPE[b_life] * active
    counts = rng.poisson(lam)
    counts[b_life == 0] = rng.poisson(lam[b_life == 0] * 1.6)
    per_c = counts.sum(1)
    t_owner = np.repeat(np.arange(n), per_c)
    t_month = np.repeat(np.tile(months, n), counts.ravel())
    day = t_month * MONTH_DAYS + rng.integers(0, MONTH_DAYS, t_owner.size)
    day = np.maximum(day, c.onboard[t_owner]).astype(np.int16)
    m = t_owner.size
    take_pref = rng.random(m) < 0.5
    cat = np.where(take_pref, c.b_pref[t_owner], rng.choice(7, m, p=_CAT_BASE)).astype(np.int8)
    mcc_idx = (rng.random(m) * np.array([len(MCC[k]) for k in CATEGORIES])[cat]).astype(np.int8)
    mcc_table = np.array([[*MCC[k], *([0] * (4 - len(MCC[k])))] for k in CATEGORIES], dtype=np.int16)
    mcc = mcc_table[cat, mcc_idx]
    amount = (_CAT_AMOUNT[cat] * c.spend_level[t_owner] / 5_000 * np.exp(rng.normal(0, 0.6, m))).astype(
        np.float32
    )
    online = rng.random(m) < c.digital[t_owner] * np.where(cat == 3, 1.0, 0.4)
    wallet = ~online & bound_any[t_owner] & (rng.random(m) < 0.5)
    atm = ~online & ~wallet & (rng.random(m) < 0.03)
    channel = np.select([online, wallet, atm], [1, 2, 3], 0).astype(np.int8)
    card_pick = (rng.random(m) * n_cards[t_owner]).astype(np.int64)
    txn_hour = np.clip(rng.normal(np.where(cat == 0, 19, 14), 3.5), 0, 23).astype(np.int8)
    w.write(
        "transactions",
        {
            "txn_id": np.int64(ids[0]) * 1000 + np.arange(m, dtype=np.int64),
            "customer_id": ids[t_owner],
            "card_id": ids[t_owner] * 10 + card_pick,
            "day": day,
            "hour": txn_hour,
            "mcc": mcc,
            "channel": _dict(CHANNELS, channel),
            "amount": amount,
        },
    )


def _repayments(rng: np.random.Generator, c: _Customers, w: _Writers) -> None:
    """12 monthly instalments for credit-card holders (and loan holders among the others)."""
    n, has_credit = c.ids.size, c.has_credit
    months = np.arange(12)
    has_loan = ~has_credit & (rng.random(n) < 0.3)
    payer = np.flatnonzero(has_credit | has_loan)
    rep_owner = np.repeat(payer, 12)
    rep_month = np.tile(months, payer.size)
    br = c.b_risk[rep_owner]
    late_p = np.array([0.008, 0.28, 0.55])[br]
    late = rng.random(rep_owner.size) < late_p
    dpd_hi = np.array([10, 40, 120])[br]
    dpd_lo = np.array([1, 10, 25])[br]
    dpd = np.where(late, rng.integers(dpd_lo, dpd_hi + 1), 0).astype(np.int16)
    # A medium customer is late at least twice, a high one reaches 60+ days past due at least once.
    util = np.clip(rng.beta(np.array([2.0, 5.0, 8.0])[br], np.array([8.0, 5.0, 2.0])[br]), 0, 1.2)
    firsts = np.flatnonzero(rep_month == 0)
    med = firsts[br[firsts] == 1]
    dpd[med + rng.integers(0, 6, med.size)] = rng.integers(15, 41, med.size)
    dpd[med + rng.integers(6, 12, med.size)] = rng.integers(15, 41, med.size)
    hi = firsts[br[firsts] == 2]
    dpd[hi + rng.integers(0, 12, hi.size)] = rng.integers(60, 121, hi.size)
    due = np.where(
        has_credit[rep_owner],
        c.spend_level[rep_owner] * 0.4 + 200,
        np.exp(rng.normal(8, 0.4, rep_owner.size)),
    ).astype(np.float32)
    paid = np.where(dpd > 30, due * rng.uniform(0, 0.5, rep_owner.size), due).astype(np.float32)
    w.write(
        "repayments",
        {
            "customer_id": c.ids[rep_owner],
            "month": rep_month.astype(np.int8),
            "product": _dict(("credit_card", "loan"), (~has_credit[rep_owner]).astype(np.int8)),
            "due": due,
            "paid": paid,
            "days_past_due": dpd,
            "utilisation": util.astype(np.float32),
        },
    )


def _chunk(rng: np.random.Generator, ids: np.ndarray, spec: BankSpec, w: _Writers) -> None:
    """One chunk of customers, every table; the order of the steps is the order of the random draws."""
    c = _draw_customers(rng, ids, spec.noise)
    _accounts(rng, c, w)
    n_cards = _cards(rng, c, w)
    p_bind, bound_any = _bindings(rng, c, n_cards, w)
    _transactions(rng, c, n_cards, bound_any, w)
    _repayments(rng, c, w)
    # Marketing: past card-offer and binding campaigns with responses from the true propensities.
    resp_logit = _response_logit(rng, c.age, c.b_value, c.b_stick, c.b_life, c.digital, c.has_credit)
    p_resp = _sigmoid(resp_logit)
    _contacts(rng, ids, p_resp, p_bind, c.has_credit, bound_any, c.onboard, w)

    w.write(
        "customers",
        {
            "customer_id": ids,
            "age": c.age,
            "city_tier": c.tier.astype(np.int8),
            "onboard_day": c.onboard,
            "marketing_consent": c.consent,
            "digital_score": c.digital.astype(np.float32),
        },
    )
    # Hidden truth. bad_next_6m: the realised outcome after the window, for re-tuning risk thresholds.
    bad = rng.random(ids.size) < np.array([0.01, 0.06, 0.3])[c.risk]
    w.write(
        "truth",
        {
            "customer_id": ids,
            "risk_level": _dict(RISK, c.risk),
            "value": _dict(VALUE, c.value),
            "stickiness": _dict(STICKINESS, c.stick),
            "preference": _dict(CATEGORIES, c.pref),
            "lifecycle": _dict(LIFECYCLE, c.life),
            "p_response": p_resp.astype(np.float32),
            "p_binding": p_bind.astype(np.float32),
            "resp_logit": resp_logit.astype(np.float32),
            "has_credit_card": c.has_credit,
            "bound_any": bound_any,
            "bad_next_6m": bad,
        },
    )


def _response_logit(
    rng: np.random.Generator,
    age: np.ndarray,
    value: np.ndarray,
    stick: np.ndarray,
    life: np.ndarray,
    digital: np.ndarray,
    has_credit: np.ndarray,
) -> np.ndarray:
    """True log-odds of answering a card offer; ``latent`` is a trait only past responses reveal."""
    latent = rng.normal(0, 0.6, age.size)
    return (
        -4.3
        + 0.8 * value
        + 0.45 * stick
        + 1.0 * (life == 1)
        - 1.4 * (life == 4)
        + 0.4 * (life == 0)
        - 0.0012 * (age - 36) ** 2
        + 1.2 * (digital - 0.5)
        - 0.6 * has_credit
        + latent
    )


def _contacts(
    rng: np.random.Generator,
    ids: np.ndarray,
    p_resp: np.ndarray,
    p_bind: np.ndarray,
    has_credit: np.ndarray,
    bound_any: np.ndarray,
    onboard: np.ndarray,
    w: _Writers,
) -> None:
    n = ids.size
    n_offer = rng.poisson(1.6, n)
    n_bind = rng.poisson(0.5, n)
    rows: list[dict[str, Any]] = []
    for kind, k, p in ((0, n_offer, p_resp), (1, n_bind, p_bind)):
        owner = np.repeat(np.arange(n), k)
        day = rng.integers(0, WINDOW_DAYS, owner.size)
        ok = day > onboard[owner]
        owner, day = owner[ok], day[ok]
        responded = rng.random(owner.size) < p[owner]
        campaign = (day // 30).astype(np.int16) * 2 + kind
        rows.append(
            {
                "owner": owner,
                "day": day,
                "kind": np.full(owner.size, kind, np.int8),
                "campaign": campaign,
                "responded": responded,
            }
        )
    owner = np.concatenate([r["owner"] for r in rows])
    ch = rng.choice(3, owner.size, p=[0.5, 0.3, 0.2]).astype(np.int8)
    w.write(
        "contacts",
        {
            "customer_id": ids[owner],
            "campaign_id": np.concatenate([r["campaign"] for r in rows]),
            "kind": _dict(("card_offer", "app_binding"), np.concatenate([r["kind"] for r in rows])),
            "channel": _dict(("sms", "call", "app_push"), ch),
            "day": np.concatenate([r["day"] for r in rows]).astype(np.int16),
            "responded": np.concatenate([r["responded"] for r in rows]),
        },
    )


def _mcc_table() -> dict[str, Any]:
    codes = [(c, cat) for cat in CATEGORIES for c in MCC[cat]]
    return {"mcc": np.array([c for c, _ in codes], np.int16), "category": [cat for _, cat in codes]}


def _chunks(spec: BankSpec) -> Iterator[np.ndarray]:
    for start in range(0, spec.n_customers, spec.chunk):
        yield np.arange(start + 1, min(start + spec.chunk, spec.n_customers) + 1, dtype=np.int64)


def generate(out: Path, spec: BankSpec) -> dict[str, Any]:
    """Write the bank's tables, its hidden truth and a manifest to ``out``; returns the manifest."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    seeds = np.random.SeedSequence(spec.seed).spawn(-(-spec.n_customers // spec.chunk))
    w = _Writers(out)
    try:
        for ids, ss in zip(_chunks(spec), seeds, strict=True):
            _chunk(np.random.default_rng(ss), ids, spec, w)
        w.write("mcc", _mcc_table())
    finally:
        w.close()
    manifest = {
        "spec": asdict(spec),
        "window_days": WINDOW_DAYS,
        "as_of_day": WINDOW_DAYS,
        "tables": list(TABLES),
        "truth": "truth.parquet",
        "generator": "callvet.portrait.generate/1",
    }
    for name in (*TABLES, "truth"):
        manifest.setdefault("rows", {})[name] = pq.ParquetFile(out / f"{name}.parquet").metadata.num_rows
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return manifest


def simulate_campaign(
    bank: Path, *, seed: int, kind: str = "card_offer", fraction: float = 0.3, drift: float = 0.3
) -> dict[str, np.ndarray]:
    """A later campaign on the same customers: a random ``fraction`` is contacted after the window and
    responds from its true propensity, moved by a random drift (log-odds sd ``drift``) for the time that
    passed. Returns customer_id and responded arrays (the outcomes a bank would record)."""
    if kind not in ("card_offer", "app_binding"):
        raise ValueError("kind must be card_offer or app_binding")
    truth = pq.read_table(Path(bank) / "truth.parquet", columns=["customer_id", "resp_logit", "p_binding"])
    ids = truth["customer_id"].to_numpy()
    rng = np.random.default_rng(np.random.SeedSequence([seed, 7_777]))
    if kind == "card_offer":
        logit = truth["resp_logit"].to_numpy().astype(float)
    else:
        p = truth["p_binding"].to_numpy().astype(float)
        logit = np.log(p / (1 - p))
    p_later = _sigmoid(logit + rng.normal(0, drift, ids.size))
    chosen = rng.random(ids.size) < fraction
    return {"customer_id": ids[chosen], "responded": rng.random(int(chosen.sum())) < p_later[chosen]}
