"""Stacking: run alignment, the three stackers as scikit-learn estimators, inner CV, pseudo-labels."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

from specimg.exceptions import DataError, NotFittedError, ParameterError
from specimg.predict.aggregate import predictions_frame
from specimg.stacking import (
    CNNStacker,
    LGBMStacker,
    WeightedBlend,
    align_runs,
    compare_stackers,
    cross_val_stack,
    pseudo_training_table,
    select_pseudo_labels,
)

CLASSES = ["0", "1", "2", "3"]


pytestmark = pytest.mark.usefixtures("one_thread")  # small models: one thread is faster on 2 cores


def _softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _synthetic(n, seed, n_models=3):
    """Model 0 is informative but unsure; the others are confident noise."""
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, len(CLASSES), n)
    X = np.empty((n, n_models, len(CLASSES)))
    X[:, 0] = _softmax(1.0 * np.eye(len(CLASSES))[codes] + 0.5 * rng.standard_normal((n, len(CLASSES))))
    for m in range(1, n_models):
        X[:, m] = _softmax(3.0 * rng.standard_normal((n, len(CLASSES))))
    return X, np.asarray(CLASSES)[codes]


@pytest.fixture(scope="module")
def data():
    X_train, y_train = _synthetic(400, seed=0)
    X_test, y_test = _synthetic(400, seed=1)
    return X_train, y_train, X_test, y_test


def _accuracy(probs, y):
    return float(np.mean(np.asarray(CLASSES)[np.argmax(probs, axis=1)] == y))


FACTORIES = {
    "cnn": lambda: CNNStacker(hidden=8, epochs=15, batch_size=64, seed=3),
    "cnn_skip": lambda: CNNStacker(hidden=8, epochs=15, batch_size=64, seed=3, skip=True),
    "lgbm": lambda: LGBMStacker(n_estimators=20, num_leaves=7, min_child_samples=5, n_jobs=1),
    "blend": lambda: WeightedBlend(fit_weights=True),
}


# ---------------------------------------------------------------- estimator contract
@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_sklearn_contract(name, data):
    X, y, X_test, _ = data
    est = FACTORIES[name]()
    params = est.get_params()
    state_before = set(vars(est))

    # clone / get_params / set_params round-trip
    twin = clone(est)
    assert twin is not est and twin.get_params() == params
    assert est.set_params(**params) is est

    # not fitted yet
    with pytest.raises(NotFittedError, match="not fitted"):
        est.predict_proba(X_test)
    with pytest.raises(AttributeError):  # NotFittedError is also an AttributeError, like scikit-learn's
        est.predict(X_test)

    assert est.fit(X, y) is est
    learned = set(vars(est)) - state_before
    assert learned and all(a.endswith("_") and not a.startswith("_") for a in learned), learned
    assert est.classes_.tolist() == CLASSES
    assert est.get_params() == params  # fit does not touch the parameters

    proba = est.predict_proba(X_test)
    assert proba.shape == (len(X_test), len(CLASSES))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-9)
    assert np.all(proba >= 0)
    assert set(est.predict(X_test)) <= set(CLASSES)

    # deterministic with the seed; survives pickling
    again = clone(est).fit(X, y).predict_proba(X_test)
    np.testing.assert_array_equal(again, proba)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(est)).predict_proba(X_test), proba)


def test_lgbm_extra_params_survive_clone():
    est = LGBMStacker(n_estimators=7, min_child_samples=3, subsample=0.5)
    assert est.get_params()["min_child_samples"] == 3
    twin = clone(est)
    assert twin.get_params()["subsample"] == 0.5
    twin.set_params(reg_alpha=2.0, n_estimators=9)  # an option LightGBM has and LGBMStacker does not name
    assert twin.get_params()["reg_alpha"] == 2.0 and twin.n_estimators == 9
    assert "reg_alpha" not in est.get_params()


def test_stackers_beat_the_mean_of_models(data):
    X, y, X_test, y_test = data
    mean_acc = _accuracy(X_test.mean(axis=1), y_test)  # confident noise drowns the informative model
    informative_acc = _accuracy(X_test[:, 0], y_test)
    assert mean_acc < 0.45 and informative_acc > 0.75  # the data is what the test means it to be
    cnn = CNNStacker(hidden=8, epochs=40, seed=0).fit(X, y)
    lgbm = LGBMStacker(n_estimators=60, num_leaves=7, n_jobs=1).fit(X, y)
    for est in (cnn, lgbm):
        acc = _accuracy(est.predict_proba(X_test), y_test)
        assert acc > mean_acc + 0.25, (type(est).__name__, acc, mean_acc)


def test_fitted_blend_weights_the_informative_member(data):
    X, y, X_test, y_test = data
    blend = WeightedBlend(fit_weights=True).fit(X, y)
    assert blend.weights_.shape == (3,)
    assert blend.weights_.sum() == pytest.approx(1.0) and np.all(blend.weights_ >= 0)
    assert blend.weights_[0] > 0.9
    assert _accuracy(blend.predict_proba(X_test), y_test) > _accuracy(X_test.mean(axis=1), y_test) + 0.25


def test_fixed_blend_weights_exact():
    a = np.array([[1.0, 0.0], [0.5, 0.5]])
    b = np.array([[0.0, 1.0], [0.5, 0.5]])
    c = np.array([[0.5, 0.5], [1.0, 0.0]])
    blend = WeightedBlend(weights=(0.45, 0.45, 0.1), classes=["x", "y"]).fit([a, b, c], ["x", "y"])
    np.testing.assert_allclose(blend.predict_proba([a, b, c]), [[0.5, 0.5], [0.55, 0.45]])
    np.testing.assert_allclose(WeightedBlend(weights=[2, 2, 0]).fit([a, b, c], ["x", "y"]).weights_, [0.5, 0.5, 0])
    np.testing.assert_allclose(WeightedBlend().fit([a, b, c], ["x", "y"]).weights_, [1 / 3] * 3)


def test_cnn_skip_changes_the_network(data):
    X, y, X_test, _ = data
    kw = dict(hidden=4, epochs=2, early_stopping=False)
    plain = CNNStacker(seed=0, **kw).fit(X, y).predict_proba(X_test)
    skip = CNNStacker(seed=0, skip=True, **kw).fit(X, y).predict_proba(X_test)
    assert not np.allclose(plain, skip)
    other_seed = CNNStacker(seed=1, **kw).fit(X, y).predict_proba(X_test)
    assert not np.allclose(plain, other_seed)


def test_lgbm_extra_features():
    rng = np.random.default_rng(0)
    n = 300
    codes = rng.integers(0, 3, n)
    y = np.asarray(["a", "b", "c"])[codes]
    X = rng.dirichlet(np.ones(3), size=(n, 2))  # the models know nothing
    extra = pd.DataFrame({"duration": codes + 0.1 * rng.standard_normal(n), "junk": rng.standard_normal(n)})
    est = LGBMStacker(n_estimators=30, num_leaves=7, extra_features=["duration"], n_jobs=1)
    est.fit(X[:200], y[:200], extra=extra.iloc[:200])
    assert est.feature_names_[-1] == "duration" and est.n_extra_ == 1
    acc = np.mean(est.predict(X[200:], extra=extra.iloc[200:]) == y[200:])
    without = LGBMStacker(n_estimators=30, num_leaves=7, n_jobs=1).fit(X[:200], y[:200])
    acc_without = np.mean(without.predict(X[200:]) == y[200:])
    assert acc > 0.9 and acc > acc_without + 0.3
    with pytest.raises(DataError, match="extra"):
        est.predict_proba(X[200:])
    with pytest.raises(DataError, match="duration"):
        est.predict_proba(X[200:], extra=extra[["junk"]].iloc[200:])


@pytest.mark.parametrize(
    "make, X, y, exc, match",
    [
        (lambda: CNNStacker(), np.ones((4, 4)) / 4, ["0"] * 4, DataError, "n_files, n_models, n_classes"),
        (lambda: CNNStacker(epochs=-1), np.full((4, 1, 2), 0.5), ["0", "1"] * 2, ParameterError, "epochs"),
        (lambda: CNNStacker(lr=-1.0), np.full((4, 1, 2), 0.5), ["0", "1"] * 2, ParameterError, "'lr'"),
        (lambda: LGBMStacker(num_leaves=1), np.full((4, 1, 2), 0.5), ["0", "1"] * 2, ParameterError, "num_leaves"),
        (lambda: WeightedBlend(weights=[1, 1]), np.full((4, 3, 2), 0.5), ["0", "1"] * 2, DataError, "3 members"),
        (lambda: WeightedBlend(weights=[1, -1]), np.full((4, 2, 2), 0.5), ["0", "1"] * 2, ParameterError, ">= 0"),
        (lambda: WeightedBlend(), np.full((4, 2, 3), 1 / 3), ["0", "1"] * 2, DataError, "classes="),
        (lambda: WeightedBlend(classes=["0", "1"]), np.full((4, 2, 2), 0.5), ["0", "9"] * 2, DataError, "'9'"),
        (lambda: WeightedBlend(), -np.full((4, 2, 2), 0.5), ["0", "1"] * 2, DataError, "logits"),
        (lambda: WeightedBlend(), np.full((4, 2, 2), 0.5), ["0", "1", None, "1"], DataError, "missing labels"),
    ],
)
def test_bad_fit_input(make, X, y, exc, match):
    with pytest.raises(exc, match=match):
        make().fit(X, y)


def test_predict_input_must_match_fit(data):
    X, y, X_test, _ = data
    blend = WeightedBlend().fit(X, y)
    with pytest.raises(DataError, match=r"\(n_files, 3, 4\)"):
        blend.predict_proba(X_test[:, :2])


# ---------------------------------------------------------------- starting from the mean
def _calibrated_by_the_mean(n=600, seed=0):
    """Labels drawn from the mean of three random models: nothing beats the mean, so a stacker should stay there."""
    rng = np.random.default_rng(seed)
    X = _softmax(1.5 * rng.standard_normal((n, 3, len(CLASSES))))
    codes = np.array([rng.choice(len(CLASSES), p=p) for p in X.mean(axis=1)])
    return X, np.asarray(CLASSES)[codes]


@pytest.mark.parametrize("skip", [False, True])
def test_untrained_cnn_stacker_is_the_mean(data, skip):
    X, y, X_test, _ = data
    est = CNNStacker(epochs=0, skip=skip, classes=CLASSES).fit(X, y)
    np.testing.assert_allclose(est.predict_proba(X_test), X_test.mean(axis=1), rtol=0, atol=1e-9)
    np.testing.assert_allclose(est.model_weights_, np.full((3, len(CLASSES)), 1 / 3), atol=1e-12)
    assert est.best_epoch_ == 0 and est.temperature_ == 1.0
    # the network itself at its initialisation, on inputs with zeros (the log never sees a 0)
    net = CNNStacker(skip=skip, seed=5)._new_net(3, len(CLASSES)).double()
    xs = np.array([[[1.0, 0, 0, 0], [0.5, 0.5, 0, 0], [0, 0, 0, 1.0]]])
    import torch

    with torch.no_grad():
        proba = torch.softmax(net(torch.as_tensor(xs)), dim=1).numpy()
    np.testing.assert_allclose(proba, xs.mean(axis=1), atol=1e-9)


def test_cnn_stacker_stays_at_the_mean_when_the_data_says_nothing():
    X, y = _calibrated_by_the_mean()
    groups = np.arange(len(X)) % 5
    mean = X.mean(axis=1)
    stopped = CNNStacker(classes=CLASSES).fit(X, y, groups=groups)
    assert stopped.best_epoch_ == 0  # no held-out gain beyond its noise: the stacker stays the mean, exactly
    np.testing.assert_allclose(stopped.predict_proba(X), mean, atol=1e-9)
    # taking any held-out gain (tol_se=0) lets chance move it: the gain is within two standard errors
    lucky = CNNStacker(classes=CLASSES, tol_se=0.0).fit(X, y, groups=groups)
    assert lucky.best_epoch_ > 0 and np.abs(lucky.predict_proba(X) - mean).max() > 0.05
    # without early stopping and without the pull toward the start it wanders off on the same data ...
    free = CNNStacker(classes=CLASSES, early_stopping=False, weight_decay=0.0, epochs=100).fit(X, y)
    assert np.abs(free.predict_proba(X) - mean).max() > 0.2
    # ... and a strong weight decay toward the start keeps it at the mean even after 100 epochs
    held = CNNStacker(classes=CLASSES, early_stopping=False, weight_decay=100.0, epochs=100).fit(X, y)
    assert np.abs(held.predict_proba(X) - mean).max() < 0.01


def test_lgbm_stacker_starts_from_the_mean():
    X, y = _calibrated_by_the_mean()
    mean = X.mean(axis=1)
    # one tree that barely moves: the start is the mean (LightGBM's own start would be the class priors)
    tiny = LGBMStacker(n_estimators=1, learning_rate=1e-9, early_stopping=False, classes=CLASSES).fit(X, y)
    np.testing.assert_allclose(tiny.predict_proba(X), mean, atol=1e-6)
    prior = LGBMStacker(n_estimators=1, learning_rate=1e-9, early_stopping=False, start="zero",
                        classes=CLASSES).fit(X, y)
    assert np.abs(prior.predict_proba(X) - mean).max() > 0.3
    # early stopping on held-out groups finds no tree better than the start: zero trees, exactly the mean
    stopped = LGBMStacker(classes=CLASSES).fit(X, y, groups=np.arange(len(X)) % 5)
    assert stopped.best_iteration_ == 0 and stopped.booster_ is None
    np.testing.assert_allclose(stopped.predict_proba(X), mean, atol=1e-9)
    np.testing.assert_allclose(stopped.model_weights_, 1 / 3)


def test_stackers_calibrate_overconfident_models():
    rng = np.random.default_rng(0)
    codes = rng.integers(0, len(CLASSES), 1200)
    X = _softmax(4.0 * (np.eye(len(CLASSES))[codes][:, None, :] + rng.standard_normal((1200, 3, len(CLASSES)))))
    y = np.asarray(CLASSES)[codes]

    def log_loss(p, c):
        return float(-np.mean(np.log(np.clip(p[np.arange(len(c)), c], 1e-15, None))))

    mean_ll = log_loss(X[900:].mean(axis=1), codes[900:])  # 0.86
    cnn = CNNStacker(classes=CLASSES).fit(X[:900], y[:900])
    assert log_loss(cnn.predict_proba(X[900:]), codes[900:]) < mean_ll - 0.02  # the models are too sure (0.83)
    lgbm = LGBMStacker(classes=CLASSES).fit(X[:900], y[:900])
    assert log_loss(lgbm.predict_proba(X[900:]), codes[900:]) < mean_ll - 0.05  # (0.74)


def test_early_stopping_holds_out_whole_groups():
    from specimg.stacking._align import early_stopping_split

    codes = np.arange(200) % 4
    groups = np.arange(200) // 20  # 10 groups of 20 files
    train, val = early_stopping_split(codes, groups, fraction=0.2, seed=0)
    assert not set(groups[train]) & set(groups[val]) and len(set(groups[val])) == 2
    train, val = early_stopping_split(codes, None, fraction=0.2, seed=0)
    assert len(val) == 40 and np.bincount(codes[val]).tolist() == [10, 10, 10, 10]  # stratified by class
    assert early_stopping_split(codes[:5], None, fraction=0.2, seed=0) is None  # too few files to hold some out


def test_leaving_the_start_needs_a_gain_beyond_its_noise():
    from specimg.stacking._align import beats_the_start

    rng = np.random.default_rng(0)
    start = np.full(400, 1.0)
    small = start - (0.01 + 0.2 * rng.standard_normal(400))  # mean gain 0.01, standard error 0.01
    big = start - (0.05 + 0.2 * rng.standard_normal(400))  # mean gain 0.05: five standard errors
    assert not beats_the_start(start, small, tol_se=2.0) and beats_the_start(start, small, tol_se=0.0)
    assert beats_the_start(start, big, tol_se=2.0)
    assert not beats_the_start(start, start + 0.01, tol_se=0.0)  # worse is never better


def test_learned_model_weights_favour_the_informative_model(data):
    X, y, _, _ = data
    cnn = CNNStacker(classes=CLASSES).fit(X, y)
    lgbm = LGBMStacker(classes=CLASSES).fit(X, y)
    for est in (cnn, lgbm):
        w = est.model_weights_
        assert w.shape == (3, len(CLASSES))
        np.testing.assert_allclose(w.sum(axis=0), 1.0)
        assert (w[0] > w[1]).all() and (w[0] > w[2]).all(), (type(est).__name__, w)


# ---------------------------------------------------------------- inner cross-validation
def test_cross_val_stack_out_of_fold(data):
    X, y, _, _ = data
    oof = cross_val_stack(WeightedBlend(fit_weights=True), X, y, n_splits=4, seed=0)
    assert oof.shape == (len(X), len(CLASSES)) and not np.isnan(oof).any()
    assert _accuracy(oof, y) > _accuracy(X.mean(axis=1), y) + 0.25
    np.testing.assert_array_equal(oof, cross_val_stack(WeightedBlend(fit_weights=True), X, y, n_splits=4, seed=0))


class _Recorder(WeightedBlend):
    """Records which groups each clone was trained on."""

    seen: list = []

    def fit(self, X, y):
        _Recorder.seen.append(X[:, 0, 0].copy())
        return super().fit(X, y)


def test_cross_val_stack_keeps_groups_apart(data):
    X, y, _, _ = data
    groups = np.arange(len(X)) % 8
    Xg = X.copy()
    Xg[:, 0, 0] = groups  # smuggle the group id into a cell so the recorder can see it
    _Recorder.seen = []
    oof = cross_val_stack(_Recorder(classes=CLASSES), Xg, y, groups=groups, n_splits=4)
    assert len(_Recorder.seen) == 4 and not np.isnan(oof).any()
    held_out = [set(range(8)) - set(np.unique(seen).astype(int)) for seen in _Recorder.seen]
    assert all(len(h) == 2 for h in held_out)  # 8 groups, 4 splits: each split holds 2 whole groups out
    assert set().union(*held_out) == set(range(8))
    with pytest.raises(DataError, match="groups"):
        cross_val_stack(WeightedBlend(), X, y, groups=groups % 2, n_splits=4)


# ---------------------------------------------------------------- every candidate, and auto
CHEAP = {"cnn": {"hidden": 4, "epochs": 30}, "lgbm": {"n_estimators": 60}}  # small stackers: CI-sized


def _folded(n=240, seed=0):
    X, y = _synthetic(n, seed=seed)
    return X, y, np.arange(n) % 3  # three outer folds


@pytest.fixture(scope="module")
def comparison():
    X, y, folds = _folded()
    X_test, _ = _synthetic(50, seed=9)
    cmp = compare_stackers(X, y, folds, classes=CLASSES, names=["good", "noise1", "noise2"], X_test=X_test,
                           params=CHEAP)
    return X, y, folds, X_test, cmp


def test_compare_scores_every_candidate_on_the_same_folds(comparison):
    X, y, folds, _, cmp = comparison
    assert cmp.candidates == ["good", "noise1", "noise2", "mean", "blend", "cnn", "cnn-skip", "lgbm", "seed-blend",
                              "auto"]
    assert cmp.fold_labels == ["0", "1", "2"]
    per_fold = cmp.scores[cmp.scores["fold"] != "all"]
    assert per_fold.groupby("candidate").size().eq(3).all() and (per_fold["n_files"] == 80).all()
    for c in cmp.candidates:  # each per-fold score is the score of that candidate's predictions on that fold
        for k, label in enumerate(cmp.fold_labels):
            rows = folds == int(label)
            acc = _accuracy(cmp.oof[c][rows], y[rows])
            assert per_fold.query("candidate == @c and fold == @label")["accuracy"].item() == pytest.approx(acc)
    np.testing.assert_allclose(cmp.oof["good"], X[:, 0])
    np.testing.assert_allclose(cmp.oof["mean"], X.mean(axis=1))
    table = cmp.table()
    assert table["candidate"].tolist() == cmp.candidates
    assert [c for c in table.columns if c.startswith("fold ")] == ["fold 0", "fold 1", "fold 2"]


def test_outer_folds_are_held_out_for_every_learned_candidate(comparison):
    X, y, folds, _, cmp = comparison
    for m in ("blend", "cnn", "cnn-skip", "lgbm"):
        assert len(cmp.estimators[m]) == 3
        for k, est in enumerate(cmp.estimators[m]):  # the fold's stacker predicted exactly that fold's rows
            rows = folds == k
            np.testing.assert_allclose(cmp.oof[m][rows], est.predict_proba(X[rows]))


def test_seed_blend_is_045_045_01_of_the_stackers(comparison):
    _, _, _, _, cmp = comparison
    expected = 0.45 * cmp.oof["cnn"] + 0.45 * cmp.oof["cnn-skip"] + 0.1 * cmp.oof["lgbm"]
    np.testing.assert_allclose(cmp.oof["seed-blend"], expected)


def test_test_set_is_the_mean_of_the_fold_stackers(comparison):
    _, _, _, X_test, cmp = comparison
    for m in ("cnn", "lgbm", "blend"):
        expected = np.mean([est.predict_proba(X_test) for est in cmp.estimators[m]], axis=0)
        np.testing.assert_allclose(cmp.test[m], expected)
    np.testing.assert_allclose(cmp.test["mean"], X_test.mean(axis=1))
    picked = cmp.choices["choice"].tolist()
    per_fold = [cmp.estimators[c][k].predict_proba(X_test) if c in cmp.estimators else None
                for k, c in enumerate(picked)]
    if all(p is not None for p in per_fold):
        np.testing.assert_allclose(cmp.test["auto"], np.mean(per_fold, axis=0))
    np.testing.assert_allclose(cmp.model_weights["cnn"], np.mean([e.model_weights_ for e in cmp.estimators["cnn"]],
                                                                 axis=0))


def test_auto_picks_by_inner_cv_and_does_not_lose(comparison):
    _, y, _, _, cmp = comparison
    pooled = cmp.table().set_index("candidate")["accuracy"]
    assert pooled["auto"] >= pooled[["good", "noise1", "noise2"]].max() - 0.02  # an unsure model and noise
    assert pooled["auto"] > pooled["mean"] + 0.2  # the mean drowns the informative model in noise
    assert len(cmp.choices) == 3 and cmp.choices["choice"].isin(cmp.candidates).all()
    for _, row in cmp.choices.iterrows():
        assert row["reason"].startswith(f"{row['choice']}: best inner-CV accuracy on the folds other than fold ")
        inner = row[[c for c in cmp.candidates if c != "auto"]].astype(float)
        assert inner[row["choice"]] == inner.max()


def test_auto_never_reads_the_outer_fold():
    """Relabel outer fold 0 so that a noise model is right on all of it: fold 0's choice must not move."""
    X, y, folds = _folded()
    kw = dict(classes=CLASSES, names=["good", "noise1", "noise2"], methods=("mean", "blend", "lgbm"), params=CHEAP)
    before = compare_stackers(X, y, folds, **kw)
    trap = y.copy()
    rows = folds == 0
    trap[rows] = np.asarray(CLASSES)[np.argmax(X[rows, 2], axis=1)]  # noise2 is now perfect on fold 0 only
    after = compare_stackers(X, trap, folds, **kw)
    fold0 = after.scores.query("fold == '0'").set_index("candidate")["accuracy"]
    assert fold0["noise2"] == 1.0 and fold0.drop(["noise2", "auto"]).max() < 1.0  # an outer-score peek would pick it
    b, a = before.choices.iloc[0], after.choices.iloc[0]
    assert b["fold"] == a["fold"] == "0" and a["choice"] == b["choice"] != "noise2"
    inner_cols = [c for c in before.candidates if c != "auto"]
    pd.testing.assert_series_equal(b[inner_cols].astype(float), a[inner_cols].astype(float))
    # the other folds train on fold 0, so their inner scores do see the new labels
    assert not np.allclose(before.choices.iloc[1][inner_cols].astype(float), after.choices.iloc[1][inner_cols].astype(float))


