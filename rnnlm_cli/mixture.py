"""A mixture of language models: ``P(w | h) = sum_i lambda_i P_i(w | h)``.

A ``MixtureModel`` is a ``LanguageModel`` over other ``LanguageModel``s (n-gram, recurrent,
ARPA, whatever ``models.open_model`` returns); it knows only ``lm.py``. Each component keeps
its own state (its n-gram context, its recurrent state): the mixture's state is the tuple
of theirs, and every call is passed on to each component and combined.

The vocabulary. Components may have different vocabularies (a Kneser-Ney model over every
word, an RNN over the words seen twice). The mixture's vocabulary is their union (the
first component's words in its order, then each other component's new words). A word
that component ``i`` does not know is, to ``i``, its ``<unk>``: ``i``'s ``<unk>``
probability is shared equally among the words of the union it lacks and the union's
``<unk>`` itself,

    P_i(w | h) = P_i(<unk> | h) / (m_i + 1)     for w outside i's vocabulary or <unk>,

where ``m_i`` is the number of union words ``i`` lacks. So each component's distribution
over the union still sums to one, and so does the mixture's (a convex combination). The
share is the least informed choice that keeps the sum: a word ``i`` never saw is, to
``i``, as likely as any other word it never saw. With one vocabulary for all (``m_i = 0``)
every component scores exactly as it does alone.

Weights are given, or tuned on held-out text by expectation maximization
(``tune_weights``): ``lambda_i <- mean_t lambda_i P_i(t) / sum_j lambda_j P_j(t)`` over
the held-out tokens, which never increases the held-out perplexity (Dempster et al.
1977; SRILM's ``compute-best-mix``).
"""
from __future__ import annotations

import math
from typing import Callable, List, Optional, Sequence

import numpy as np

from rnnlm_cli.errors import OptionError
from rnnlm_cli.lm import LanguageModel, TokenScores
from rnnlm_cli.vocab import Vocabulary

MIXTURE_TYPE = "mixture"
COMPONENT_PREFIX = "component{}."     # array names of component i in a mixture file


def check_weights(weights: Sequence[float], count: int) -> List[float]:
    """``weights`` as floats, or ``OptionError``: one per component, each in [0, 1], summing
    to 1 (within 1e-6: decimals as typed rarely add up exactly)."""
    weights = [float(w) for w in weights]
    if len(weights) != count:
        raise OptionError(f"{len(weights)} weight(s) for {count} models: give one per model")
    if not all(math.isfinite(w) and 0 <= w <= 1 for w in weights):
        raise OptionError(f"weights must be between 0 and 1, not {_show(weights)}")
    if abs(sum(weights) - 1) > 1e-6:
        raise OptionError(f"weights must sum to 1, not {sum(weights):.6g} ({_show(weights)})")
    return [w / sum(weights) for w in weights]


def _show(weights: Sequence[float]) -> str:
    return ",".join(f"{w:g}" for w in weights)


