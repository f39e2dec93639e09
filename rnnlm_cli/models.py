"""Opening a model file of any backend: ``.npz`` written by rnnlm, or an ARPA file.

The one place that knows which class reads which ``model_type``; the commands get a
``LanguageModel`` and never ask which backend it is.
"""
from __future__ import annotations

from rnnlm_cli.errors import ModelFileError
from rnnlm_cli.lm import LanguageModel
from rnnlm_cli.modelfile import check_arrays, load_model
from rnnlm_cli.ngram import hashindex
from rnnlm_cli.ngram.arpa import is_arpa_path, read_arpa
from rnnlm_cli.ngram.model import NgramModel
from rnnlm_cli.ngram.training import MAX_ORDER
from rnnlm_cli.tokenizer import TokenizerConfig


def open_model(path: str) -> LanguageModel:
    """Load the model at ``path``; a bad file raises ``ModelFileError`` naming it."""
    if is_arpa_path(path):
        return read_arpa(path)
    arrays, metadata = load_model(path)
    try:
        TokenizerConfig.from_dict(metadata.get("tokenizer"))
    except (TypeError, ValueError) as exc:
        raise ModelFileError(f"{path}: corrupt model: {exc}") from None
    model_type = metadata.get("model_type")
    if model_type == "ngram":
        return _open_ngram(path, arrays, metadata)
    raise ModelFileError(f"{path}: unknown model type {model_type!r}")


def _open_ngram(path: str, arrays: dict, metadata: dict) -> NgramModel:
    order = metadata.get("order")
    if not isinstance(order, int) or not 1 <= order <= MAX_ORDER:
        raise ModelFileError(f"{path}: corrupt model: bad order {order!r}")
    check_arrays(path, arrays, NgramModel.array_schema(order))
    try:
        model = NgramModel.from_arrays(arrays, metadata)
    except (KeyError, ValueError, UnicodeDecodeError) as exc:
        raise ModelFileError(f"{path}: corrupt model: {exc}") from None
    _check_hash_index(path, model)
    sizes = [model.tables.keys[n].size for n in range(order)]
    for n in range(order):
        if model.tables.logprob[n].size != sizes[n] or (
                n < order - 1 and model.tables.backoff[n].size != sizes[n]):
            raise ModelFileError(f"{path}: corrupt model: {n + 1}-gram arrays differ in length")
    return model


def _check_hash_index(path: str, model: NgramModel) -> None:
    """Cheap checks that keep a damaged index from sending a probe off its array: at
    least ``2^bits + 1`` slots, the last one empty (it stops every probe)."""
    for n in range(2, model.order + 1):
        slots = model.hash_slots[n - 1]
        least = (1 << hashindex.table_bits(model.tables.keys[n - 1].size)) + 1
        if slots.size < least or slots[-1] != 0:
            raise ModelFileError(f"{path}: corrupt model: array 'hash_{n}' is damaged")