def test_paired_comparison(comparison):
    _, _, _, _, cmp = comparison
    paired = cmp.paired("mean").set_index("candidate")
    assert "mean" not in paired.index and {"wins", "losses", "sign_p", "wilcoxon_p", "mcnemar_p"} <= set(paired.columns)
    good = paired.loc["good"]
    assert good["wins"] == 3 and good["losses"] == 0 and good["mean_diff"] > 0.2
    assert good["files_better"] > good["files_worse"] and good["mcnemar_p"] < 1e-6
    assert good["sign_p"] == pytest.approx(0.25)  # 3 of 3 folds: the least a sign test can say with 3 folds
    with pytest.raises(ParameterError, match="'baseline'"):
        cmp.paired("nope")


def test_compare_bad_options():
    X, y, folds = _folded(60)
    with pytest.raises(ParameterError, match="'methods' parameter .* Got \\['xgb'\\]"):
        compare_stackers(X, y, folds, classes=CLASSES, methods=("mean", "xgb"))
    with pytest.raises(ParameterError, match="'metric' parameter .*--metric.* Got 'f1'"):
        compare_stackers(X, y, folds, classes=CLASSES, metric="f1")
    with pytest.raises(DataError, match="'folds' argument .* shape \\(60,\\)"):
        compare_stackers(X, y, folds[:10], classes=CLASSES)
    with pytest.raises(ParameterError, match="'names' parameter .* each of the 3 models once"):
        compare_stackers(X, y, folds, classes=CLASSES, names=["a", "a", "b"])