class MixtureModel(LanguageModel):
    """Linear interpolation of ``components`` with ``weights`` (see the module docstring)."""

    def __init__(self, components: Sequence[LanguageModel], weights: Sequence[float],
                 metadata: Optional[dict] = None):
        if len(components) < 1:
            raise OptionError("a mixture needs at least one model")
        self.components = list(components)
        self.weights = np.array(check_weights(weights, len(self.components)))
        self._check_tokenizers()
        self.vocab = union_vocabulary([c.vocab for c in self.components])
        self._maps = [_id_map(self.vocab, c.vocab) for c in self.components]     # (|V|,) each
        self._shares = [_unk_share(self.vocab, c.vocab, m) for c, m in
                        zip(self.components, self._maps)]                      # (|V|,) each
        with np.errstate(divide="ignore"):
            self._log_weights = np.log(self.weights)                          # (K,)
        self.metadata = dict(metadata or {}, model_type=MIXTURE_TYPE,
                             weights=self.weights.tolist(),
                             tokenizer=self.components[0].metadata["tokenizer"],
                             components=[c.metadata for c in self.components])

    def _check_tokenizers(self) -> None:
        first = self.components[0].metadata.get("tokenizer")
        for i, component in enumerate(self.components[1:], start=2):
            if component.metadata.get("tokenizer") != first:
                raise OptionError(
                    f"model {i} reads text with another tokenizer than model 1 "
                    f"({_describe(component.metadata.get('tokenizer'))} against "
                    f"{_describe(first)}): a mixture's models must cut text the same way")

    @property
    def kind(self) -> str:
        return MIXTURE_TYPE

    @property
    def carries_state(self) -> bool:
        return any(c.carries_state for c in self.components)

    def restart(self) -> None:
        for component in self.components:
            component.restart()

    # -- the interface, passed on to each component --------------------------------------

    def initial_state(self, batch: int):
        return tuple(c.initial_state(batch) for c in self.components)

    def advance(self, state, token_ids: np.ndarray):
        ids = np.asarray(token_ids)
        return tuple(c.advance(s, m[ids]) for c, s, m in zip(self.components, state,
                                                            self._maps))

    def select(self, state, rows: np.ndarray):
        return tuple(c.select(s, rows) for c, s in zip(self.components, state))

    def log_probs(self, state) -> np.ndarray:
        parts = [c.log_probs(s)[:, m] + share                              # (B, |V|) each
                 for c, s, m, share in zip(self.components, state, self._maps, self._shares)]
        return _mix(np.stack(parts), self._log_weights)                     # (B, |V|)

    def score(self, ids: np.ndarray, lengths: np.ndarray) -> TokenScores:
        """Each component scores the whole text on its own fast path; the per-token
        probabilities are then mixed (a few array operations per token)."""
        per_component = self.component_scores(ids, lengths)                # (K, n)
        logprob = _mix(per_component, self._log_weights)
        lengths = np.asarray(lengths, dtype=np.int64)
        return TokenScores(logprob, np.zeros(logprob.size, dtype=np.int64),
                           np.cumsum(lengths + 1))

    def component_scores(self, ids: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """``(K, n_tokens)``: each component's natural-log probability of every token
        (``</s>`` included) in the mixture's vocabulary, its ``<unk>`` share applied."""
        ids = np.asarray(ids, dtype=np.int64)
        lengths = np.asarray(lengths, dtype=np.int64)
        tokens = _with_sentence_ends(ids, lengths, self.vocab.eos_id)        # (n,)
        rows = []
        for component, id_map, share in zip(self.components, self._maps, self._shares):
            scored = component.score(id_map[ids].astype(ids.dtype), lengths)
            rows.append(scored.logprob + share[tokens])
        return np.stack(rows)

    def to_arrays(self) -> dict:
        """Every component's arrays under ``component<i>.``: the mixture is one file."""
        arrays = {}
        for i, component in enumerate(self.components):
            prefix = COMPONENT_PREFIX.format(i)
            arrays.update({prefix + k: v for k, v in component.to_arrays().items()})
        return arrays


# -- the vocabulary ----------------------------------------------------------------------------

def union_vocabulary(vocabularies: Sequence[Vocabulary]) -> Vocabulary:
    """The words of the first vocabulary in its order, then each other's new words."""
    if all(v is vocabularies[0] for v in vocabularies):
        return vocabularies[0]
    words, seen = [], set()
    for vocab in vocabularies:
        for word in vocab.words:
            if word not in seen:
                seen.add(word)
                words.append(word)
    counts = np.zeros(len(words), dtype=np.int64)
    # Only whether <unk> is a word of the training text (PTB) matters to scoring.
    counts[Vocabulary.unk_id] = int(any(v.unk_seen for v in vocabularies))
    return Vocabulary(words, counts=counts)


def _id_map(union: Vocabulary, vocab: Vocabulary) -> np.ndarray:
    """``(|union|,)``: the component's id of each union word (its ``<unk>`` if it lacks
    the word)."""
    if union is vocab:
        return np.arange(len(vocab))
    lookup = vocab.index.get
    return np.fromiter((lookup(w, vocab.unk_id) for w in union.words), dtype=np.int64,
                       count=len(union))


def _unk_share(union: Vocabulary, vocab: Vocabulary, id_map: np.ndarray) -> np.ndarray:
    """``(|union|,)`` natural-log factor on each union word's probability: ``-log(m + 1)``
    where the component reads the word as its ``<unk>`` (the union's ``<unk>``
    included), 0 elsewhere."""
    as_unk = id_map == vocab.unk_id                                           # (|union|,)
    share = np.zeros(len(union))
    if as_unk.sum() > 1:
        share[as_unk] = -math.log(as_unk.sum())
    return share


def _describe(tokenizer) -> str:
    if not isinstance(tokenizer, dict):
        return repr(tokenizer)
    return ", ".join(f"{k} {v}" for k, v in sorted(tokenizer.items()))


# -- mixing ------------------------------------------------------------------------------------

def _mix(log_probs: np.ndarray, log_weights: np.ndarray) -> np.ndarray:
    """``log sum_i lambda_i P_i`` over the first axis of ``(K, ...)`` log-probabilities,
    without underflow (log-sum-exp; a weight of 0 contributes nothing, exactly)."""
    weighted = log_probs + log_weights.reshape((-1,) + (1,) * (log_probs.ndim - 1))
    top = np.max(weighted, axis=0)
    safe = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(divide="ignore"):
        return safe + np.log(np.sum(np.exp(weighted - safe), axis=0))


def _with_sentence_ends(ids: np.ndarray, lengths: np.ndarray, eos: int) -> np.ndarray:
    """The tokens as scored: each sentence's ids followed by ``</s>``."""
    out = np.full(ids.size + lengths.size, eos, dtype=np.int64)
    sentence = np.repeat(np.arange(lengths.size), lengths)          # sentence of each token
    out[np.arange(ids.size) + sentence] = ids
    return out


# -- tuning ------------------------------------------------------------------------------------

def tune_weights(component_logprobs: np.ndarray, initial: Optional[Sequence[float]] = None,
                 report: Callable[[int, List[float], float], None] = lambda *a: None,
                 max_iterations: int = 200, tolerance: float = 1e-6) -> List[float]:
    """EM weights for ``(K, n)`` held-out log-probabilities (``component_scores``).

    Starts from ``initial`` (default: equal weights) and iterates until the held-out
    perplexity improves by less than ``tolerance`` (relative) or ``max_iterations`` pass;
    ``report(iteration, weights, perplexity)`` hears each step, iteration 0 being the
    start. Tokens that every component gives probability zero carry no information about
    the weights and are left out.
    """
    logp = np.asarray(component_logprobs, dtype=np.float64)
    logp = logp[:, np.isfinite(logp).any(axis=0)]                        # (K, n)
    if logp.shape[1] == 0:
        raise OptionError("the held-out text has no token any model gives a probability")
    k = logp.shape[0]
    weights = np.full(k, 1.0 / k) if initial is None else np.asarray(initial, dtype=float)
    ppl = _perplexity(logp, weights)
    report(0, weights.tolist(), ppl)
    for iteration in range(1, max_iterations + 1):
        with np.errstate(divide="ignore"):
            log_weights = np.log(weights)
        joint = logp + log_weights[:, None]                                # (K, n)
        posterior = np.exp(joint - _mix(logp, log_weights)[None, :])       # (K, n), cols sum 1
        weights = posterior.mean(axis=1)
        weights /= weights.sum()
        previous, ppl = ppl, _perplexity(logp, weights)
        report(iteration, weights.tolist(), ppl)
        if previous - ppl <= tolerance * previous:
            break
    return weights.tolist()


def _perplexity(logp: np.ndarray, weights: np.ndarray) -> float:
    with np.errstate(divide="ignore"):
        log_weights = np.log(weights)
    return float(np.exp(-np.mean(_mix(logp, log_weights))))


def tune_on_text(mixture: MixtureModel, lines: Sequence[str],
                 report: Callable[[int, List[float], float], None] = lambda *a: None
                 ) -> MixtureModel:
    """The mixture with its weights tuned by EM on held-out ``lines`` (one sentence per
    line, read as the components read text), starting from its current weights."""
    corpus = mixture.vocab.encode(list(mixture.tokenizer.tokenize_lines(lines)))
    mixture.restart()           # the held-out text is a text of its own, and so is the next
    logp = mixture.component_scores(corpus.ids, corpus.lengths)
    mixture.restart()
    weights = tune_weights(logp, mixture.weights, report)
    return MixtureModel(mixture.components, weights)
