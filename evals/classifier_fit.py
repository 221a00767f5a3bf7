"""Fit one head: featurise, train, calibrate, pick thresholds and score its splits.

Part of ``python -m evals.train_classifiers``: the feature cache shared by every head, the
sample weights, the C / pooling grid on the validation split, Platt scaling folded into the
weights, thresholds from macro-averaged customer-benign false-positive budgets, and the split
metrics written into each head's metadata.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, roc_auc_score

from evals.classifier_corpus import (
    Record,
)
from evals.classifier_heads import (
    HeadConfig,
)
from nodes.guards.classifiers import (
    Features,
    FeatureSpec,
    Featurizer,
    TextClassifier,
    Thresholds,
    normalise,
    raw_blocks,
    segments,
    weigh,
)

__all__ = [
    "CUSTOMER_SOURCES", "C_GRID", "FeatureStore", "HeadResult", "MIN_BLOCK", "MIN_ESCALATE",
    "calibration_stats", "confusion", "evaluate_split", "fit_platt", "macro_rate", "rates",
    "sample_weights", "score_all", "threshold_for_macro_rate", "train_head",
]

C_GRID = (4.0, 8.0, 16.0)
# Benign sources that look like customer traffic: the false-positive budget is spent on these,
# macro-averaged (each source counts the same, whatever its size).
CUSTOMER_SOURCES = (
    "sgd_flights",
    "banking77",
    "airline_train",
    "carriers_clean",
    "composite_benign",
    "composite_mixed",
    "written_benign",
    "written_benign_extra",
    "written_guard",
    "written_guard2",
)
# Calibrated-score floors: never block below even odds, never escalate below 0.2.
MIN_BLOCK = 0.5
MIN_ESCALATE = 0.2


class FeatureStore:
    """Featurises each distinct text once; rows of a CSR matrix are looked up by text.

    Texts are hashed into raw (word, char) blocks first; once the IDF vector is known,
    :meth:`finalise` weighs them with the runtime's own ``weigh`` so training features and
    production features are computed by the same code.
    """

    def __init__(self, spec: FeatureSpec) -> None:
        self.spec = spec
        self.row: dict[str, int] = {}
        self.raw: list[Any] = []
        self.features: list[Features] = []
        self.idf: npt.NDArray[np.float32] | None = None

    def add(self, texts: Iterable[str]) -> None:
        """Hash each new text into raw blocks (and weigh it once the IDF is known)."""
        for t in texts:
            if t not in self.row:
                self.row[t] = len(self.raw)
                self.raw.append(raw_blocks(t, self.spec))
                if self.idf is not None:
                    self.features.append(weigh(self.raw[-1], self.idf))

    def fit_idf(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """Smoothed IDF over ``texts``: ln((1 + N) / (1 + df)) + 1, as float32."""
        df = np.zeros(self.spec.n_features, dtype=np.int64)
        for t in dict.fromkeys(texts):
            (wi, _), (ci, _) = self.raw[self.row[t]]
            df[np.unique(np.concatenate([wi, ci]))] += 1
        n_docs = len(dict.fromkeys(texts))
        return (np.log((1.0 + n_docs) / (1.0 + df)) + 1.0).astype(np.float32)

    def finalise(self, idf: npt.NDArray[np.float32]) -> None:
        """Weigh every stored text with ``idf``, as the runtime does."""
        self.idf = idf
        self.features = [weigh(raw, idf) for raw in self.raw]

    def get(self, text: str) -> Features:
        """Return the weighed features of a stored text."""
        return self.features[self.row[text]]

    def parts(self, text: str, pooled: bool) -> tuple[Features, ...]:
        """The runtime's ``featurize_parts`` result, from the cache."""
        if not pooled:
            return (self.get(text),)
        return (self.get(text), *(self.get(seg) for seg in segments(text)))

    def pooled_logits(
        self, texts: Sequence[str], coef: npt.NDArray[np.float64], intercept: float, pooled: bool
    ) -> npt.NDArray[np.float64]:
        """Raw logits per text, max over the whole text and its segments when ``pooled``."""
        if not pooled:
            return np.asarray(self.matrix(texts) @ coef + intercept, dtype=np.float64)
        parts: list[str] = []
        owner: list[int] = []
        for i, t in enumerate(texts):
            for part in (t, *segments(t)):
                parts.append(part)
                owner.append(i)
        z = np.asarray(self.matrix(parts) @ coef + intercept, dtype=np.float64)
        out = np.full(len(texts), -np.inf)
        np.maximum.at(out, np.asarray(owner), z)
        return out

    def matrix(self, texts: Sequence[str]) -> sp.csr_matrix:
        """Stack the features of ``texts`` into a CSR matrix, one row per text."""
        feats = [self.get(t) for t in texts]
        indptr = np.zeros(len(feats) + 1, dtype=np.int64)
        indptr[1:] = np.cumsum([f.indices.size for f in feats])
        indices = np.concatenate([f.indices for f in feats]) if feats else np.zeros(0, np.int64)
        data = np.concatenate([f.values for f in feats]) if feats else np.zeros(0)
        x = sp.csr_matrix(
            (data, indices.astype(np.int32), indptr), shape=(len(feats), self.spec.n_features)
        )
        x.sum_duplicates()  # a word and a char feature may hash to the same index
        return x