# ---------------------------------------------------------------- align_runs
def _run(paths, probs, classes, labels=None, folds=None):
    return predictions_frame(paths, probs, classes, labels=labels, folds=folds)


PATHS = ["a.wav", "b.wav", "c.wav"]
LABELS = ["cat", "dog", "cat"]
FOLDS = [0, 1, 2]
P1 = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])


def test_align_runs_reorders_files_and_classes(tmp_path):
    first = _run(PATHS, P1, ["cat", "dog"], LABELS, FOLDS)
    # the second run lists files in another order and classes the other way round
    order = [2, 0, 1]
    P2 = np.array([[0.7, 0.3], [0.5, 0.5], [0.1, 0.9]])  # per PATHS, (cat, dog)
    second = _run([PATHS[i] for i in order], P2[order][:, ::-1], ["dog", "cat"],
                  [LABELS[i] for i in order], [FOLDS[i] for i in order])
    run_dir = tmp_path / "run2"
    run_dir.mkdir()
    second.to_csv(run_dir / "oof_files.csv", index=False)
    first.to_csv(tmp_path / "run1.csv", index=False)

    paths, X, y, classes, folds = align_runs([tmp_path / "run1.csv", run_dir])
    assert paths == PATHS and classes == ["cat", "dog"]
    assert X.shape == (3, 2, 2)
    np.testing.assert_allclose(X[:, 0], P1)
    np.testing.assert_allclose(X[:, 1], P2)
    assert y.tolist() == LABELS and folds.tolist() == FOLDS


