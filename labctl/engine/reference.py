"""Float64 host reference of one BERT attention head.

A head maps the hidden states ``x`` of one sentence, shape ``(n, hidden)``, to
its context vectors::

    q, k, v = x @ wq.T + bq, x @ wk.T + bk, x @ wv.T + bv
    probs   = softmax(q @ k.T / sqrt(head_dim))    # over keys, per query
    context = probs @ v

Every token attends to every token of its sentence: there is no padding and
no mask, so a sentence is computed alone. An engine that computes some of
these steps on the chip passes its measured ``q``, ``k`` or ``v`` to
:func:`head_forward` and the host does the rest the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from labctl.engine.encoder import attention
from labctl.workload import HeadWeights


@dataclass(frozen=True, eq=False)
class HeadOutput:
    """Every intermediate of one head on one sentence, float64.

    Attributes
    ----------
    q, k, v : numpy.ndarray
        Queries, keys and values, shape ``(n, head_dim)``.
    scores : numpy.ndarray
        Scaled dot products ``q @ k.T / sqrt(head_dim)``, shape ``(n, n)``;
        row ``i`` is query token ``i``, column ``j`` key token ``j``.
    probs : numpy.ndarray
        Attention probabilities, softmax of each row of ``scores``.
    context : numpy.ndarray
        Context vectors ``probs @ v``, shape ``(n, head_dim)``.
    """

    q: np.ndarray
    k: np.ndarray
    v: np.ndarray
    scores: np.ndarray
    probs: np.ndarray
    context: np.ndarray


def project(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Apply a linear layer in the checkpoint's layout: ``x @ w.T + b``.

    Parameters
    ----------
    x : numpy.ndarray
        Inputs, shape ``(n, in)``.
    w : numpy.ndarray
        Weight, shape ``(out, in)``.
    b : numpy.ndarray
        Bias, shape ``(out,)``.

    Returns
    -------
    numpy.ndarray
        Outputs, shape ``(n, out)``, float64.
    """
    x = np.asarray(x, dtype=np.float64)
    return x @ np.asarray(w, dtype=np.float64).T + np.asarray(b, dtype=np.float64)


def softmax(scores: np.ndarray) -> np.ndarray:
    """Softmax over the last axis, each row shifted by its maximum to avoid overflow."""
    shifted = scores - scores.max(axis=-1, keepdims=True)
    weights = np.exp(shifted)
    return weights / weights.sum(axis=-1, keepdims=True)


def head_forward(
    x: np.ndarray,
    weights: HeadWeights,
    q: np.ndarray | None = None,
    k: np.ndarray | None = None,
    v: np.ndarray | None = None,
    ops: Any = None,
) -> HeadOutput:
    """Run one attention head on one sentence in float64.

    Parameters
    ----------
    x : numpy.ndarray
        The sentence's hidden states, shape ``(n, hidden)``.
    weights : HeadWeights
        The head's query, key and value projections.
    q, k, v : numpy.ndarray, optional
        Queries, keys or values computed elsewhere (on the chip), shape
        ``(n, head_dim)``; each one not given is projected from ``x``.
    ops : labctl.engine.encoder.Operations, optional
        Where the scores, the softmax's exponentials and the context are
        computed (:class:`labctl.engine.placement.ChipOperations`); in
        float64 here when not given.

    Returns
    -------
    HeadOutput
        q, k, v, scores, probabilities and context.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"x has shape {x.shape}: give one sentence, (tokens, hidden)")
    q = _given_or_projected(q, x, weights.wq, weights.bq, "q")
    k = _given_or_projected(k, x, weights.wk, weights.bk, "k")
    v = _given_or_projected(v, x, weights.wv, weights.bv, "v")

    if ops is None:
        scores = q @ k.T / np.sqrt(q.shape[1])
        probs = softmax(scores)
        context = probs @ v
    else:
        scores, probs, context = attention(q, k, v, ops, f"head {weights.head}")
    return HeadOutput(q=q, k=k, v=v, scores=scores, probs=probs, context=context)


def _given_or_projected(
    given: np.ndarray | None, x: np.ndarray, w: np.ndarray, b: np.ndarray, name: str
) -> np.ndarray:
    if given is None:
        return project(x, w, b)
    given = np.asarray(given, dtype=np.float64)
    expected = (x.shape[0], w.shape[0])
    if given.shape != expected:
        raise ValueError(f"{name} has shape {given.shape}: expected {expected}")
    return given


def cosine_per_token(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Return the cosine similarity of each row of ``a`` with the same row of ``b``.

    Parameters
    ----------
    a, b : numpy.ndarray
        Vectors per token, same shape ``(n, d)``.

    Returns
    -------
    numpy.ndarray
        Shape ``(n,)``, in [-1, 1]; NaN for a row where either vector is zero,
        since its direction is undefined.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(
            f"shapes {a.shape} and {b.shape}: give two equal (tokens, d) arrays"
        )
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        cosine = np.einsum("ij,ij->i", a, b) / norms
    return np.where(norms > 0, cosine, np.nan)