def sample_weights(
    y: npt.NDArray[np.int64], sources: Sequence[str], boost: Mapping[str, float]
) -> npt.NDArray[np.float64]:
    """Class-balanced weights; within a class each source gets a share ~ sqrt(size) * boost."""
    src = np.asarray(sources)
    w = np.zeros(len(y), dtype=np.float64)
    for cls in (0, 1):
        in_cls = y == cls
        counts = Counter(src[in_cls].tolist())
        shares = {s: math.sqrt(n) * boost.get(s, 1.0) for s, n in sorted(counts.items())}
        total = sum(shares.values())
        for s, n in sorted(counts.items()):
            w[in_cls & (src == s)] = 0.5 * len(y) * shares[s] / total / n
    return w


def fit_platt(
    z: npt.NDArray[np.float64], y: npt.NDArray[np.int64], w: npt.NDArray[np.float64]
) -> tuple[float, float]:
    """Fit p = sigmoid(a*z + c) by weighted Newton-Raphson with backtracking.

    A small ridge on (a, c) keeps the fit finite when validation scores are (nearly)
    separable, where plain Newton would push ``a`` to infinity and saturate every score.
    """
    w = w / w.sum()
    ridge = 1e-4

    def loss(a: float, c: float) -> float:
        m = a * z + c
        # log(1 + exp(-m)) for y=1 and log(1 + exp(m)) for y=0, computed stably.
        ll = np.logaddexp(0.0, np.where(y == 1, -m, m))
        return float(np.sum(w * ll)) + 0.5 * ridge * (a * a + c * c)

    a, c = 1.0, 0.0
    current = loss(a, c)
    for _ in range(100):
        p = 0.5 * (1.0 + np.tanh(0.5 * (a * z + c)))
        g = p - y
        grad = np.array([np.sum(w * g * z) + ridge * a, np.sum(w * g) + ridge * c])
        s = w * p * (1.0 - p)
        hess = np.array(
            [[np.sum(s * z * z) + ridge, np.sum(s * z)], [np.sum(s * z), np.sum(s) + ridge]]
        )
        step = np.linalg.solve(hess, grad)
        t = 1.0
        while t > 1e-6:
            na, nc = a - t * float(step[0]), c - t * float(step[1])
            new = loss(na, nc)
            if new <= current:
                break
            t *= 0.5
        else:
            break
        done = current - new < 1e-12
        a, c, current = na, nc, new
        if done:
            break
    return a, c


def macro_rate(groups: Sequence[npt.NDArray[np.float64]], t: float) -> float:
    """Return the mean over groups of the share of scores >= t."""
    return float(np.mean([np.mean(g >= t) for g in groups])) if groups else 0.0