def test_align_runs_test_predictions_without_labels():
    runs = [_run(PATHS, P1, ["cat", "dog"]), _run(PATHS, P1[:, ::-1], ["dog", "cat"])]
    paths, X, y, classes, folds = align_runs(runs, require_folds=False)
    assert y is None and folds is None
    np.testing.assert_allclose(X[:, 1], P1)
    with pytest.raises(DataError, match="require_folds=False"):
        align_runs(runs)


@pytest.mark.parametrize(
    "second, match",
    [
        (
            _run(PATHS[:2], P1[:2], ["cat", "dog"], LABELS[:2], FOLDS[:2]),
            r"'c\.wav' is in run 0 but missing from run 1",
        ),
        (_run(PATHS[:2] + ["z.wav"], P1, ["cat", "dog"], LABELS, FOLDS), r"'c\.wav'"),
        (_run(PATHS, P1, ["cat", "cow"], LABELS, FOLDS), r"run 1.*lacks class 'dog'.*extra class 'cow'"),
        (_run(PATHS, P1, ["cat", "dog"], LABELS, [0, 2, 1]), r"'b\.wav' is in fold 2 in run 1 but in fold 1"),
        (_run(PATHS, P1, ["cat", "dog"], ["cat", "dog", "dog"], FOLDS), r"'c\.wav' has label 'dog' in run 1"),
        (_run(PATHS, P1, ["cat", "dog"], LABELS), r"run 1 has no 'fold' column"),
    ],
)
def test_align_runs_names_the_difference(second, match):
    first = _run(PATHS, P1, ["cat", "dog"], LABELS, FOLDS)
    with pytest.raises(DataError, match=match):
        align_runs([first, second])


