"""All six layers of all-MiniLM-L6-v2, each operation on the host or the chip.

One BERT encoder layer, for the hidden states ``x`` of one batch of sentences
(tokens of every sentence concatenated, each sentence attending only to its
own tokens, no padding and no mask)::

    q, k, v   = x Wqᵀ + bq, x Wkᵀ + bk, x Wvᵀ + bv        (12 heads of 32)
    p_h       = softmax(q_h k_hᵀ / √32)                    per sentence, head
    a         = concat_h(p_h v_h) Woᵀ + bo                 attention output
    y         = LayerNorm(x + a)
    out       = LayerNorm(y + GELU(y Wiᵀ + bi) Wfᵀ + bf)

The model embeds token ids as its layer 0 input (word + token type 0 +
position embeddings, LayerNorm), runs the six layers, mean-pools each
sentence's last hidden states and normalizes the result to unit length: the
sentence embedding sentence-transformers computes.

Every multiplication, the softmax's exponentials and the activation go
through an :class:`Operations` object. :data:`HOST` computes them in float64
and makes this module the model's float64 reference; the chip's operations
(:mod:`labctl.engine.placement`) run some of them on the simulated chip, and
the rest of the layer (residuals, LayerNorms, pooling) stays on the host.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from scipy.special import erf

HEAD_DIM = 32


@dataclass(frozen=True, eq=False)
class Linear:
    """One dense layer, float64, checkpoint layout: ``x @ weight.T + bias``.

    Attributes
    ----------
    name : str
        Where it sits, e.g. ``"layer0.query"``.
    weight : numpy.ndarray
        Shape ``(out, in)``.
    bias : numpy.ndarray
        Shape ``(out,)``.
    """

    name: str
    weight: np.ndarray
    bias: np.ndarray


@dataclass(frozen=True, eq=False)
class LayerWeights:
    """One encoder layer's dense layers and LayerNorms, float64."""

    index: int
    query: Linear
    key: Linear
    value: Linear
    output: Linear  # attention output projection
    intermediate: Linear  # FFN, 384 → 1536
    ffn_output: Linear  # FFN, 1536 → 384
    attention_norm: tuple[np.ndarray, np.ndarray]
    ffn_norm: tuple[np.ndarray, np.ndarray]


@dataclass(frozen=True, eq=False)
class ModelWeights:
    """Every tensor of all-MiniLM-L6-v2 the forward pass uses, float64."""

    word_embeddings: np.ndarray  # (vocab, hidden)
    position_embeddings: np.ndarray  # (max positions, hidden)
    token_type_embedding: np.ndarray  # (hidden,), type 0
    embedding_norm: tuple[np.ndarray, np.ndarray]
    layers: tuple[LayerWeights, ...]
    n_heads: int
    eps: float

    @classmethod
    def from_tensors(cls, tensors: dict[str, np.ndarray],
                     config: dict[str, Any]) -> ModelWeights:
        """The model from its safetensors tensors and ``config.json``."""

        def t(name: str) -> np.ndarray:
            return np.asarray(tensors[name], dtype=np.float64)

        def dense(prefix: str, name: str) -> Linear:
            return Linear(name, t(f"{prefix}.weight"), t(f"{prefix}.bias"))

        def norm(prefix: str) -> tuple[np.ndarray, np.ndarray]:
            return t(f"{prefix}.LayerNorm.weight"), t(f"{prefix}.LayerNorm.bias")

        layers = []
        for i in range(int(config["num_hidden_layers"])):
            p = f"encoder.layer.{i}"
            layers.append(LayerWeights(
                index=i,
                query=dense(f"{p}.attention.self.query", f"layer{i}.query"),
                key=dense(f"{p}.attention.self.key", f"layer{i}.key"),
                value=dense(f"{p}.attention.self.value", f"layer{i}.value"),
                output=dense(f"{p}.attention.output.dense", f"layer{i}.output"),
                intermediate=dense(f"{p}.intermediate.dense", f"layer{i}.intermediate"),
                ffn_output=dense(f"{p}.output.dense", f"layer{i}.ffn_output"),
                attention_norm=norm(f"{p}.attention.output"),
                ffn_norm=norm(f"{p}.output"),
            ))
        return cls(
            word_embeddings=t("embeddings.word_embeddings.weight"),
            position_embeddings=t("embeddings.position_embeddings.weight"),
            token_type_embedding=t("embeddings.token_type_embeddings.weight")[0],
            embedding_norm=norm("embeddings"),
            layers=tuple(layers),
            n_heads=int(config["num_attention_heads"]),
            eps=float(config["layer_norm_eps"]),
        )


