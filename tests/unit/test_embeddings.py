"""The optional ``featurizer.embeddings.v1``: configuration, errors, and how its dense block
joins the sparse features. Tests marked with the real model run where the extra is installed
(`make install-embeddings`); the rest need no PyTorch."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from engine.nlu.embeddings import DenseBlock, EmbeddingModelError, EmbeddingOptions, model_folder
from engine.nlu.featurize import Featurizer, TfidfOptions, fit_featurizer
from engine.nlu.pipeline import build_pipeline
from engine.nlu.tokenize import Tokenizer

TEXTS = ["I lost my card", "my card was stolen", "what is the exchange rate", "how much is a transfer"]


class HashingEncoder:
    """A deterministic stand-in with the encoder's interface (no model, no PyTorch)."""

    dim = 8

    def __init__(self) -> None:
        self.options = EmbeddingOptions(model="hashing", weight=2.0)
        self.calls = 0

    def encode(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        self.calls += 1
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            for w in t.lower().split():
                out[i, sum(map(ord, w)) % self.dim] += 1.0
            out[i] /= np.linalg.norm(out[i]) or 1.0
        return out

    def encode_one(self, text: str) -> npt.NDArray[np.float32]:
        return self.encode([text])[0]


def with_dense(fz: Featurizer, encoder: Any) -> Featurizer:
    dense = DenseBlock(encoder, fz.patterns.offset + fz.patterns.size, encoder.options.weight)
    return Featurizer(fz.options, fz.word, fz.char, fz.patterns, dense)


def test_the_component_is_registered_and_its_options_are_checked() -> None:
    cfg = build_pipeline([("featurizer.embeddings.v1", {"model": "x", "weight": 1.5})])
    assert cfg.embeddings == EmbeddingOptions(model="x", weight=1.5)
    assert build_pipeline([]).embeddings is None
    with pytest.raises(ValueError, match="did you mean 'weight'"):
        EmbeddingOptions.from_dict({"wieght": 2})


def test_a_missing_model_says_how_to_install_it() -> None:
    with pytest.raises(EmbeddingModelError, match="make install-embeddings"):
        model_folder("no-such-embedding-package")


def test_a_folder_is_taken_as_the_model(tmp_path: Path) -> None:
    assert model_folder(str(tmp_path)) == tmp_path


def test_dense_block_follows_the_sparse_features_in_both_paths() -> None:
    tok = Tokenizer("en")
    token_lists = [tok(t) for t in TEXTS]
    sparse_only = fit_featurizer(token_lists, TfidfOptions())
    encoder = HashingEncoder()
    fz = with_dense(sparse_only, encoder)
    assert fz.size == sparse_only.size + 8
    x = fz.transform(token_lists, TEXTS).toarray()
    assert np.allclose(x[:, : sparse_only.size], sparse_only.transform(token_lists, TEXTS).toarray())
    assert np.allclose(x[:, sparse_only.size :], 2.0 * encoder.encode(TEXTS))
    for row, (toks, text) in enumerate(zip(token_lists, TEXTS, strict=True)):
        idx, val = fz.transform_one(toks, text)
        one = np.zeros(fz.size, dtype=np.float32)
        one[idx] = val
        assert np.allclose(one, x[row])


needs_model = pytest.mark.skipif(
    not __import__("importlib.util").util.find_spec("sentence_transformers"),
    reason="the embeddings extra is not installed (make install-embeddings)",
)


@needs_model
def test_real_model_embeds_paraphrases_close_and_round_trips(tmp_path: Path) -> None:
    from engine.nlu.artifact import load_model, save_model
    from engine.nlu.embeddings import SentenceEncoder
    from engine.nlu.train import train_nlu, training_data_from_pairs

    enc = SentenceEncoder(EmbeddingOptions())
    v = enc.encode(["I lost my card", "my card is gone", "what is the exchange rate"])
    assert v.shape == (3, enc.dim)
    assert float(v[0] @ v[1]) > float(v[0] @ v[2]) + 0.3
    pairs = [(t, "card") for t in TEXTS[:2]] * 3 + [(t, "money") for t in TEXTS[2:]] * 3
    cfg = build_pipeline([("featurizer.tfidf.v1", {}), ("featurizer.embeddings.v1", {}), ("classifier.linear.v1", {})])
    model = train_nlu(training_data_from_pairs(pairs), cfg, frozenset(), cross_validate=False)
    again = load_model(save_model(model, tmp_path))
    assert again.featurizer.dense is not None
    text = "someone took my debit card"
    assert again.parse(text).to_dict() == model.parse(text).to_dict()
    assert again.parse(text).intent.name == "card"