def test_align_runs_feeds_a_stacker():
    rng = np.random.default_rng(0)
    n = 40
    labels = np.asarray(["2", "10"])[rng.integers(0, 2, n)]
    paths = [f"f{i}.wav" for i in range(n)]
    runs = [_run(paths, rng.dirichlet([1, 1], n), ["2", "10"], labels, np.arange(n) % 4) for _ in range(2)]
    _, X, y, classes, folds = align_runs(runs)
    blend = WeightedBlend(classes=classes).fit(X, y)
    assert blend.classes_.tolist() == ["2", "10"]
    np.testing.assert_allclose(blend.predict_proba(X), X.mean(axis=1))


# ---------------------------------------------------------------- pseudo-labels
PROBS = np.array(
    [
        [0.85, 0.15],  # exactly at the threshold: not selected (only with inclusive=True)
        [0.84, 0.16],  # just below: not selected
        [0.05, 0.95],
        [0.99, 0.01],
        [0.90, 0.10],
        [0.50, 0.50],
    ]
)
TEST_PATHS = [f"t{i}.wav" for i in range(6)]


def test_select_pseudo_labels_threshold_is_strict():
    """As the seed did: probability strictly above the threshold; exactly 0.85 is not a pseudo-label."""
    picked = select_pseudo_labels(TEST_PATHS, PROBS, ["a", "b"], threshold=0.85)
    assert picked.columns.tolist() == ["path", "label", "confidence", "pseudo"]
    assert picked["path"].tolist() == ["t2.wav", "t3.wav", "t4.wav"]  # t0 is at exactly 0.85: left out
    assert picked["label"].tolist() == ["b", "a", "a"]
    np.testing.assert_allclose(picked["confidence"], [0.95, 0.99, 0.90])
    assert picked["pseudo"].all()
    just_above = select_pseudo_labels(["u.wav"], [[np.nextafter(0.85, 1.0), 0.15]], ["a", "b"], threshold=0.85)
    assert just_above["path"].tolist() == ["u.wav"]