class Operations(Protocol):
    """Where each operation of a layer is computed."""

    def linear(self, x: np.ndarray, dense: Linear) -> np.ndarray:
        """``x @ dense.weight.T + dense.bias`` for every token, ``(tokens, out)``."""
        ...

    def scores(self, q: np.ndarray, k: np.ndarray, where: str) -> np.ndarray:
        """``q @ k.T`` of one sentence and head, ``(tokens, tokens)``."""
        ...

    def exponentials(self, shifted: np.ndarray, where: str) -> np.ndarray:
        """``exp`` of scores shifted so that each row's largest is 0."""
        ...

    def context(self, probs: np.ndarray, v: np.ndarray, where: str) -> np.ndarray:
        """``probs @ v`` of one sentence and head, ``(tokens, 32)``."""
        ...

    def gelu(self, h: np.ndarray, where: str) -> np.ndarray:
        """The FFN's activation of every element."""
        ...


class HostOperations:
    """Every operation in float64 on the host: the reference."""

    def linear(self, x: np.ndarray, dense: Linear) -> np.ndarray:
        return x @ dense.weight.T + dense.bias

    def scores(self, q: np.ndarray, k: np.ndarray, where: str) -> np.ndarray:
        return q @ k.T

    def exponentials(self, shifted: np.ndarray, where: str) -> np.ndarray:
        return np.exp(shifted)

    def context(self, probs: np.ndarray, v: np.ndarray, where: str) -> np.ndarray:
        return probs @ v

    def gelu(self, h: np.ndarray, where: str) -> np.ndarray:
        return gelu(h)


HOST = HostOperations()


def gelu(x: np.ndarray) -> np.ndarray:
    """GELU as BERT's ``hidden_act: gelu``: ``x · Φ(x)``, with the exact erf."""
    return 0.5 * x * (1.0 + erf(x / np.sqrt(2.0)))


def layer_norm(x: np.ndarray, norm: tuple[np.ndarray, np.ndarray],
               eps: float) -> np.ndarray:
    """LayerNorm over the features, biased variance, as BERT normalizes."""
    mean = x.mean(axis=1, keepdims=True)
    centered = x - mean
    variance = (centered * centered).mean(axis=1, keepdims=True)
    return centered / np.sqrt(variance + eps) * norm[0] + norm[1]


@dataclass(eq=False)
class LayerTrace:
    """What one layer computed, for every token of the batch.

    Attributes
    ----------
    attention : numpy.ndarray
        The attention module's output ``a`` (before the residual), ``(tokens,
        hidden)``.
    probs : list of numpy.ndarray
        Per sentence, the attention maps ``(heads, tokens, tokens)``.
    hidden : numpy.ndarray
        The layer's output hidden states, ``(tokens, hidden)``.
    """

    attention: np.ndarray
    probs: list[np.ndarray]
    hidden: np.ndarray


@dataclass(eq=False)
class EncoderTrace:
    """A forward pass over a batch of sentences, layer by layer."""

    offsets: np.ndarray  # sentence i is tokens offsets[i]:offsets[i+1]
    inputs: np.ndarray  # layer-0 input hidden states
    layers: list[LayerTrace] = field(default_factory=list)

    @property
    def hidden(self) -> np.ndarray:
        """The last layer's hidden states (the inputs when no layer ran)."""
        return self.layers[-1].hidden if self.layers else self.inputs

    def embeddings(self) -> np.ndarray:
        """Mean-pooled, unit-length sentence embeddings, ``(sentences, hidden)``."""
        return sentence_embeddings(self.hidden, self.offsets)


