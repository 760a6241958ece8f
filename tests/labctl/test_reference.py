"""The float64 attention-head reference against its defining properties."""

from __future__ import annotations

import math

import numpy as np
import pytest

from labctl.engine.reference import cosine_per_token, head_forward, project, softmax
from labctl.workload import HeadWeights, load_extract

HIDDEN = 384
HEAD_DIM = 32


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20240611)


@pytest.fixture
def weights(rng: np.random.Generator) -> HeadWeights:
    """A random head with the scale of the pretrained one."""

    def w() -> np.ndarray:
        return rng.normal(0.0, 0.05, (HEAD_DIM, HIDDEN))

    def b() -> np.ndarray:
        return rng.normal(0.0, 0.1, HEAD_DIM)

    return HeadWeights(head=0, wq=w(), bq=b(), wk=w(), bk=b(), wv=w(), bv=b())


@pytest.fixture
def x(rng: np.random.Generator) -> np.ndarray:
    return rng.normal(0.0, 1.0, (9, HIDDEN))


def _loop_head(x: np.ndarray, weights: HeadWeights) -> tuple[list, list]:
    """One head written out token by token, the way the textbook states it."""
    n = len(x)

    def linear(w: np.ndarray, b: np.ndarray, token: np.ndarray) -> list[float]:
        return [math.fsum(w[o] * token) + b[o] for o in range(len(b))]

    q = [linear(weights.wq, weights.bq, x[i]) for i in range(n)]
    k = [linear(weights.wk, weights.bk, x[i]) for i in range(n)]
    v = [linear(weights.wv, weights.bv, x[i]) for i in range(n)]
    scale = math.sqrt(len(q[0]))

    probs, context = [], []
    for i in range(n):
        scores = [
            math.fsum(a * c for a, c in zip(q[i], k[j], strict=True)) / scale
            for j in range(n)
        ]
        top = max(scores)
        exps = [math.exp(s - top) for s in scores]
        total = math.fsum(exps)
        row = [e / total for e in exps]
        probs.append(row)
        context.append(
            [math.fsum(row[j] * v[j][d] for j in range(n)) for d in range(len(v[0]))]
        )
    return probs, context


def test_project_is_linear_layer_in_out_by_in_layout() -> None:
    x = np.array([[1.0, 2.0]])
    w = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    b = np.array([0.5, 0.0, -1.0])
    np.testing.assert_array_equal(project(x, w, b), [[1.5, 2.0, 2.0]])


def test_shapes(x: np.ndarray, weights: HeadWeights) -> None:
    out = head_forward(x, weights)
    n = len(x)
    for part in (out.q, out.k, out.v, out.context):
        assert part.shape == (n, HEAD_DIM) and part.dtype == np.float64
    assert out.scores.shape == out.probs.shape == (n, n)


def test_softmax_rows_sum_to_one(x: np.ndarray, weights: HeadWeights) -> None:
    probs = head_forward(x, weights).probs
    assert np.all(probs >= 0)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=0, atol=1e-12)


def test_softmax_is_stable_for_large_scores() -> None:
    probs = softmax(np.array([[1000.0, 1000.0, -1000.0], [-800.0, 0.0, 800.0]]))
    assert np.all(np.isfinite(probs))
    np.testing.assert_allclose(probs, [[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]], atol=1e-300)


def test_permuting_tokens_permutes_context(
    x: np.ndarray, weights: HeadWeights, rng: np.random.Generator
) -> None:
    perm = rng.permutation(len(x))
    out = head_forward(x, weights)
    permuted = head_forward(x[perm], weights)
    np.testing.assert_allclose(permuted.context, out.context[perm], rtol=0, atol=1e-13)
    np.testing.assert_allclose(
        permuted.probs, out.probs[perm][:, perm], rtol=0, atol=1e-13
    )


def test_matches_token_by_token_loops(x: np.ndarray, weights: HeadWeights) -> None:
    probs, context = _loop_head(x, weights)
    out = head_forward(x, weights)
    np.testing.assert_allclose(out.probs, probs, rtol=0, atol=1e-12)
    np.testing.assert_allclose(out.context, context, rtol=0, atol=1e-12)


def test_matches_token_by_token_loops_on_the_model() -> None:
    extract = load_extract()
    x = extract.hidden_states(0)
    weights = extract.head_weights(3)
    probs, context = _loop_head(x, weights)
    out = head_forward(x, weights)
    np.testing.assert_allclose(out.probs, probs, rtol=0, atol=1e-12)
    np.testing.assert_allclose(out.context, context, rtol=0, atol=1e-12)


def test_zero_queries_attend_uniformly(x: np.ndarray, weights: HeadWeights) -> None:
    out = head_forward(x, weights)
    flat = head_forward(x, weights, q=0.0 * out.q)
    n = len(x)
    np.testing.assert_allclose(flat.probs, np.full((n, n), 1.0 / n), rtol=0, atol=1e-15)
    np.testing.assert_allclose(
        flat.context, np.tile(out.v.mean(axis=0), (n, 1)), rtol=0, atol=1e-14
    )


def test_given_projections_are_used(x: np.ndarray, weights: HeadWeights) -> None:
    out = head_forward(x, weights)
    again = head_forward(x, weights, q=out.q, k=out.k, v=out.v)
    np.testing.assert_array_equal(again.context, out.context)
    doubled = head_forward(x, weights, v=2.0 * out.v)
    np.testing.assert_allclose(doubled.context, 2.0 * out.context, rtol=1e-14)


def test_given_projection_of_wrong_shape_raises(
    x: np.ndarray, weights: HeadWeights
) -> None:
    with pytest.raises(ValueError, match=r"k has shape \(9, 31\): expected \(9, 32\)"):
        head_forward(x, weights, k=np.zeros((9, 31)))


def test_batched_input_is_refused(x: np.ndarray, weights: HeadWeights) -> None:
    with pytest.raises(ValueError, match="one sentence"):
        head_forward(x[None], weights)


def test_cosine_per_token() -> None:
    a = np.array([[1.0, 0.0], [1.0, 1.0], [2.0, 0.0], [0.0, 0.0]])
    b = np.array([[3.0, 0.0], [-1.0, -1.0], [0.0, 5.0], [1.0, 0.0]])
    cosine = cosine_per_token(a, b)
    np.testing.assert_allclose(cosine[:3], [1.0, -1.0, 0.0], atol=1e-15)
    assert np.isnan(cosine[3])


def test_cosine_shape_mismatch_raises() -> None:
    with pytest.raises(ValueError, match="equal"):
        cosine_per_token(np.ones((3, 2)), np.ones((2, 2)))