def test_select_pseudo_labels_inclusive_takes_the_threshold_itself():
    picked = select_pseudo_labels(TEST_PATHS, PROBS, ["a", "b"], threshold=0.85, inclusive=True)
    assert picked["path"].tolist() == ["t0.wav", "t2.wav", "t3.wav", "t4.wav"]
    with pytest.raises(ParameterError, match="'inclusive' parameter .* True \\(>= threshold\\) or False"):
        select_pseudo_labels(TEST_PATHS, PROBS, ["a", "b"], inclusive="yes")


def test_select_pseudo_labels_per_class_cap():
    picked = select_pseudo_labels(TEST_PATHS, PROBS, ["a", "b"], threshold=0.85, inclusive=True, max_per_class=2)
    # class a keeps its two most confident (t3 0.99, t4 0.90), in file order; class b keeps t2
    assert picked["path"].tolist() == ["t2.wav", "t3.wav", "t4.wav"]


@pytest.mark.parametrize(
    "kwargs, match",
    [({"threshold": 0.0}, "threshold"), ({"threshold": 1.5}, r"\(0, 1\]"), ({"max_per_class": 0}, "max_per_class")],
)
def test_select_pseudo_labels_bad_options(kwargs, match):
    with pytest.raises(ParameterError, match=match):
        select_pseudo_labels(TEST_PATHS, PROBS, ["a", "b"], **kwargs)


