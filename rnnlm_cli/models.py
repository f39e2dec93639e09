"""Opening a model file of any backend: ``.npz`` written by rnnlm, or an ARPA file.

The one place that knows which class reads which ``model_type``; the commands get a
``LanguageModel`` and never ask which backend it is. Each backend is imported when a file
of its kind is opened, so scoring with one does not pay for loading the other.

Opening checks what keeps a model in bounds; ``check_model`` (``rnnlm check``) checks
everything else a file could get wrong. docs/model-format.md lists every array and key
of every kind of file, and which of these checks applies to each.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from rnnlm_cli.errors import ModelFileError, OptionError
from rnnlm_cli.lm import LanguageModel
from rnnlm_cli.modelfile import check_arrays, load_model, open_regular, verify_archive
from rnnlm_cli.tokenizer import TokenizerConfig

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
    from rnnlm_cli.mixture import COMPONENT_PREFIX, MixtureModel
    described, weights = metadata.get("components"), metadata.get("weights")
    if not (isinstance(described, list) and described and isinstance(weights, list)
            and all(isinstance(m, dict) for m in described)
            and all(isinstance(w, (int, float)) for w in weights)):
        raise ModelFileError(f"{path}: corrupt mixture: no list of components and weights")
    components = []
    for i, component_metadata in enumerate(described):
        prefix = COMPONENT_PREFIX.format(i)
        part = {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}
        components.append(_from_arrays(f"{path} (model {i + 1})", part, component_metadata))
    try:
        return MixtureModel(components, weights)
    except OptionError as exc:
        raise ModelFileError(f"{path}: corrupt mixture: {exc}") from None


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
    from rnnlm_cli.ngram.invariants import check_at_load, check_order
    from rnnlm_cli.ngram.model import NgramModel
    from rnnlm_cli.ngram.training import MAX_ORDER
    order = metadata.get("order")
    if isinstance(order, bool) or not isinstance(order, int) or not 1 <= order <= MAX_ORDER:
        raise ModelFileError(f"{path}: corrupt model: bad order {order!r}")
    check_arrays(path, arrays, NgramModel.array_schema(order))
    try:
        check_order(order, arrays)
        model = NgramModel.from_arrays(arrays, metadata)
        check_at_load(model.tables)
    except (KeyError, ValueError, UnicodeDecodeError) as exc:
        raise ModelFileError(f"{path}: corrupt model: {exc}") from None
    return model


def _open_rnn(path: str, arrays: dict, metadata: dict):
    from rnnlm_cli.rnn.config import RnnConfig
    from rnnlm_cli.rnn.model import RnnModel
    try:
        config = RnnConfig.from_dict(metadata.get("rnn_config"))
    except (TypeError, ValueError) as exc:
        raise ModelFileError(f"{path}: corrupt model: {exc}") from None
    check_arrays(path, arrays, RnnModel.array_schema(config))
    try:
        return RnnModel.from_arrays(arrays, metadata)
    except (KeyError, ValueError, UnicodeDecodeError) as exc:
        raise ModelFileError(f"{path}: corrupt model: {exc}") from None


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