def threshold_for_macro_rate(groups: Sequence[npt.NDArray[np.float64]], rate: float) -> float:
    """Return the smallest 4-decimal t with macro_rate(groups, t) <= rate.

    Macro-averaging gives a 130-message source the same say as a 2000-message one, so one
    badly-served kind of customer message cannot hide inside a big easy one.
    """
    groups = [np.sort(g) for g in groups if g.size]
    if not groups:
        return 0.5
    cands = np.unique(np.concatenate(groups))
    # share of each group strictly above each candidate; non-increasing in the candidate.
    above = np.mean(
        [(g.size - np.searchsorted(g, cands, side="right")) / g.size for g in groups], axis=0
    )
    # The smallest candidate c whose "strictly above c" share fits the budget; any t <= c would
    # also count the scores equal to c (or the previous candidate's), which do not fit.
    ok = np.nonzero(above <= rate)[0]
    c = float(cands[ok[0]]) if ok.size else float(cands[-1])
    return math.floor(c * 1e4) / 1e4 + 1e-4


def score_all(
    clf: TextClassifier, store: FeatureStore, texts: Sequence[str]
) -> npt.NDArray[np.float64]:
    """Score through the runtime code path, so reported numbers are what production computes."""
    return np.array([clf.score_parts(store.parts(t, clf.pooled)) for t in texts])


def _r(x: float, nd: int = 4) -> float:
    return float(round(float(x), nd))


def confusion(
    y: npt.NDArray[np.int64], s: npt.NDArray[np.float64], th: Thresholds
) -> dict[str, Any]:
    """Return the 2x2 confusion at the block threshold and the 3-way action table."""
    block = s >= th.block
    esc = (s >= th.escalate) & ~block
    table = {}
    for cls, name in ((0, "negative"), (1, "positive")):
        m = y == cls
        table[name] = {
            "allow": int(np.sum(m & ~block & ~esc)),
            "escalate": int(np.sum(m & esc)),
            "block": int(np.sum(m & block)),
        }
    tp = int(np.sum(block & (y == 1)))
    fp = int(np.sum(block & (y == 0)))
    fn = int(np.sum(~block & (y == 1)))
    tn = int(np.sum(~block & (y == 0)))
    return {"at_block": {"tn": tn, "fp": fp, "fn": fn, "tp": tp}, "actions": table}


def rates(s: npt.NDArray[np.float64], th: Thresholds) -> dict[str, float]:
    n = max(1, s.size)
    block = float(np.sum(s >= th.block)) / n
    flagged = float(np.sum(s >= th.escalate)) / n
    return {"block": _r(block), "escalate": _r(flagged - block), "flagged": _r(flagged)}


def calibration_stats(
    y: npt.NDArray[np.int64], s: npt.NDArray[np.float64], w: npt.NDArray[np.float64]
) -> dict[str, float]:
    """Weighted Brier score and 10-bin ECE (class-balanced weights = the calibration prior)."""
    w = w / w.sum()
    brier = float(np.sum(w * (s - y) ** 2))
    bins = np.minimum((s * 10).astype(int), 9)
    ece = 0.0
    for b in range(10):
        m = bins == b
        if m.any():
            wb = float(w[m].sum())
            ece += abs(float(np.sum(w[m] * s[m])) - float(np.sum(w[m] * y[m]))) / wb * wb
    return {"brier": _r(brier), "ece": _r(ece)}


def evaluate_split(
    y: npt.NDArray[np.int64],
    s: npt.NDArray[np.float64],
    sources: Sequence[str],
    w: npt.NDArray[np.float64],
    th: Thresholds,
) -> dict[str, Any]:
    src = np.asarray(sources)
    cust = (y == 0) & np.isin(src, CUSTOMER_SOURCES)
    out: dict[str, Any] = {
        "n_positive": int(np.sum(y == 1)),
        "n_negative": int(np.sum(y == 0)),
        "roc_auc": _r(roc_auc_score(y, s)),
        "average_precision": _r(average_precision_score(y, s)),
        "recall_at_block": _r(np.mean(s[y == 1] >= th.block)),
        "recall_at_escalate": _r(np.mean(s[y == 1] >= th.escalate)),
        "fpr_at_block": _r(np.mean(s[y == 0] >= th.block)),
        "fpr_at_escalate": _r(np.mean(s[y == 0] >= th.escalate)),
        "customer_benign": {"n": int(cust.sum()), **rates(s[cust], th)},
        "customer_benign_macro": {
            "block": _r(macro_rate([s[(y == 0) & (src == c)] for c in CUSTOMER_SOURCES
                                    if np.any((y == 0) & (src == c))], th.block)),
            "flagged": _r(macro_rate([s[(y == 0) & (src == c)] for c in CUSTOMER_SOURCES
                                      if np.any((y == 0) & (src == c))], th.escalate)),
        },
        "calibration": calibration_stats(y, s, w),
        "confusion": confusion(y, s, th),
    }
    per_source: dict[str, Any] = {}
    for name in sorted(set(src.tolist())):
        for cls in (1, 0):
            m = (src == name) & (y == cls)
            if m.any():
                key = f"{name}:{'pos' if cls else 'neg'}"
                per_source[key] = {"n": int(m.sum()), **rates(s[m], th)}
    out["per_source"] = per_source
    return out