def test_pseudo_training_table_flags_rows():
    train = pd.DataFrame(
        {"path": ["x.wav", "y.wav"], "label": ["a", "b"], "group": ["s1", "s2"], "speaker": ["s1", "s2"]}
    )
    picked = select_pseudo_labels(TEST_PATHS, PROBS, ["a", "b"], threshold=0.89)
    table = pseudo_training_table(train, picked)
    assert table["pseudo"].dtype == bool
    assert table["pseudo"].tolist() == [False, False, True, True, True]
    assert table["path"].tolist() == ["x.wav", "y.wav", "t2.wav", "t3.wav", "t4.wav"]
    assert table["group"].tolist()[2:] == ["t2.wav", "t3.wav", "t4.wav"]  # each pseudo file is its own group
    assert table["speaker"].iloc[2:].isna().all()
    assert table["confidence"].tolist()[:2] == [1.0, 1.0]
    with pytest.raises(DataError, match="'x.wav' is both"):
        pseudo_training_table(train, pd.DataFrame({"path": ["x.wav"], "label": ["a"]}))
    with pytest.raises(DataError, match="'label'"):
        pseudo_training_table(train.drop(columns="label"), picked)


# ----------------------------------------------------------------------------- the per-class stacker
MULTI_LABEL_CHECKS = [
    # the scikit-learn checks that apply to an estimator whose X is 3-D (files, runs, classes): the others
    # generate 2-D data to fit on, so they are restated below on a stack array
    "check_no_attributes_set_in_init", "check_parameters_default_constructible", "check_get_params_invariance",
    "check_set_params", "check_estimator_repr", "check_estimator_cloneable",
    "check_do_not_raise_errors_in_init_or_set_params", "check_valid_tag_types", "check_mixin_order",
]