def embed(model: ModelWeights, token_ids: np.ndarray) -> np.ndarray:
    """One sentence's layer-0 input: summed embeddings, LayerNorm; ``(n, hidden)``."""
    ids = np.asarray(token_ids, dtype=np.int64)
    n = len(ids)
    if n > len(model.position_embeddings):
        raise ValueError(f"a sentence of {n} tokens: the model takes at most "
                         f"{len(model.position_embeddings)}")
    summed = (model.word_embeddings[ids] + model.token_type_embedding
              + model.position_embeddings[:n])
    return layer_norm(summed, model.embedding_norm, model.eps)


def encode(model: ModelWeights, inputs: np.ndarray, offsets: np.ndarray,
           layers: int | None = None, ops: Operations = HOST) -> EncoderTrace:
    """Run the first ``layers`` layers (all when None) over a batch of sentences.

    Parameters
    ----------
    model : ModelWeights
    inputs : numpy.ndarray
        Layer-0 input hidden states of all sentences, concatenated.
    offsets : numpy.ndarray
        Start of each sentence in ``inputs`` and the total at the end.
    layers : int, optional
        How many layers to run, from layer 0.
    ops : Operations
        Where each operation runs; the host in float64 by default.
    """
    trace = EncoderTrace(np.asarray(offsets), np.asarray(inputs, dtype=np.float64))
    x = trace.inputs
    for weights in model.layers[:layers]:
        layer = encoder_layer(x, trace.offsets, weights, model, ops)
        trace.layers.append(layer)
        x = layer.hidden
    return trace


def encoder_layer(x: np.ndarray, offsets: np.ndarray, weights: LayerWeights,
                  model: ModelWeights, ops: Operations) -> LayerTrace:
    """One encoder layer over a batch; see the module's formulas."""
    q = ops.linear(x, weights.query)
    k = ops.linear(x, weights.key)
    v = ops.linear(x, weights.value)

    context = np.empty_like(v)
    maps = []
    for s in range(len(offsets) - 1):
        rows = slice(int(offsets[s]), int(offsets[s + 1]))
        n = rows.stop - rows.start
        probs = np.empty((model.n_heads, n, n))
        for h in range(model.n_heads):
            cols = slice(h * HEAD_DIM, (h + 1) * HEAD_DIM)
            where = f"layer{weights.index} sentence {s} head {h}"
            _, probs[h], context[rows, cols] = attention(
                q[rows, cols], k[rows, cols], v[rows, cols], ops, where)
        maps.append(probs)

    attention_out = ops.linear(context, weights.output)
    y = layer_norm(x + attention_out, weights.attention_norm, model.eps)
    h = ops.gelu(ops.linear(y, weights.intermediate), f"layer{weights.index}")
    out = layer_norm(y + ops.linear(h, weights.ffn_output), weights.ffn_norm, model.eps)
    return LayerTrace(attention_out, maps, out)


def attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, ops: Operations,
              where: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One head on one sentence: its scaled scores, attention map and context.

    The exponentials are taken of the scores shifted by each row's largest,
    so that every exponential is at most 1, and normalized on the host.
    """
    scores = ops.scores(q, k, where) / np.sqrt(q.shape[1])
    weights = ops.exponentials(scores - scores.max(axis=1, keepdims=True), where)
    probs = weights / weights.sum(axis=1, keepdims=True)
    return scores, probs, ops.context(probs, v, where)


def sentence_embeddings(hidden: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Mean over each sentence's tokens, then unit length (sentence-transformers)."""
    pooled = np.stack([hidden[int(offsets[i]):int(offsets[i + 1])].mean(axis=0)
                       for i in range(len(offsets) - 1)])
    return pooled / np.linalg.norm(pooled, axis=1, keepdims=True)