@dataclass
class HeadResult:
    """A trained head: runtime classifier plus everything the metadata and report need."""

    config: HeadConfig
    classifier: TextClassifier
    weights: npt.NDArray[np.float32]
    bias: float
    meta: dict[str, Any]


def train_head(
    cfg: HeadConfig,
    records: Sequence[Record],
    store: FeatureStore,
    featurizer: Featurizer,
    seed: int,
    log: Callable[[str], None],
) -> HeadResult:
    rows: dict[str, list[tuple[Record, int]]] = {"train": [], "val": [], "test": []}
    for r in records:
        y = cfg.label(r)
        if y is not None and r.split in rows:
            rows[r.split].append((r, y))
    # The same normalised text on both sides of one head (e.g. "Thank you!" in SGD and in
    # BANKING77 for the topic head) is kept on the negative side only.
    neg_texts = {normalise(r.text) for split in rows.values() for r, y in split if y == 0}
    dropped = 0
    for split in rows:
        kept = [(r, y) for r, y in rows[split] if not (y == 1 and normalise(r.text) in neg_texts)]
        dropped += len(rows[split]) - len(kept)
        rows[split] = kept

    def arrays(split: str) -> tuple[list[str], npt.NDArray[np.int64], list[str]]:
        texts = [r.text for r, _ in rows[split]]
        y = np.array([v for _, v in rows[split]], dtype=np.int64)
        return texts, y, [r.source for r, _ in rows[split]]

    tr_texts, y_tr, src_tr = arrays("train")
    va_texts, y_va, src_va = arrays("val")
    te_texts, y_te, src_te = arrays("test")
    x_tr = store.matrix(tr_texts)
    w_tr = sample_weights(y_tr, src_tr, cfg.boost)
    w_va = sample_weights(y_va, src_va, cfg.boost)
    w_te = sample_weights(y_te, src_te, cfg.boost)
    src_va_arr = np.asarray(src_va)
    cust_groups = [
        np.flatnonzero((y_va == 0) & (src_va_arr == s))
        for s in CUSTOMER_SOURCES
        if np.any((y_va == 0) & (src_va_arr == s))
    ]
    if not cust_groups:
        cust_groups = [np.flatnonzero(y_va == 0)]

    grid: dict[str, Any] = {}
    best: tuple[float, float, float, int] | None = None
    best_model: LogisticRegression | None = None
    best_pooling = cfg.pooling[0]
    for c in C_GRID:
        t0 = time.perf_counter()
        model = LogisticRegression(
            C=c, solver="liblinear", dual=True, max_iter=2000, tol=1e-4, random_state=seed
        )
        model.fit(x_tr, y_tr, sample_weight=w_tr)
        for pooling in cfg.pooling:
            z = store.pooled_logits(
                va_texts, model.coef_.ravel(), float(model.intercept_[0]), pooling != "none"
            )
            t_block = threshold_for_macro_rate([z[g] for g in cust_groups], cfg.block_fpr)
            recall = float(np.mean(z[y_va == 1] >= t_block))
            ap = float(average_precision_score(y_va, z, sample_weight=w_va))
            grid[f"C={c:g},pooling={pooling}"] = {
                "val_recall_at_block_fpr": _r(recall),
                "val_weighted_ap": _r(ap),
            }
            log(f"  {cfg.name}: C={c:g} pooling={pooling} recall@{cfg.block_fpr:.2%}FPR="
                f"{recall:.4f} wAP={ap:.4f} ({time.perf_counter() - t0:.1f}s)")
            key = (recall, ap, -c, -len(pooling))
            if best is None or key > best:
                best, best_model, best_pooling = key, model, pooling
    assert best_model is not None
    coef = best_model.coef_.ravel().astype(np.float64)
    intercept = float(best_model.intercept_[0])
    chosen_c = float(best_model.C)
    pooled = best_pooling != "none"

    # Platt scaling on the validation split, folded into the linear model.
    # max(a*z_i + c) == a*max(z_i) + c for a > 0, so calibrating the pooled logit folds too.
    z_va = store.pooled_logits(va_texts, coef, intercept, pooled)
    a, c0 = fit_platt(z_va, y_va, w_va)
    weights = (coef * a).astype(np.float32)
    bias = float(np.float32(intercept * a + c0))
    pooling = best_pooling
    provisional = TextClassifier(
        name=cfg.name, weights=weights, bias=bias, featurizer=featurizer,
        thresholds=Thresholds(block=1.0, escalate=1.0), pooling=pooling,
    )
    s_va = score_all(provisional, store, va_texts)
    neg_ref = [s_va[g] for g in cust_groups]
    t_block = min(1.0, max(threshold_for_macro_rate(neg_ref, cfg.block_fpr), MIN_BLOCK))
    t_esc = max(threshold_for_macro_rate(neg_ref, cfg.escalate_fpr), MIN_ESCALATE)
    th = Thresholds(block=_r(t_block), escalate=_r(min(t_esc, t_block)))
    clf = TextClassifier(
        name=cfg.name, weights=weights, bias=bias, featurizer=featurizer, thresholds=th,
        pooling=pooling,
    )
    # Refuse to ship a degenerate head (e.g. a calibration that saturated every score).
    val_recall = float(np.mean(s_va[y_va == 1] >= th.escalate))
    if th.block >= 0.999 or val_recall < 0.8 or not 0.0 < a < 1e4:
        raise RuntimeError(
            f"{cfg.name}: degenerate head (thresholds {th}, validation recall at escalate "
            f"{val_recall:.3f}, Platt slope {a:.3g}); refusing to write artefacts"
        )
    s_te = score_all(clf, store, te_texts)

    def counts(split: str) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {"positive": {}, "negative": {}}
        for r, y in rows[split]:
            side = out["positive" if y else "negative"]
            side[r.source] = side.get(r.source, 0) + 1
        return {k: dict(sorted(v.items())) for k, v in out.items()}

    meta = {
        "training": {
            "C": chosen_c,
            "pooling_selected": best_pooling,
            "c_grid": grid,
            "solver": "sklearn LogisticRegression(solver='liblinear', dual=True, L2)",
            "sample_weights": "class-balanced; within a class, source share ~ sqrt(n) * boost",
            "source_boost": dict(sorted(cfg.boost.items())),
            "conflicting_positives_dropped": dropped,
            "counts": {s: counts(s) for s in ("train", "val", "test")},
        },
        "calibration": {
            "method": "Platt scaling on the validation split, folded into weights and bias",
            "a": _r(a, 6),
            "c": _r(c0, 6),
            "prior": "class-balanced (0.5); for a deployment prior pi add ln(pi/(1-pi)) "
            "to the logit",
        },
        "threshold_selection": {
            "reference": "validation customer-benign messages, FPR macro-averaged over "
            f"sources {list(CUSTOMER_SOURCES)}",
            "block": f"max({MIN_BLOCK}, smallest t with macro FPR <= {cfg.block_fpr:.2%})",
            "escalate": f"max({MIN_ESCALATE}, smallest t with macro share at or above t <= "
            f"{cfg.escalate_fpr:.2%}), capped at block",
        },
        "metrics": {
            "val": evaluate_split(y_va, s_va, src_va, w_va, th),
            "test": evaluate_split(y_te, s_te, src_te, w_te, th),
        },
    }
    return HeadResult(config=cfg, classifier=clf, weights=weights, bias=bias, meta=meta)
