"""The ``rnnlm`` command line: parsing and output only; the library does the work.

This is the one module that imports click. Library errors (``errors.RnnlmError``) become
one ``Error: ...`` line on stderr and exit status 1, in one place: ``RnnlmGroup``.
"""
from __future__ import annotations

import itertools
import json
import math
import os
import sys
from typing import Iterable, Iterator, List, Optional

import click

from rnnlm_cli import __version__
from rnnlm_cli.errors import CorpusError, RnnlmError

ENCODING_ERRORS = ("strict", "replace")


class RnnlmGroup(click.Group):
    """Turns library errors into ``Error: ...`` and a closed pipe into a quiet exit."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except RnnlmError as exc:
            raise click.ClickException(str(exc)) from None
        except BrokenPipeError:
            # The reader went away (``| head``): stop quietly, as Unix tools do.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            ctx.exit(1)
        except KeyboardInterrupt:
            click.echo("Error: interrupted; no output file was written", err=True)
            ctx.exit(130)


@click.group(cls=RnnlmGroup)
@click.version_option(__version__, prog_name="rnnlm")
def cli():
    """Train n-gram and recurrent language models on text, and score text with them.

    \b
    Example:
        rnnlm train-ngram corpora/en/sentences.txt -o en.npz
        echo "The train leaves at noon." | rnnlm perplexity en.npz
    """


# -- options shared by several commands -------------------------------------------------

def tokenizer_options(command):
    """``--tokenizer``, ``--level``, ``--lowercase``: how training text is cut into tokens."""
    for option in reversed([
        click.option("--tokenizer", "tokenizer_kind", type=click.Choice(["regex", "whitespace"]),
                     default="regex", show_default=True,
                     help="regex: raw text (words, numbers, punctuation); whitespace: "
                          "pre-tokenized text, split on ASCII whitespace only (as KenLM)."),
        click.option("--level", type=click.Choice(["word", "char"]), default="word",
                     show_default=True, help="Model words or characters."),
        click.option("--lowercase", is_flag=True, help="Lower-case the text first."),
        click.option("--min-count", type=click.IntRange(min=1), default=1, show_default=True,
                     help="Words seen fewer times become <unk>."),
        click.option("--max-vocab", type=click.IntRange(min=4), default=None,
                     help="Keep at most this many words (specials included); the rest "
                          "become <unk>."),
    ]):
        command = option(command)
    return command


def encoding_option(command):
    return click.option(
        "--encoding-errors", type=click.Choice(ENCODING_ERRORS), default="strict",
        show_default=True,
        help="On bytes that are not UTF-8: stop with an error naming the line (strict), "
             "or read them as U+FFFD and go on (replace).")(command)


def _parse_prune(ctx, param, values) -> List[int]:
    thresholds = []
    for value in values:
        for part in value.replace(",", " ").split():
            try:
                thresholds.append(int(part))
            except ValueError:
                raise click.BadParameter(f"{part!r} is not a whole number") from None
    return thresholds


# -- reading text ---------------------------------------------------------------------------

def read_corpus_lines(paths: Iterable[str], encoding_errors: str) -> Iterator[str]:
    """The lines of each file in turn (``-`` is stdin); an empty file is an error."""
    from rnnlm_cli.tokenizer import read_lines
    for path in paths:
        lines = read_lines(path, encoding_errors)
        if not lines:
            raise CorpusError(f"{_name(path)}: file is empty")
        yield from lines


def _name(path: str) -> str:
    return "<stdin>" if path == "-" else path


# -- train-ngram ---------------------------------------------------------------------------

@cli.command("train-ngram")
@click.argument("corpus", nargs=-1, required=True)
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="The model file to write (.npz).")
@click.option("--order", type=click.IntRange(1, 20), default=3, show_default=True,
              help="Longest n-gram.")
@click.option("--smoothing", type=click.Choice(["kneser-ney", "witten-bell", "add-k", "mle"]),
              default="kneser-ney", show_default=True,
              help="kneser-ney: interpolated modified Kneser-Ney (as KenLM's lmplz).")
@click.option("--add-k", "add_k", type=click.FloatRange(min=0, min_open=True), default=1.0,
              show_default=True, help="The k of --smoothing add-k.")
@click.option("--prune", multiple=True, callback=_parse_prune, metavar="C2,C3,...",
              help="Drop n-grams seen at most C times, one threshold per order from 2 "
                   "(the last repeats), as lmplz --prune: --prune 0,1,1 (kneser-ney only).")
@click.option("--arpa", type=click.Path(dir_okay=False), default=None,
              help="Also write the model in ARPA format (read by KenLM and SRILM); "
                   "gzipped if FILE ends in .gz.")
@tokenizer_options
@encoding_option
def train_ngram(corpus, output, order, smoothing, add_k, prune, arpa, tokenizer_kind, level,
                lowercase, min_count, max_vocab, encoding_errors):
    """Train an n-gram model on CORPUS files (- for stdin), one sentence per line.

    \b
    Example:
        rnnlm train-ngram corpora/en/sentences.txt --order 3 -o en.npz
        rnnlm train-ngram train.txt --tokenizer whitespace --order 5 -o m.npz --arpa m.arpa
    """
    from rnnlm_cli.modelfile import atomic_output, check_writable, write_model
    from rnnlm_cli.ngram.arpa import write_arpa
    from rnnlm_cli.ngram.training import NgramConfig, train_ngram as train
    from rnnlm_cli.tokenizer import Tokenizer, TokenizerConfig

    config = NgramConfig(order, smoothing, add_k, prune, min_count, max_vocab)
    config.validate()
    for path in filter(None, (output, arpa)):
        check_writable(path)
    tokenizer = Tokenizer(TokenizerConfig(tokenizer_kind, level, lowercase))
    sentences = tokenizer.tokenize_lines(read_corpus_lines(corpus, encoding_errors))
    with _progress(order + 2, "training") as step:
        model = train(sentences, config, ", ".join(map(_name, corpus)),
                      tokenizer.config.to_dict(), progress=step)
    _warn_training(model.metadata)
    # Both files or neither: the ARPA file is renamed into place first, then the model.
    with atomic_output(output, "wb") as model_out:
        if arpa:
            with atomic_output(arpa, "wb") as arpa_out:
                write_arpa(model, arpa_out, compress=arpa.endswith(".gz"))
        write_model(model_out, model.to_arrays(), model.metadata)
    meta = model.metadata
    click.echo(f"{output}: order-{order} {smoothing} model, {len(model.vocab)} words, "
               f"{sum(meta['ngrams'])} n-grams, trained on {meta['corpus']['tokens']} tokens "
               f"in {meta['corpus']['sentences']} sentences", err=True)


def _warn_training(metadata: dict) -> None:
    skipped = metadata["corpus"]["skipped_markers"]
    if skipped:
        click.echo(f"Warning: dropped {skipped} literal <s> or </s> from the corpus "
                   "(they mark sentence boundaries)", err=True)
    fallback = metadata["smoothing_notes"].get("discount_fallback", {})
    if fallback:
        where = ", ".join(f"{n}-grams ({problem})" for n, problem in fallback.items())
        click.echo(f"Warning: cannot estimate Kneser-Ney discounts for {where}: small or "
                   "artificial data? Using lmplz's fallback discounts 0.5 1 1.5 there "
                   "(recorded in the model)", err=True)


class _progress:
    """A tqdm bar over training stages, on stderr and only when stderr is a terminal."""

    def __init__(self, stages: int, description: str):
        from tqdm import tqdm
        self.bar = tqdm(total=stages, desc=description, file=sys.stderr, leave=False,
                        disable=not sys.stderr.isatty(), bar_format="{desc}{n}/{total} "
                        "[{elapsed}]")

    def __enter__(self):
        def step(message: str) -> None:
            self.bar.set_description(message)
            self.bar.update(1)
        return step

    def __exit__(self, *exc):
        self.bar.close()
        return False


# -- perplexity ---------------------------------------------------------------------------------

@cli.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.argument("text", nargs=-1)
@click.option("--per-sentence", is_flag=True,
              help="Also print one line per sentence: log10 probability, tokens, OOVs, "
                   "perplexity, then the sentence.")
@click.option("--per-token", is_flag=True,
              help="Also print every token as word=id order log10prob, like KenLM's query.")
@click.option("--json", "as_json", is_flag=True,
              help="One JSON object per line: one per sentence with --per-sentence or "
                   "--per-token (the tokens under token_scores), then the summary. "
                   "Infinite values (a zero probability) are written as null.")
@encoding_option
def perplexity(model, text, per_sentence, per_token, as_json, encoding_errors):
    """Score TEXT files (stdin if none) with MODEL, one sentence per line.

    MODEL is an .npz written by rnnlm, or an ARPA file (.arpa, .arpa.gz) made by KenLM
    or SRILM. Each line is scored with <s> before it and </s> after; </s> counts as a
    token. Perplexity is reported including and excluding OOVs (KenLM's conventions).

    \b
    Example:
        rnnlm perplexity en.npz test.txt
        rnnlm perplexity en.npz --per-sentence --json < test.txt
    """
    from rnnlm_cli.models import open_model
    from rnnlm_cli.scoring import score_text, summarize
    from rnnlm_cli.tokenizer import Tokenizer, TokenizerConfig

    lm = open_model(model)
    tokenizer = Tokenizer(TokenizerConfig.from_dict(lm.metadata["tokenizer"]))
    paths = text or ("-",)
    lines = list(read_corpus_lines(paths, encoding_errors))
    if not any(line.strip() for line in lines):
        raise CorpusError(f"{', '.join(map(_name, paths))}: only blank lines; nothing to score")
    scored = score_text(lm, list(tokenizer.tokenize_lines(lines)))
    if per_sentence or per_token:
        _print_details(lm, scored, lines, per_sentence, per_token, as_json)
    summary = summarize(scored)
    _print_summary(summary, as_json)
    if summary.zero_prob:
        click.echo(f"Warning: the model gives probability zero to {summary.zero_prob} "
                   "token(s): perplexity is infinite", err=True)


def _print_details(lm, scored, lines, per_sentence, per_token, as_json) -> None:
    from rnnlm_cli.scoring import sentence_summaries, token_rows
    sentences = sentence_summaries(scored)
    tokens = token_rows(lm, scored) if per_token else itertools.repeat(None)
    for index, (summary, rows) in enumerate(zip(sentences, tokens)):
        if as_json:
            record = {"sentence": index, "text": lines[index], **summary.to_dict()}
            del record["sentences"]
            if rows is not None:
                record["token_scores"] = rows
            click.echo(_json(record))
            continue
        if per_token:
            click.echo("\t".join(f"{r['token']}={r['id']} {r['order']} {r['log10prob']:.6g}"
                                 for r in rows) +
                       f"\tTotal: {summary.log10prob:.6g} OOV: {summary.oovs}")
        if per_sentence:
            click.echo(f"{summary.log10prob:.6g}\t{summary.tokens}\t{summary.oovs}\t"
                       f"{summary.perplexity:.6g}\t{lines[index]}")


def _print_summary(summary, as_json: bool) -> None:
    if as_json:
        click.echo(_json(summary.to_dict()))
        return
    click.echo(f"sentences: {summary.sentences}\n"
               f"tokens: {summary.tokens} (including </s>)\n"
               f"oovs: {summary.oovs}\n"
               f"logprob: {summary.logprob:.6f} (natural log)\n"
               f"log10prob: {summary.log10prob:.6f}\n"
               f"perplexity: {summary.perplexity:.6f}\n"
               f"perplexity excluding OOVs: {summary.perplexity_excluding_oovs:.6f}")


def _json(record: dict) -> str:
    """One line of strict JSON: infinities and NaN become null."""
    def clean(value):
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, list):
            return [clean(v) for v in value]
        return value
    return json.dumps(clean(record), ensure_ascii=False)
