"""Sampling and beam search over any ``LanguageModel``: ``generate`` and ``complete``.

Written once against ``lm.py``: this module never asks which backend it is driving. It
uses ``initial_state``, ``advance``, ``log_probs`` and ``select`` only, always on a whole
batch of rows at once.

- ``sample``: N samples of one prompt advance together as one batch (chunked only when
  ``N * |V|`` would not fit in ``BATCH_ELEMENTS``). The next token is drawn from the
  model's distribution after ``--no-unk``, temperature (0: greedy argmax), top-k and top-p,
  in that order, with a ``numpy.random.Generator`` passed in by the caller: the same seed
  gives the same text. Each emitted token is reported with its log-probability under the
  model's own distribution, not the reshaped one it was drawn from.
- ``complete``: the K most probable continuations of a prefix, by beam search. A
  continuation is either exactly ``max_tokens`` tokens long or ends earlier with
  ``</s>``; these continuations partition the probability mass, so their probabilities
  sum to one over all of them.

All log-probabilities are natural logs. ``<s>`` is never emitted.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterator, List, Optional, Sequence

import numpy as np

from rnnlm_cli.errors import OptionError
from rnnlm_cli.lm import LanguageModel
from rnnlm_cli.options import check_flag, check_number, check_whole
from rnnlm_cli.tokenizer import SPACE_SYMBOL, Tokenizer
from rnnlm_cli.vocab import BOS, EOS, UNK

LN10 = math.log(10.0)

# Largest batch * |V| a sampling step works on (float64: 16 MB per (B, V) array).
BATCH_ELEMENTS = 2 ** 21

# Largest beam * |V| of a search step (a few float64 arrays of 128 MB): a wider beam is
# refused, not left to exhaust memory (beam * |V| candidates are scored at every step).
BEAM_ELEMENTS = 2 ** 24


# -- prompts --------------------------------------------------------------------------------

@dataclass
class Prompt:
    """A prompt or prefix as the model reads it after ``<s>``."""

    text: str                 # as the user gave it
    tokens: List[str]         # as tokenized (unknown words kept as written)
    ids: np.ndarray           # (T,) int64, unknown words as <unk>
    unknown: List[str] = field(default_factory=list)  # the words read as <unk>

    def warning(self, place: str) -> Optional[str]:
        """A line for stderr when some words are outside the vocabulary, else None;
        ``place`` says which prompt (``"'The zebra'"``, ``"<stdin>: line 3"``)."""
        if not self.unknown:
            return None
        words = list(dict.fromkeys(self.unknown))          # each once, in order
        shown = " ".join(_clipped(w) for w in words[:WARN_WORDS])
        more = f" and {len(words) - WARN_WORDS} more" if len(words) > WARN_WORDS else ""
        place = _clipped(place, 200)   # (a prompt given on the command line, quoted)
        return f"Warning: {place}: not in the vocabulary, read as {UNK}: {shown}{more}"


WARN_WORDS = 10   # unknown words a warning lists (a huge prompt must not make a huge line)


def _clipped(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[:limit - 3] + "..."


def encode_prompt(model: LanguageModel, tokenizer: Tokenizer, text: str) -> Prompt:
    """Tokenize ``text`` as the model's training text was; an empty text is ``<s>`` alone.

    Literal ``<s>`` and ``</s>`` are dropped (they mark sentence boundaries). At character
    level a trailing space is kept as a space token: "The " asks for the next word.
    """
    tokens = [t for t in tokenizer.tokenize(text) if t not in (BOS, EOS)]
    if tokenizer.config.level == "char" and tokens and text[-1:].isspace():
        tokens.append(SPACE_SYMBOL)
    index = model.vocab.index
    ids = np.array([index.get(t, model.vocab.unk_id) for t in tokens], dtype=np.int64)
    unknown = [t for t in tokens if t not in index]
    return Prompt(text, tokens, ids, unknown)


def _prompt_state(model: LanguageModel, prompt: Prompt, batch: int):
    """The state after ``<s>`` and the prompt, repeated over ``batch`` rows."""
    state = model.initial_state(1)
    for token_id in prompt.ids:
        state = model.advance(state, np.array([token_id], dtype=np.int64))
    return model.select(state, np.zeros(batch, dtype=np.int64))


def _log_probs(model: LanguageModel, state) -> np.ndarray:
    """``(B, |V|)`` float64 log-probabilities with ``<s>`` impossible, whatever the backend."""
    out = np.array(model.log_probs(state), dtype=np.float64)
    out[:, model.vocab.bos_id] = -np.inf
    return out


# -- sampling ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class SamplingConfig:
    """How ``sample`` picks each next token."""

    max_tokens: int = 50       # tokens per sample, </s> included
    temperature: float = 1.0   # 0: always the most probable token (greedy)
    top_k: int = 0             # keep the K most probable tokens (0: all)
    top_p: float = 1.0         # keep the fewest most probable tokens holding mass >= P
    no_unk: bool = False       # never emit <unk>

    def validate(self) -> None:
        """Raise ``OptionError`` naming the option if any value is out of range."""
        check_whole("max_tokens", self.max_tokens, 1)
        check_number("temperature", self.temperature, 0.0, why=" (0: greedy)")
        check_whole("top_k", self.top_k, 0, why=" (0: all)")
        check_number("top_p", self.top_p, 0.0, 1.0, low_open=True)
        check_flag("no_unk", self.no_unk)


@dataclass
class Sample:
    """One generated sequence after a prompt."""

    prompt: Prompt
    tokens: List[str]            # emitted tokens; the last is </s> if the sample ended
    token_logprobs: List[float]  # natural log, under the model's own distribution
    text: str                    # the prompt and the sample, detokenized, without </s>

    @property
    def logprob(self) -> float:
        return float(sum(self.token_logprobs))

    def to_dict(self) -> dict:
        return {"prompt": self.prompt.text, "tokens": self.tokens, "text": self.text,
                "logprob": self.logprob, "log10prob": self.logprob / LN10,
                "token_logprobs": self.token_logprobs}


def sample(model: LanguageModel, prompt: Prompt, num: int, config: SamplingConfig,
           rng: np.random.Generator) -> Iterator[Sample]:
    """``num`` samples after ``prompt``, drawn as one batch (see the module docstring);
    yielded as each batch is done, so a pipe gets the first lines early."""
    config.validate()
    tokenizer = model.tokenizer
    rows = max(1, BATCH_ELEMENTS // len(model.vocab))
    for start in range(0, num, rows):
        for ids, logprobs in _sample_batch(model, prompt, min(rows, num - start), config, rng):
            tokens = model.vocab.decode(ids)
            words = tokens[:-1] if tokens and tokens[-1] == EOS else tokens
            text = tokenizer.detokenize(prompt.tokens + words)
            yield Sample(prompt, tokens, logprobs, text)


def _sample_batch(model, prompt, batch, config, rng):
    """Token ids and their log-probabilities of ``batch`` samples, advanced together.

    Each step is kept as drawn (the rows still going) and laid out at the end, so memory
    grows with the tokens drawn, not with ``max_tokens``."""
    eos = model.vocab.eos_id
    state = _prompt_state(model, prompt, batch)
    steps = []                                 # (alive, choice, logprob) of each step
    alive = np.arange(batch)                   # the sample each row of the state belongs to
    for t in range(config.max_tokens):
        log_probs = _log_probs(model, state)                             # (B, V)
        choice = choose_tokens(log_probs, config, rng, model.vocab.unk_id, eos)
        steps.append((alive, choice, log_probs[np.arange(alive.size), choice]))
        going = choice != eos
        if not going.any() or t == config.max_tokens - 1:
            break
        if not going.all():  # finished samples leave the batch
            state = model.select(state, np.flatnonzero(going))
            alive, choice = alive[going], choice[going]
        state = model.advance(state, choice)
    ids = np.full((batch, len(steps)), -1, dtype=np.int64)     # (N, T), -1: after </s>
    logprobs = np.zeros((batch, len(steps)))                    # (N, T)
    for t, (rows, choice, logprob) in enumerate(steps):
        ids[rows, t], logprobs[rows, t] = choice, logprob
    lengths = np.count_nonzero(ids >= 0, axis=1)
    return [(ids[i, :n].tolist(), logprobs[i, :n].tolist()) for i, n in enumerate(lengths)]


def choose_tokens(log_probs: np.ndarray, config: SamplingConfig, rng: np.random.Generator,
                  unk_id: int, eos_id: int) -> np.ndarray:
    """One token per row of ``(B, |V|)`` log-probabilities, as ``config`` says."""
    logits = sampling_logits(log_probs, config, unk_id, eos_id)
    if config.temperature == 0:
        return np.argmax(logits, axis=1)
    weights = np.exp(logits)                                           # (B, V), max 1
    cumulative = np.cumsum(weights, axis=1)
    u = rng.random(log_probs.shape[0]) * cumulative[:, -1]             # (B,)
    choice = np.count_nonzero(cumulative <= u[:, None], axis=1)        # first cum > u
    last_possible = weights.shape[1] - 1 - np.argmax(weights[:, ::-1] > 0, axis=1)
    return np.minimum(choice, last_possible)  # u rounded up to the total: stay in support


def sampling_logits(log_probs: np.ndarray, config: SamplingConfig, unk_id: int,
                    eos_id: int) -> np.ndarray:
    """The unnormalised log-weights ``choose_tokens`` draws from: ``-inf`` where a token
    is excluded by ``--no-unk``, top-k or top-p, the rest divided by the temperature.

    Where nothing is left (``--no-unk`` after a context that only ``<unk>`` follows),
    the row ends the sentence: ``</s>`` gets all the weight.
    """
    logits = log_probs.copy()
    if config.no_unk:
        logits[:, unk_id] = -np.inf
    empty = np.isneginf(logits).all(axis=1)
    if empty.any():
        logits[empty, eos_id] = 0.0
    if config.temperature == 0:
        return logits
    # The best token at 0 first, so a tiny temperature cannot overflow every weight.
    logits = (logits - logits.max(axis=1, keepdims=True)) / config.temperature
    if 0 < config.top_k < logits.shape[1]:
        _keep_top_k(logits, config.top_k)
    if config.top_p < 1:
        _keep_top_p(logits, config.top_p)
    return logits


def _keep_top_k(logits: np.ndarray, k: int) -> None:
    """Keep exactly the k largest of each row (ties at the k-th value: the lowest ids)."""
    vocab_size = logits.shape[1]
    kth = np.partition(logits, vocab_size - k, axis=1)[:, vocab_size - k, None]  # (B, 1)
    above = logits > kth
    ties = logits == kth
    room = k - np.count_nonzero(above, axis=1, keepdims=True)
    keep = above | (ties & (np.cumsum(ties, axis=1) <= room))
    logits[~keep] = -np.inf


def _keep_top_p(logits: np.ndarray, p: float) -> None:
    """Keep the fewest most probable tokens whose mass reaches ``p`` (nucleus sampling):
    a token stays when the tokens ranked before it hold less than ``p``."""
    order = np.argsort(-logits, axis=1, kind="stable")                          # (B, V)
    weights = np.exp(np.take_along_axis(logits, order, axis=1))   # the best is exp(0) = 1
    mass_before = (np.cumsum(weights, axis=1) - weights) / weights.sum(axis=1, keepdims=True)
    dropped = np.zeros(logits.shape, dtype=bool)
    np.put_along_axis(dropped, order, mass_before >= p, axis=1)
    logits[dropped] = -np.inf


# -- completion -----------------------------------------------------------------------------

@dataclass
class Completion:
    """One continuation of a prefix, ranked by its total log-probability."""

    tokens: List[str]            # ends with </s> when the sentence ends there
    token_logprobs: List[float]  # natural log
    text: str                    # the continuation detokenized (</s> written as such)

    @property
    def logprob(self) -> float:
        return float(sum(self.token_logprobs))

    @property
    def log10prob(self) -> float:
        return self.logprob / LN10

    def to_dict(self) -> dict:
        return {"text": self.text, "tokens": self.tokens, "logprob": self.logprob,
                "log10prob": self.log10prob, "token_logprobs": self.token_logprobs}


def complete(model: LanguageModel, prompt: Prompt, top: int = 5, max_tokens: int = 1,
             beam: Optional[int] = None) -> List[Completion]:
    """The ``top`` most probable continuations of ``prompt`` (all of them when ``top`` is
    0, which needs ``max_tokens`` 1: the whole next-token distribution), by beam search
    of width ``beam`` (default ``max(top, 5)``). Continuations of probability 0 are left
    out. With ``beam >= |V|`` and ``max_tokens <= 2`` the search is exhaustive."""
    check_whole("top", top, 0, why=" (0: every next token)")
    check_whole("max_tokens", max_tokens, 1)
    if beam is not None:
        check_whole("beam", beam, 1)
    if top == 0 and max_tokens != 1:
        raise OptionError("--top 0 (the whole next-token distribution) needs --max-tokens 1")
    beam = beam if beam is not None else max(top, 5)
    widest = BEAM_ELEMENTS // len(model.vocab)
    if max_tokens > 1 and beam > widest:
        raise OptionError(f"a beam of {beam} hypotheses (--beam, or --top if larger) is too "
                          f"wide for {len(model.vocab)} words: at most {widest} (beam x "
                          f"words <= {BEAM_ELEMENTS})")
    found = _beam_search(model, prompt, top, max_tokens, beam)
    tokenizer = model.tokenizer
    return [Completion(model.vocab.decode(ids), logprobs, tokenizer.detokenize(
        model.vocab.decode(ids))) for ids, logprobs in found]


def _beam_search(model, prompt, top, max_tokens, beam):
    """``(ids, logprobs)`` of the best finished continuations, best first."""
    eos = model.vocab.eos_id
    state = _prompt_state(model, prompt, 1)
    history = np.zeros((1, 0), dtype=np.int64)       # (W, t) token ids of live hypotheses
    history_lp = np.zeros((1, 0))                    # (W, t) their log-probabilities
    scores = np.zeros(1)                             # (W,) totals
    done = []                                        # (total, ids, logprobs)
    for t in range(max_tokens):
        log_probs = _log_probs(model, state)                             # (W, V)
        totals = scores[:, None] + log_probs
        ended = np.flatnonzero(np.isfinite(totals[:, eos]))
        done += [(totals[w, eos], [*history[w].tolist(), eos],
                  [*history_lp[w].tolist(), log_probs[w, eos]]) for w in ended]
        totals[:, eos] = -np.inf
        width = (top or totals.size) if t == max_tokens - 1 else beam
        parents, tokens = _best(totals, width)
        if t == max_tokens - 1:
            done += [(totals[w, v], [*history[w].tolist(), v],
                      [*history_lp[w].tolist(), log_probs[w, v]])
                     for w, v in zip(parents.tolist(), tokens.tolist())]
            break
        if parents.size == 0:
            break
        history = np.column_stack([history[parents], tokens])
        history_lp = np.column_stack([history_lp[parents], log_probs[parents, tokens]])
        scores = totals[parents, tokens]
        if top and len(done) >= top and scores[0] <= _kth_best(done, top):
            break  # no live hypothesis can still overtake the finished ones: exact stop
        state = model.advance(model.select(state, parents), tokens)
    done.sort(key=lambda item: -item[0])  # stable: ties keep the order they were found in
    best = done[:top] if top else done
    return [(ids, [float(x) for x in logprobs]) for _, ids, logprobs in best]


def _best(totals: np.ndarray, width: int):
    """Row and column of the ``width`` largest finite entries, best first."""
    flat = totals.ravel()
    if width < flat.size:
        candidates = np.argpartition(-flat, width - 1)[:width]
    else:
        candidates = np.arange(flat.size)
    candidates = candidates[np.isfinite(flat[candidates])]
    candidates = candidates[np.lexsort((candidates, -flat[candidates]))]
    return np.divmod(candidates, totals.shape[1])


def _kth_best(done: Sequence, k: int) -> float:
    return sorted((item[0] for item in done), reverse=True)[k - 1]
