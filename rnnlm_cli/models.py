"""Opening a model file of any backend: ``.npz`` written by rnnlm, or an ARPA file.

The one place that knows which class reads which ``model_type``; the commands get a
``LanguageModel`` and never ask which backend it is. Each backend is imported when a file
of its kind is opened, so scoring with one does not pay for loading the other.

Opening checks what keeps a model in bounds; ``check_model`` (``rnnlm check``) checks
everything else a file could get wrong. docs/model-format.md lists every array and key
of every kind of file, and which of these checks applies to each.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import numpy as np

from rnnlm_cli.errors import ModelFileError, OptionError
from rnnlm_cli.lm import LanguageModel
from rnnlm_cli.modelfile import check_arrays, load_model, open_regular, verify_archive
from rnnlm_cli.tokenizer import TokenizerConfig
from rnnlm_cli.vocab import Vocabulary

ARPA_SUFFIXES = (".arpa", ".arpa.gz", ".lm", ".lm.gz")


def is_arpa_path(path: str) -> bool:
    return path.lower().endswith(ARPA_SUFFIXES)   # m.ARPA, m.Arpa.gz, m.LM too


def check_not_arpa_output(path: str, hint: Optional[str] = None) -> None:
    """``-o`` writes an .npz: refuse an ARPA name there (with ``hint``; by default, as
    ``train-ngram`` has it, pointing at ``--arpa``)."""
    if hint is None:
        hint = f"; write ARPA with --arpa {path} (and -o MODEL.npz)"
    if is_arpa_path(path):
        raise OptionError(f"{path}: -o writes an rnnlm .npz model, not an ARPA file{hint}")


def open_model(path: str) -> LanguageModel:
    """Load the model at ``path``; a bad file raises ``ModelFileError`` naming it."""
    if path == "-":
        raise ModelFileError("-: a model is read from a file, not from standard input")
    if is_arpa_path(path):
        return _open_arpa(path)
    arrays, metadata = load_model(path)
    if metadata.get("model_type") == "rnn-checkpoint":
        raise ModelFileError(f"{path}: a training checkpoint, not a model: continue it with "
                             "rnnlm train-rnn --resume, or use the model file (-o) it belongs to")
    return _from_arrays(path, arrays, metadata)


def open_mixture(paths: Sequence[str], weights: Optional[Sequence[float]] = None
                 ) -> LanguageModel:
    """The models at ``paths`` mixed with ``weights`` (default: equal weights)."""
    from rnnlm_cli.mixture import MixtureModel
    components = [open_model(path) for path in paths]
    weights = weights if weights is not None else [1 / len(paths)] * len(paths)
    return MixtureModel(components, weights)


def carrying_state(lm: LanguageModel) -> LanguageModel:
    """``lm`` with every recurrent model in it reading a text as one stream, each line in
    the context of those before it (``rnn.model.CarriedState``); n-gram models as they
    are. ``carries_state`` of the result says whether anything carries state."""
    from rnnlm_cli.mixture import MixtureModel
    from rnnlm_cli.rnn.model import CarriedState, RnnModel
    if isinstance(lm, RnnModel):
        return CarriedState(lm)
    if isinstance(lm, MixtureModel):
        return MixtureModel([carrying_state(c) for c in lm.components], lm.weights,
                            lm.metadata)
    return lm


def _from_arrays(path: str, arrays: dict, metadata: dict) -> LanguageModel:
    """The model that a file's (or a mixture member's) arrays and metadata describe."""
    try:
        TokenizerConfig.from_dict(metadata.get("tokenizer"))
    except (TypeError, ValueError) as exc:
        raise ModelFileError(f"{path}: corrupt model: {exc}") from None
    model_type = metadata.get("model_type")
    if model_type == "ngram":
        return _open_ngram(path, arrays, metadata)
    if model_type == "rnn":
        return _open_rnn(path, arrays, metadata)
    if model_type == "mixture":
        return _open_mixture(path, arrays, metadata)
    raise ModelFileError(f"{path}: unknown model type {model_type!r}")


def _open_mixture(path: str, arrays: dict, metadata: dict):
    """A mixture file: each component's arrays under ``component<i>.``, its metadata in
    ``components[i]``, and the ``weights``."""
    from rnnlm_cli.mixture import MixtureModel
    parts, weights = _mixture_parts(path, arrays, metadata)
    components = [_from_arrays(name, part, meta) for name, part, meta in parts]
    try:
        return MixtureModel(components, weights)
    except OptionError as exc:
        raise ModelFileError(f"{path}: corrupt mixture: {exc}") from None


def _mixture_parts(path: str, arrays: dict, metadata: dict):
    """``([(name, arrays, metadata) of each component], weights)`` of a mixture file."""
    from rnnlm_cli.mixture import COMPONENT_PREFIX
    described, weights = metadata.get("components"), metadata.get("weights")
    if not (isinstance(described, list) and described and isinstance(weights, list)
            and all(isinstance(m, dict) for m in described)
            and all(isinstance(w, (int, float)) for w in weights)):
        raise ModelFileError(f"{path}: corrupt mixture: no list of components and weights")
    parts = []
    for i, component_metadata in enumerate(described):
        prefix = COMPONENT_PREFIX.format(i)
        part = {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}
        parts.append((f"{path} (model {i + 1})", part, component_metadata))
    return parts, weights


# -- a model's vocabulary alone ----------------------------------------------------------------

def open_vocabulary(path: str) -> Tuple[Vocabulary, TokenizerConfig]:
    """The vocabulary of the model at ``path`` and the tokenizer settings it reads text
    with (``--vocab-from``), without loading the model: of an ``.npz``, the checks that
    read no array data (metadata, names, dtypes and ranks of the arrays), then the
    vocabulary arrays alone (the others stay unread, memory-mapped in a large file); of
    an ARPA file, its 1-grams alone. A mixture's is the union of its models'
    (``mixture.py``). A bad file, or one that is not a model, raises ``ModelFileError``
    naming it."""
    if path == "-":
        raise ModelFileError("-: a model is read from a file, not from standard input")
    if is_arpa_path(path):
        from rnnlm_cli.ngram.arpa import TOKENIZER, read_arpa_vocabulary
        with open_regular(path):      # (refuses a FIFO or a device before it can block)
            pass
        return _checked_words(path, read_arpa_vocabulary(path)), TokenizerConfig(**TOKENIZER)
    arrays, metadata = load_model(path)
    if metadata.get("model_type") == "rnn-checkpoint":
        raise ModelFileError(f"{path}: a training checkpoint, not a model: take the "
                             "vocabulary of the model file (-o) it belongs to")
    tokenizer, vocab = _stored_vocabulary(path, arrays, metadata)
    return _checked_words(path, vocab), tokenizer


def _stored_vocabulary(path: str, arrays: dict, metadata: dict):
    """``(TokenizerConfig, Vocabulary)`` of a model file's (or mixture member's) arrays."""
    try:
        tokenizer = TokenizerConfig.from_dict(metadata.get("tokenizer"))
    except (TypeError, ValueError) as exc:
        raise ModelFileError(f"{path}: corrupt model: {exc}") from None
    model_type = metadata.get("model_type")
    if model_type == "mixture":
        from rnnlm_cli.mixture import union_vocabulary
        parts = _mixture_parts(path, arrays, metadata)[0]
        found = [_stored_vocabulary(name, part, meta) for name, part, meta in parts]
        if any(other != tokenizer for other, _ in found):
            raise ModelFileError(f"{path}: corrupt mixture: its models read text with "
                                 "other tokenizers than the mixture")
        return tokenizer, union_vocabulary([vocab for _, vocab in found])
    if model_type == "ngram":
        _check_ngram_arrays(path, arrays, metadata)
    elif model_type == "rnn":
        _check_rnn_arrays(path, arrays, metadata)
    else:
        raise ModelFileError(f"{path}: unknown model type {model_type!r}")
    try:
        return tokenizer, Vocabulary.from_arrays(arrays)
    except (KeyError, ValueError, UnicodeDecodeError) as exc:
        raise ModelFileError(f"{path}: corrupt model: {exc}") from None


def _checked_words(path: str, vocab: Vocabulary) -> Vocabulary:
    """``vocab``, after ``rnnlm check``'s test that no word is there twice (a stored
    index is adopted at load unchecked): a new model is built on these words."""
    try:
        vocab.check()
    except ValueError as exc:
        raise ModelFileError(f"{path}: corrupt model: {exc}") from None
    return vocab


def _open_arpa(path: str):
    from rnnlm_cli.ngram.arpa import read_arpa
    from rnnlm_cli.ngram.invariants import check_at_load
    with open_regular(path):      # (refuses a FIFO or a device before it can block)
        pass
    model = read_arpa(path)
    try:
        check_at_load(model.tables)
    except ValueError as exc:
        raise ModelFileError(f"{path}: corrupt model: {exc}") from None
    return model


def _open_ngram(path: str, arrays: dict, metadata: dict):
    from rnnlm_cli.ngram.invariants import check_at_load
    from rnnlm_cli.ngram.model import NgramModel
    _check_ngram_arrays(path, arrays, metadata)
    try:
        model = NgramModel.from_arrays(arrays, metadata)
        check_at_load(model.tables)
    except (KeyError, ValueError, UnicodeDecodeError) as exc:
        raise ModelFileError(f"{path}: corrupt model: {exc}") from None
    return model


def _open_rnn(path: str, arrays: dict, metadata: dict):
    from rnnlm_cli.rnn.model import RnnModel
    _check_rnn_arrays(path, arrays, metadata)
    try:
        return RnnModel.from_arrays(arrays, metadata)
    except (KeyError, ValueError, UnicodeDecodeError) as exc:
        raise ModelFileError(f"{path}: corrupt model: {exc}") from None


def _check_ngram_arrays(path: str, arrays: dict, metadata: dict) -> None:
    """The checks of an n-gram file that read no array data: a valid order, and the
    arrays of that order, and no other, each with its dtype and rank."""
    from rnnlm_cli.ngram.invariants import check_order
    from rnnlm_cli.ngram.model import NgramModel
    from rnnlm_cli.ngram.training import MAX_ORDER
    order = metadata.get("order")
    if isinstance(order, bool) or not isinstance(order, int) or not 1 <= order <= MAX_ORDER:
        raise ModelFileError(f"{path}: corrupt model: bad order {order!r}")
    check_arrays(path, arrays, NgramModel.array_schema(order))
    try:
        check_order(order, arrays)
    except ValueError as exc:
        raise ModelFileError(f"{path}: corrupt model: {exc}") from None


def _check_rnn_arrays(path: str, arrays: dict, metadata: dict) -> None:
    """The checks of a recurrent model file that read no array data: a valid network
    configuration, and its arrays, each with its dtype and rank."""
    from rnnlm_cli.rnn.config import RnnConfig
    from rnnlm_cli.rnn.model import RnnModel
    try:
        config = RnnConfig.from_dict(metadata.get("rnn_config"))
    except (TypeError, ValueError) as exc:
        raise ModelFileError(f"{path}: corrupt model: {exc}") from None
    check_arrays(path, arrays, RnnModel.array_schema(config))


def check_model(path: str) -> str:
    """Verify everything of the model file at ``path`` that loading leaves out (every
    CRC, every table entry, the vocabulary's words distinct); a summary of it, or
    ``ModelFileError`` naming the first thing wrong."""
    if not is_arpa_path(path):
        verify_archive(path)
        if load_model(path)[1].get("model_type") == "rnn-checkpoint":
            return _check_checkpoint(path)
    model = open_model(path)
    try:
        _check_everything(model)
    except ValueError as exc:
        raise ModelFileError(f"{path}: corrupt model: {exc}") from None
    return _summary(model)


def _check_everything(model) -> None:
    if model.kind == "mixture":
        for component in model.components:
            _check_everything(component)
        return
    if model.kind == "ngram":
        from rnnlm_cli.ngram.invariants import check_all, check_children
        check_all(model.tables)
        check_children(model.tables, model.stored_children)
    model.vocab.check()


def _summary(model) -> str:
    words = f"{len(model.vocab)} words"
    if model.kind == "mixture":
        parts = "; ".join(f"{w:.4g} x {_summary(c)}" for w, c in zip(model.weights,
                                                                    model.components))
        return f"mixture of {len(model.components)} models, {words}: {parts}"
    if model.kind == "ngram":
        grams = sum(int(keys.size) for keys in model.tables.keys)
        return f"order-{model.order} n-gram model, {words}, {grams} n-grams"
    config = model.config
    return f"{config.layers}-layer {config.cell} model, hidden {config.hidden}, {words}"


def _check_checkpoint(path: str) -> str:
    """A train-rnn checkpoint: its state restores, and no array holds NaN or infinity."""
    from rnnlm_cli.rnn.checkpoint import Checkpoint
    checkpoint = Checkpoint(path)
    state = checkpoint.restore_state()
    for name, array in checkpoint.arrays.items():
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            raise ModelFileError(f"{path}: corrupt checkpoint: array '{name}' holds NaN "
                                 "or infinite values")
    return f"train-rnn checkpoint after epoch {state.epoch}, {len(checkpoint.arrays)} arrays"