@pytest.mark.parametrize("check", MULTI_LABEL_CHECKS)
def test_multilabel_stacker_passes_the_sklearn_checks_that_apply(check):
    import sklearn.utils.estimator_checks as ec

    from specimg.stacking import MultiLabelStacker

    getattr(ec, check)("MultiLabelStacker", MultiLabelStacker())


def test_multilabel_stacker_behaves_as_an_estimator_on_a_stack_array():
    """fit returns self, learns only ``_`` attributes and leaves its inputs and params alone, is idempotent,
    pickles, refuses predict before fit (NotFittedError) and an X of another shape, and learns the better run."""
    import pickle

    from specimg.exceptions import NotFittedError
    from specimg.stacking import MultiLabelStacker

    rng = np.random.default_rng(0)
    Y = (rng.random((120, 3)) < 0.4).astype(int)
    good = np.clip(Y * 0.6 + 0.2 + rng.normal(0, 0.1, Y.shape), 0.01, 0.99)  # informative run
    noise = rng.uniform(0.01, 0.99, Y.shape)  # uninformative run
    X = np.stack([good, noise], axis=1)  # (n, runs, classes)
    X0, params = X.copy(), MultiLabelStacker(C=0.5).get_params()
    est = MultiLabelStacker(C=0.5)
    with pytest.raises(NotFittedError, match="not fitted"):
        est.predict_proba(X)
    assert est.fit(X, Y) is est and np.array_equal(X, X0) and est.get_params() == params
    assert {k for k in vars(est) if k.endswith("_")} == {"coef_", "intercept_", "n_runs_", "n_classes_"}
    first = est.predict_proba(X)
    assert np.allclose(clone(est).fit(X, Y).predict_proba(X), first)  # idempotent, from its params alone
    assert np.allclose(pickle.loads(pickle.dumps(est)).predict_proba(X), first)
    assert (est.coef_[:, 0] > np.abs(est.coef_[:, 1])).all()  # the informative run weighs more, every class
    assert est.predict(X).shape == Y.shape and set(np.unique(est.predict(X))) <= {0, 1}
    with pytest.raises(DataError, match="fitted on 2 runs x 3 classes"):
        est.predict_proba(X[:, :1])
    with pytest.raises(ParameterError, match="'C' parameter of MultiLabelStacker must be a number > 0"):
        MultiLabelStacker(C=0).fit(X, Y)
