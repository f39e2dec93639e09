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
from typing import Dict, Iterable, Iterator, List, Optional

import click

from rnnlm_cli import __version__, progress
from rnnlm_cli.errors import CorpusError, ModelFileError, RnnlmError

ENCODING_ERRORS = ("strict", "replace")   # Python's codec error handlers (tokenizer's too)


class RnnlmGroup(click.Group):
    """Turns library errors into ``Error: ...``, a closed pipe into a quiet exit, and an
    interrupt (Ctrl-C, SIGTERM) into a line saying which files were written."""

    def invoke(self, ctx):
        from rnnlm_cli import outputs
        outputs.written.clear()   # one command's files (tests run many in one process)
        try:
            return super().invoke(ctx)
        except RnnlmError as exc:
            raise click.ClickException(str(exc)) from None
        except MemoryError:
            raise click.ClickException("out of memory: the model, the text or the options "
                                       "ask for more than this machine has") from None
        except BrokenPipeError:
            # The reader went away (``| head``): stop quietly, as Unix tools do.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            ctx.exit(1)
        except KeyboardInterrupt as stop:
            from rnnlm_cli.outputs import written
            from rnnlm_cli.process import ignore_interrupts
            ignore_interrupts()             # (the first was this one: no more on the way out)
            done = (f"after writing {', '.join(written)}" if written
                    else "; no output file was written")
            click.echo(f"Error: interrupted{' ' if written else ''}{done}", err=True)
            ctx.exit(getattr(stop, "exit_code", 130))


@click.group(cls=RnnlmGroup)
@click.version_option(__version__, prog_name="rnnlm")
def cli():
    """Train n-gram and recurrent language models on text; score, generate and
    complete text with them.

    \b
    Example:
        rnnlm train-ngram corpora/en/sentences.txt -o en.npz
        echo "The train leaves at noon." | rnnlm perplexity en.npz
        rnnlm generate en.npz --num 3 --seed 1
        echo "The train" | rnnlm complete en.npz --top 3
    """
    from rnnlm_cli.parallel import environment_problem, thread_count
    problem = environment_problem()
    if problem:
        click.echo(f"Warning: {problem}", err=True)
    if thread_count() == 1:   # a busy machine, or RNNLM_NUM_THREADS=1 (parallel.busy): no
        _one_blas_thread()    # BLAS threads either, before a command's options load NumPy


# -- options shared by several commands -------------------------------------------------

class LibraryChoice(click.Choice):
    """A choice among the names the library defines (``module.NAME``: a smoothing method,
    a cell, an optimizer), so that adding one to the library adds it here. The list is
    read on first use (``--help``, or a value to check): the command line loads no
    backend, and no NumPy, before a command runs (``_one_blas_thread`` relies on it)."""

    def __init__(self, module: str, name: str):   # (Choice.__init__ would read the list)
        self._where = (module, name)
        self.case_sensitive = True

    @property
    def choices(self) -> tuple:
        import importlib
        module, name = self._where
        return tuple(getattr(importlib.import_module(module), name))


class FiniteFloat(click.FloatRange):
    """A float option in a range, and finite: ``inf`` and ``nan`` are usage errors (a
    ``FloatRange`` lets ``nan`` through every bound, and ``inf`` through open ones)."""

    name = "float"

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return number


class MemorySize(click.ParamType):
    """A memory budget: ``500M``, ``4G``, ``50%`` (``options.parse_size``), at least the
    least that works."""

    name = "size"

    def convert(self, value, param, ctx):
        if isinstance(value, int):
            return value
        from rnnlm_cli.errors import OptionError
        from rnnlm_cli.options import LEAST_MEMORY, parse_size
        try:
            return parse_size(value, least=LEAST_MEMORY)
        except OptionError as exc:
            self.fail(str(exc), param, ctx)


def _check_temp_dir(ctx, param, value: Optional[str]) -> Optional[str]:
    """A folder where temporary files can be made, or a usage error."""
    if value is not None:
        from rnnlm_cli.errors import OptionError
        from rnnlm_cli.outputs import check_folder
        try:
            check_folder(value)
        except OptionError as exc:
            raise click.BadParameter(str(exc)) from None
    return value


def tokenizer_options(command):
    """``--tokenizer``, ``--level``, ``--lowercase``: how training text is cut into tokens;
    ``--min-count``, ``--max-vocab`` or ``--vocab-from``: which tokens are words."""
    for option in reversed([
        click.option("--tokenizer", "tokenizer_kind",
                     type=LibraryChoice("rnnlm_cli.tokenizer", "KINDS"), default="regex",
                     show_default=True,
                     help="regex: raw text (words, numbers, punctuation); whitespace: "
                          "pre-tokenized text, split on ASCII whitespace only (as KenLM)."),
        click.option("--level", type=LibraryChoice("rnnlm_cli.tokenizer", "LEVELS"),
                     default="word", show_default=True, help="Model words or characters."),
        click.option("--lowercase", is_flag=True, help="Lower-case the text first."),
        click.option("--min-count", type=click.IntRange(min=1), default=1, show_default=True,
                     help="Words seen fewer times become <unk>."),
        click.option("--max-vocab", type=click.IntRange(min=4), default=None,
                     help="Keep at most this many words (specials included; a tie at the "
                          "cut goes to the word seen first); the rest become <unk>."),
        click.option("--vocab-from", type=click.Path(), default=None, metavar="MODEL",
                     help="Take the words, with their ids, of MODEL (n-gram, RNN or mixture "
                          ".npz, or ARPA), and its tokenizer settings; other words become "
                          "<unk>. Not with --min-count or --max-vocab."),
    ]):
        command = option(command)
    return command


def network_options(command):
    """The shape and initialisation of a recurrent network: ``--cell``, ``--activation``,
    ``--layers``, ``--hidden``, ``--embed``, ``--init``, ``--init-scale``, ``--forget-bias``
    (``train-rnn``, and ``gradients`` for an untrained model)."""
    for option in reversed([
        click.option("--cell", type=LibraryChoice("rnnlm_cli.rnn.config", "CELLS"),
                     default="lstm", show_default=True,
                     help="rnn: the Elman cell s = f(U x + W s' + b)."),
        click.option("--activation", type=LibraryChoice("rnnlm_cli.rnn.config", "ACTIVATIONS"),
                     default="tanh", show_default=True, help="The f of --cell rnn."),
        click.option("--layers", type=click.IntRange(min=1), default=1, show_default=True),
        click.option("--hidden", type=click.IntRange(min=1), default=200, show_default=True,
                     help="Hidden units H per layer."),
        click.option("--embed", type=click.IntRange(min=1), default=None,
                     help="Embedding size E  [default: H]"),
        click.option("--init", type=LibraryChoice("rnnlm_cli.rnn.config", "INITS"),
                     default="uniform", show_default=True,
                     help="Of the recurrent matrix W; identity (with zero biases) is the IRNN "
                          "recipe, for --activation relu."),
        click.option("--init-scale", type=FiniteFloat(min=0, max=100, min_open=True),
                     default=None,
                     help="std (normal), bound (uniform), gain (xavier, orthogonal), multiple "
                          "of I (identity)  [default: 1/sqrt(H) for normal and uniform, as "
                          "PyTorch's bound; 1 for the others]"),
        click.option("--forget-bias", type=FiniteFloat(min=-100, max=100), default=0.0,
                     show_default=True,
                     help="Initial LSTM forget-gate bias (1 is Gers et al.'s; 0, PyTorch's, "
                          "learns long gaps sooner: docs/gradients.md)."),
    ]):
        command = option(command)
    return command


def encoding_option(command):
    return click.option(
        "--encoding-errors", type=click.Choice(ENCODING_ERRORS), default="strict",
        show_default=True,
        help="On bytes that are not UTF-8: stop with an error naming the line (strict), "
             "or read them as U+FFFD and go on (replace).")(command)


def weight_options(command):
    """``--weights``, ``--tune``: the weights of a mixture, given or tuned (``mix``, and
    through ``mixture_options`` the commands that mix on the command line)."""
    for option in reversed([
        click.option("--weights", callback=_parse_weights, metavar="W1,W2,...",
                     help="The mixture's weights, one per model in order (MODEL first), "
                          "summing to 1  [default: equal; with --tune, where EM starts]"),
        click.option("--tune", type=click.Path(allow_dash=True), metavar="HELDOUT",
                     help="Tune the weights by EM on held-out text (not the text you "
                          "score); each iteration's perplexity goes to stderr."),
    ]):
        command = option(command)
    return command


def mixture_options(command):
    """``--mix``, ``--weights``, ``--tune``: a mixture of MODEL and other models, given on
    the command line (``perplexity``, ``generate``, ``complete``; ``mix`` saves one)."""
    command = weight_options(command)
    return click.option("--mix", "mix", multiple=True, metavar="MODEL",
                        help="Mix MODEL with this model too (repeat for more): P(w|h) = "
                             "sum_i w_i P_i(w|h), each model keeping its own history.")(command)


def _parse_weights(ctx, param, value) -> Optional[List[float]]:
    if value is None:
        return None
    try:
        return [float(part) for part in _list_items(value)]
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a list of numbers (W1,W2,...)") from None


def _list_items(value: str) -> List[str]:
    """The items of a comma- (or space-) separated list; an empty item is an error, not
    an item silently dropped (``0.5,,0.5``)."""
    parts = value.split(",")
    if any(not part.strip() for part in parts):
        raise click.BadParameter(f"{value!r} has an empty item")
    return [item for part in parts for item in part.split()]


def _open_lm(model: str, mix=(), weights=None, tune=None, encoding_errors="strict",
             carry_state=False):
    """MODEL, or the mixture of MODEL and ``--mix`` models, tuned on ``--tune`` text;
    with ``carry_state``, its recurrent models read each text as one stream."""
    from rnnlm_cli.errors import OptionError
    from rnnlm_cli.models import open_mixture, open_model
    if not mix and weights is None and tune is None:
        return _carried(open_model(model), model) if carry_state else open_model(model)
    paths = [model, *mix]
    if weights is not None:
        from rnnlm_cli.mixture import check_weights
        try:
            check_weights(weights, len(paths))
        except OptionError as exc:
            raise click.BadParameter(str(exc), param_hint="'--weights'") from None
    lm = open_mixture(paths, weights)
    if carry_state:
        lm = _carried(lm, model)
    return _tuned(lm, tune, encoding_errors) if tune else lm


def _carried(lm, path: str):
    """``lm`` with its recurrent models' state carried from line to line (``--carry-state``);
    a usage error if it has none."""
    from rnnlm_cli.models import carrying_state
    carried = carrying_state(lm)
    if not carried.carries_state:
        what = "the models mixed are" if lm.kind == "mixture" else f"{_name(path)} is"
        raise click.UsageError(f"--carry-state needs a recurrent model; {what} n-gram, "
                               "reading each line alone")
    return carried


def _tuned(lm, heldout: str, encoding_errors: str):
    """The mixture ``lm`` with weights tuned on ``heldout``, each EM step on stderr."""
    from rnnlm_cli.mixture import tune_on_text

    def report(iteration, weights, ppl):
        click.echo(f"EM iteration {iteration}: held-out perplexity {ppl:.4f}, weights "
                   f"{','.join(f'{w:.4f}' for w in weights)}", err=True)
    return tune_on_text(lm, list(read_corpus_lines([heldout], encoding_errors)), report)


def _parse_prune(ctx, param, values) -> List[int]:
    thresholds = []
    for value in values:
        for part in _list_items(value):
            try:
                thresholds.append(int(part))
            except ValueError:
                raise click.BadParameter(f"{part!r} is not a whole number") from None
    return thresholds


# -- reading text ---------------------------------------------------------------------------

def stdin_at_most_once(*paths: Optional[str]) -> None:
    """Standard input can be read once: ``-`` twice is a usage error, not an empty file."""
    if sum(path == "-" for path in paths) > 1:
        raise click.UsageError("standard input (-) is given more than once; it can be read "
                               "only once")


def read_corpus_lines(paths: Iterable[str], encoding_errors: str) -> Iterator[str]:
    """The lines of each file in turn (``-`` is stdin); an empty file is an error."""
    from rnnlm_cli.tokenizer import read_lines
    paths = list(paths)
    stdin_at_most_once(*paths)
    for path in paths:
        lines = read_lines(path, encoding_errors)
        if not lines:
            raise CorpusError(f"{_name(path)}: file is empty")
        yield from lines


def read_corpus_blocks(paths: Iterable[str], encoding_errors: str,
                       block_bytes: Optional[int] = None):
    """The text of each file in turn in blocks of whole lines (``tokenizer.read_blocks``,
    of about ``block_bytes``), the lines of ``read_corpus_lines``; an empty file is an
    error."""
    from rnnlm_cli.tokenizer import read_blocks
    paths = list(paths)
    stdin_at_most_once(*paths)
    for path in paths:
        empty = True
        for block in read_blocks(path, encoding_errors, block_bytes):
            empty = False
            yield block
        if empty:
            raise CorpusError(f"{_name(path)}: file is empty")


def _total_size(paths: Iterable[str]) -> Optional[int]:
    """The bytes of the files, if all are regular files (not stdin, not a pipe)."""
    sizes = _file_sizes(paths)
    return None if sizes is None else sum(sizes)


def _file_sizes(paths: Iterable[str]) -> Optional[List[int]]:
    """The size of each file, if all are regular files (not stdin, not a pipe)."""
    paths = list(paths)
    try:
        sizes = [os.stat(path).st_size for path in paths if path != "-"
                 and os.path.isfile(path)]
    except OSError:
        return None
    return sizes if len(sizes) == len(paths) else None


def _name(path: str) -> str:
    return "<stdin>" if path == "-" else path


# -- the words of a training command -------------------------------------------------------

# The parameters of the tokenizer options -> the fields of TokenizerConfig.
TOKENIZER_FIELDS = {"tokenizer_kind": "kind", "level": "level", "lowercase": "lowercase"}


def _training_words(ctx, vocab_from, tokenizer_kind, level, lowercase):
    """``(TokenizerConfig, Vocabulary or None)``: how a training command reads its corpus,
    and the words it must keep. Without ``--vocab-from``, the tokenizer options and None
    (the words come from the corpus by ``--min-count`` and ``--max-vocab``). With
    ``--vocab-from MODEL``, MODEL's words and MODEL's tokenizer settings, since its words
    are what that tokenizer cut: a tokenizer option given here must agree with them, and
    ``--min-count`` or ``--max-vocab`` may not be given (usage errors)."""
    from rnnlm_cli.tokenizer import TokenizerConfig
    asked = TokenizerConfig(tokenizer_kind, level, lowercase)
    if vocab_from is None:
        return asked, None
    counted = _given(ctx, ("min_count", "max_vocab"))
    if counted:
        raise click.UsageError(f"--vocab-from takes the words of {vocab_from} as they are: "
                               f"give it without {' and '.join(counted.values())}")
    from rnnlm_cli.models import open_vocabulary
    vocab, tokenizer = open_vocabulary(vocab_from)
    fields = {option: TOKENIZER_FIELDS[name] for name, option in
              _given(ctx, TOKENIZER_FIELDS).items()}
    differ = [option if field == "lowercase" else f"{option} {getattr(asked, field)}"
              for option, field in fields.items()
              if getattr(asked, field) != getattr(tokenizer, field)]
    if differ:
        raise click.UsageError(f"{vocab_from} reads text with {_tokenizer_flags(tokenizer)}, "
                               f"and --vocab-from reads the corpus the same way: "
                               f"{', '.join(differ)} disagrees")
    return tokenizer, vocab


def _given(ctx, names) -> Dict[str, str]:
    """``{parameter: its flag}`` for each of the parameters ``names`` that the command
    line (or the environment) set, in the order of ``names``."""
    from click.core import ParameterSource
    given = (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)
    flags = {param.name: param.opts[0] for param in ctx.command.params}
    return {name: flags[name] for name in names if ctx.get_parameter_source(name) in given}


def _tokenizer_flags(config) -> str:
    return (f"--tokenizer {config.kind} --level {config.level}"
            f"{' --lowercase' if config.lowercase else ' (no --lowercase)'}")


# -- train-ngram ---------------------------------------------------------------------------

@cli.command("train-ngram")
@click.argument("corpus", nargs=-1, required=True)
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="The model file to write (.npz).")
@click.option("--order", type=click.IntRange(1, 20), default=3, show_default=True,
              help="Longest n-gram.")
@click.option("--smoothing", type=LibraryChoice("rnnlm_cli.ngram.smoothing", "METHODS"),
              default="kneser-ney", show_default=True,
              help="kneser-ney: interpolated modified Kneser-Ney (as KenLM's lmplz).")
@click.option("--add-k", "add_k", type=FiniteFloat(min=0, max=1e6, min_open=True),
              default=1.0, show_default=True, help="The k of --smoothing add-k.")
@click.option("--prune", multiple=True, callback=_parse_prune, metavar="C2,C3,...",
              help="Drop n-grams seen at most C times, one threshold per order from 2 "
                   "(the last repeats), as lmplz --prune: --prune 0,1,1 (kneser-ney only).")
@click.option("--arpa", type=click.Path(dir_okay=False), default=None,
              help="Also write the model in ARPA format (read by KenLM and SRILM); "
                   "gzipped if FILE ends in .gz.")
@click.option("--memory", type=MemorySize(), default=None, metavar="SIZE",
              help="Memory for counting and estimating, besides the vocabulary: 500M, 4G, "
                   "50% (of the machine's); past it, sorted tables go to --temp-dir. The "
                   "model is the same whatever the size.  [default: half the free memory]")
@click.option("--temp-dir", type=click.Path(), default=None,
              callback=_check_temp_dir, metavar="DIR",
              help="Where temporary tables go (removed at the end, whatever happens). "
                   "[default: the system's, $TMPDIR or /tmp]")
@click.option("--scheduler", default=None, metavar="ADDRESS",
              help="Count on the Dask cluster whose scheduler is at ADDRESS "
                   "(tcp://HOST:8786); its workers read the CORPUS files at the same paths. "
                   "Needs pip install 'rnnlm[dask]'. The model is the same.")
@tokenizer_options
@encoding_option
@click.pass_context
def train_ngram(ctx, corpus, output, order, smoothing, add_k, prune, arpa, memory, temp_dir,
                scheduler, tokenizer_kind, level, lowercase, min_count, max_vocab, vocab_from,
                encoding_errors):
    """Train an n-gram model on CORPUS files (- for stdin), one sentence per line.

    \b
    Example:
        rnnlm train-ngram corpora/en/sentences.txt --order 3 -o en.npz
        rnnlm train-ngram train.txt --tokenizer whitespace --order 5 -o m.npz --arpa m.arpa
        rnnlm train-ngram train.txt --vocab-from lstm.npz -o kn.npz
        rnnlm train-ngram big.txt --order 5 --memory 2G --temp-dir /scratch -o big.npz
        rnnlm train-ngram /shared/big.txt --order 5 --scheduler tcp://head:8786 -o big.npz
    """
    from rnnlm_cli.allocator import keep_freed_memory, one_arena
    from rnnlm_cli.models import check_not_arpa_output
    from rnnlm_cli.ngram.scratch import Scratch
    from rnnlm_cli.ngram.training import (NgramConfig, default_memory, train_ngram_bounded,
                                          train_ngram_cluster)
    from rnnlm_cli.outputs import check_outputs
    from rnnlm_cli.tokenizer import Tokenizer

    tokenizer_config, words = _training_words(ctx, vocab_from, tokenizer_kind, level,
                                              lowercase)
    config = NgramConfig(order, smoothing, add_k, prune, min_count, max_vocab, vocab_from)
    config.validate()
    check_not_arpa_output(output)
    check_outputs({"-o": output, "--arpa": arpa}, inputs=[*corpus, vocab_from])
    stdin_at_most_once(*corpus)
    if scheduler is not None and "-" in corpus:
        raise click.BadParameter("the Dask workers read the corpus from its files: standard "
                                 "input (-) cannot be shared with them", param_hint="CORPUS")
    tokenizer = Tokenizer(tokenizer_config)
    _warn_memory_beyond_the_machine(memory)
    name, memory = ", ".join(map(_name, corpus)), memory or default_memory()
    keep_freed_memory()   # the counts' and sorts' temporaries reused, not faulted in again
    one_arena()           # ... by every thread: the sorts' threads keep no memory apart
    with Scratch(temp_dir) as scratch:   # removed on success, error, Ctrl-C and SIGTERM
        if scheduler is None:
            model = train_ngram_bounded(_sentence_blocks(corpus, encoding_errors, tokenizer),
                                        config, name, tokenizer.config.to_dict(), memory,
                                        scratch, _total_size(corpus), vocab=words,
                                        arpa=arpa is not None,
                                        files=_corpus_files(corpus, encoding_errors,
                                                            tokenizer))
        else:
            model = train_ngram_cluster(scheduler, corpus, [_name(p) for p in corpus], config,
                                        name, tokenizer.config.to_dict(), encoding_errors,
                                        memory, scratch, vocab=words, arpa=arpa is not None)
        _warn_training(model.metadata)
        _write_ngram_model(model, output, arpa)
    meta = model.metadata
    click.echo(f"{output}: order-{order} {smoothing} model, {len(model.vocab)} words, "
               f"{sum(meta['ngrams'])} n-grams, trained on {meta['corpus']['tokens']} tokens "
               f"in {meta['corpus']['sentences']} sentences", err=True)


def _warn_memory_beyond_the_machine(memory: Optional[int]) -> None:
    """``--memory`` above the machine's memory is taken at its word (the corpus is kept
    in memory as long as the budget allows), so a corpus too large for the machine would
    meet the out-of-memory killer: a warning says so."""
    from rnnlm_cli.options import physical_memory
    machine = physical_memory()
    if memory is not None and memory > machine:
        click.echo(f"Warning: --memory {memory / 2**30:,.0f}G is more than this machine's "
                   f"{machine / 2**30:.0f}G: a corpus that fits it but not the machine will "
                   "be killed for want of memory", err=True)


def _sentence_blocks(corpus, encoding_errors: str, tokenizer):
    """What ``train_ngram_bounded`` reads: ``read(block_bytes)`` gives the tokenized
    sentences of the CORPUS files a block at a time, with the block's size."""
    from rnnlm_cli.tokenizer import split_lines

    def read(block_bytes):
        for block in read_corpus_blocks(corpus, encoding_errors, block_bytes):
            yield tokenizer.tokenize_lines(split_lines(block.text())), len(block.data)
    return read


def _corpus_files(corpus, encoding_errors: str, tokenizer):
    """The CORPUS files as processes can share them (``firstpass.CorpusFiles``), if they
    are all regular files with something in them (not stdin, a pipe or an empty file:
    those are read in one pass, which says what is wrong with them); else None."""
    from rnnlm_cli.ngram.firstpass import CorpusFiles
    sizes = _file_sizes(corpus)
    if sizes is None or 0 in sizes:
        return None
    return CorpusFiles(list(corpus), sizes, tokenizer.config.to_dict(), encoding_errors)


def _write_ngram_model(model, output: str, arpa: Optional[str]) -> None:
    """The ``.npz`` at ``output`` and the ARPA file at ``arpa`` (if given): both or neither."""
    from rnnlm_cli.modelfile import write_model
    from rnnlm_cli.ngram.arpa import write_arpa
    from rnnlm_cli.ngram.training import writing_progress
    from rnnlm_cli.outputs import atomic_outputs
    with atomic_outputs([output, arpa] if arpa else [output], "wb") as files, \
            writing_progress(model, arpa is not None):
        write_model(files[0], model.to_arrays(), model.metadata)
        if arpa:
            write_arpa(model, files[1], compress=arpa.lower().endswith(".gz"))


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


def _one_blas_thread() -> None:
    """Ask BLAS for one thread unless the user chose, before NumPy loads. Decoding always
    does: it multiplies one row (or a few) by a matrix at each step, where threads only
    add hand-offs (a batch-1 RNN step takes ~0.06 ms on one thread, several ms on two on
    a busy machine). Every command does on a busy machine: a 2-thread product waits until
    both threads get a core (train-rnn at H=100: 10x slower; perplexity: the pool's ~40 ms
    of start-up for nothing)."""
    if "numpy" not in sys.modules:
        for variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ.setdefault(variable, "1")


# -- train-rnn -------------------------------------------------------------------------------

@cli.command("train-rnn")
@click.argument("corpus", nargs=-1, required=True)
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="The model file to write (.npz): the best epoch by validation perplexity.")
@click.option("--valid", type=click.Path(), default=None,
              help="Validation text (default: the last 5% of the corpus lines, held out).")
@network_options
@click.option("--dropout", type=FiniteFloat(0, 1, max_open=True), default=0.0,
              show_default=True, help="On embeddings, between layers, before the decoder.")
@click.option("--tie-weights", is_flag=True, default=False,
              help="The decoder shares the embedding matrix (needs E = H).")
@click.option("--softmax", type=LibraryChoice("rnnlm_cli.rnn.config", "SOFTMAXES"),
              default="auto", show_default=True,
              help="The output layer: full (one softmax over every word) or class (P(class) "
                   "x P(word | class), Mikolov et al. 2011: far faster on large "
                   "vocabularies, as exact); auto is class above 20,000 words.")
@click.option("--classes", type=click.IntRange(min=2), default=None,
              help="Word classes of --softmax class, by frequency binning  "
                   "[default: about sqrt(words)]")
@click.option("--epochs", type=click.IntRange(min=1), default=13, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=20, show_default=True,
              help="B parallel streams of the corpus.")
@click.option("--bptt", type=click.IntRange(min=1), default=20, show_default=True,
              help="T steps of truncated back-propagation through time.")
@click.option("--optimizer", type=LibraryChoice("rnnlm_cli.rnn.optim", "OPTIMIZERS"),
              default="sgd", show_default=True)
@click.option("--lr", type=FiniteFloat(min=0, min_open=True), default=1.0,
              show_default=True, help="Learning rate.")
@click.option("--lr-decay", type=FiniteFloat(0, 1, min_open=True), default=0.5,
              show_default=True, help="Multiply the learning rate by F after an epoch that "
                                      "does not improve validation perplexity (1: never).")
@click.option("--lr-schedule", type=LibraryChoice("rnnlm_cli.rnn.training", "LR_SCHEDULES"),
              default="plateau", show_default=True,
              help="plateau: --lr-decay after an epoch without improvement; cosine or "
                   "linear: from --lr down to 0 over the --epochs, update by update (for a "
                   "fixed budget of epochs).")
@click.option("--patience", type=click.IntRange(min=0), default=3, show_default=True,
              help="Stop after N epochs in a row without improvement (0: never).")
@click.option("--clip-norm", type=FiniteFloat(min=0), default=5.0, show_default=True,
              help="Scale the whole gradient down to this norm when it is larger (0: off).")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Same seed, data and options: the same model, byte for byte.")
@click.option("--checkpoint-every", type=FiniteFloat(min=0), default=0.0,
              metavar="MINUTES", help="Save a checkpoint to MODEL.checkpoint.npz this often, "
                                      "and when training ends (0: only on Ctrl-C or "
                                      "SIGTERM, which always save one).")
@click.option("--resume", type=click.Path(), default=None, metavar="CHECKPOINT",
              help="Continue a run from its checkpoint (same corpus and options; --epochs "
                   "may grow).")
@click.option("--log", type=click.Path(dir_okay=False), default=None, metavar="FILE.jsonl",
              help="Write one JSON object per epoch (appended to when resuming).")
@tokenizer_options
@encoding_option
@click.pass_context
def train_rnn(ctx, corpus, output, valid, cell, activation, layers, hidden, embed, dropout,
              tie_weights, softmax, classes, init, init_scale, forget_bias, epochs,
              batch_size, bptt, optimizer,
              lr, lr_decay, lr_schedule, patience, clip_norm, seed, checkpoint_every, resume,
              log,
              tokenizer_kind, level, lowercase, min_count, max_vocab, vocab_from,
              encoding_errors):
    """Train a recurrent (LSTM, GRU or Elman) model on CORPUS files, one sentence per line.

    The defaults follow the small LSTM of Zaremba et al. (2014) on the Penn Treebank
    (SGD, learning rate 1, clipping at 5, 20 streams of 20 steps, 13 epochs), with one
    layer of 200 units. A progress bar per epoch (on a terminal) and a line per epoch go
    to stderr, and at the end (on a terminal) a chart of the perplexities per epoch.

    \b
    Example:
        rnnlm train-rnn corpora/en/sentences.txt --hidden 64 --epochs 5 -o en-rnn.npz
        rnnlm train-rnn train.txt --valid valid.txt --tokenizer whitespace -o ptb.npz
        rnnlm train-rnn text.txt --level char --cell gru --optimizer adam --lr 0.002 -o c.npz
    """
    from rnnlm_cli.modelfile import write_model
    from rnnlm_cli.outputs import atomic_output, check_outputs
    from rnnlm_cli.rnn.checkpoint import default_path
    from rnnlm_cli.rnn.config import RnnConfig
    from rnnlm_cli.rnn.session import TrainingInterrupted, option_flags, run_training
    from rnnlm_cli.rnn.training import TrainConfig

    model_config = RnnConfig(cell, activation, layers, hidden, embed, dropout, tie_weights,
                             init, init_scale, forget_bias, softmax, classes)
    config = TrainConfig(epochs=epochs, batch_size=batch_size, bptt=bptt, optimizer=optimizer,
                         lr=lr, lr_decay=lr_decay, lr_schedule=lr_schedule, patience=patience,
                         clip_norm=clip_norm, seed=seed, checkpoint_every=checkpoint_every,
                         log=log)
    _usage_checked(model_config, config)
    if lr_schedule != "plateau" and _given(ctx, ["lr_decay"]):
        raise click.UsageError(f"--lr-decay works with --lr-schedule plateau only (the "
                               f"{lr_schedule} schedule sets every update's rate itself)")
    checkpoint = default_path(output)
    check_outputs({"-o": output, "the checkpoint": checkpoint, "--log": log},
                  inputs=[*corpus, valid, vocab_from])
    if resume:   # the run's own checkpoint may be resumed (and is then replaced); no other
        check_outputs({"-o": output, "--log": log}, inputs=[resume])
    stdin_at_most_once(*corpus, valid)
    tokenizer, words = _training_words(ctx, vocab_from, tokenizer_kind, level, lowercase)
    vocabulary = {"min_count": min_count, "max_vocab": max_vocab, "vocab_from": vocab_from}
    data = _rnn_data(corpus, valid, tokenizer, vocabulary, words, encoding_errors, config)
    options = option_flags(model_config, config, tokenizer.to_dict(), vocabulary)
    try:
        with _EpochReport(log, append=bool(resume)) as report:
            run = run_training(data, model_config, config, options, checkpoint, resume,
                               report.hooks())
    except TrainingInterrupted as stop:
        _say_interrupted(ctx, stop)
    model = run.finished_model(data, tokenizer.to_dict())
    _warn_rnn_training(run.state, data)
    with atomic_output(output, "wb") as out:
        write_model(out, model.to_arrays(), model.metadata)
    settled = model.network.config
    output_layer = (f"{settled.classes} word classes" if settled.softmax == "class"
                    else "full softmax")
    click.echo(f"{output}: {layers}-layer {cell} model, H={hidden}, {len(data.vocab)} words "
               f"({output_layer}), "
               f"best validation stream perplexity {run.state.best_valid_ppl:.2f} after "
               f"{len(run.state.history)} epoch(s)", err=True)
    if progress.on_terminal():   # the numbers are in the lines above, and in --log
        click.echo(_epoch_chart(run.state.history), err=True)


def _usage_checked(*configs) -> None:
    """Options that cannot go together (``--tie-weights`` with ``--embed 8 --hidden 16``,
    ``--classes`` with ``--softmax full``) are usage errors (exit 2), as a value out of
    range is; what only the data can tell (a vocabulary too small) is found later."""
    from rnnlm_cli.errors import OptionError
    try:
        for config in configs:
            config.validate()
    except OptionError as exc:
        raise click.UsageError(str(exc)) from None


def _epoch_chart(history) -> str:
    """The chart of training and validation perplexity per epoch (``charts.py``)."""
    from rnnlm_cli.charts import perplexity_chart
    best = min(history, key=lambda record: record.valid_ppl).epoch
    return perplexity_chart([r.epoch for r in history], [r.train_ppl for r in history],
                            [r.valid_ppl for r in history], best)


def _rnn_data(corpus, valid, tokenizer_config, vocabulary: dict, words, encoding_errors,
              config):
    """The training data (rnn/data.py), and what the user should hear of it. The words
    are chosen by ``vocabulary`` (``min_count``, ``max_vocab``, ``vocab_from``), ``words``
    being the vocabulary of ``vocab_from``."""
    from rnnlm_cli.rnn.batches import fit_batch_size
    from rnnlm_cli.rnn.data import read_training_data

    lines = list(read_corpus_lines(corpus, encoding_errors))
    valid_lines = list(read_corpus_lines([valid], encoding_errors)) if valid else None
    data = read_training_data(lines, valid_lines, tokenizer_config,
                              ", ".join(map(_name, corpus)), _name(valid) if valid else None,
                              **vocabulary, vocab=words)
    if data.held_out:
        click.echo(f"Holding out the last {data.held_out} of {len(lines)} lines for "
                   "validation (--valid FILE to choose)", err=True)
    batch = fit_batch_size(data.train.size, config.batch_size, config.bptt)
    if batch < config.batch_size:
        click.echo(f"Note: {data.train.size} training tokens do not fill {config.batch_size} "
                   f"streams of {config.bptt + 1}; training with {batch} stream(s)", err=True)
    return data


class _EpochReport:
    """A tqdm bar per epoch (on a terminal), a line per epoch on stderr, and ``--log``."""

    def __init__(self, log: Optional[str], append: bool):
        self.log_path, self.append = log, append
        self.log, self.bar = None, None

    def __enter__(self):
        if self.log_path:
            try:
                self.log = open(self.log_path, "a" if self.append else "w", encoding="utf-8")
            except OSError as exc:
                raise ModelFileError(f"{self.log_path}: cannot write: {exc.strerror}") from None
        return self

    def __exit__(self, *exc):
        self._close_bar()
        if self.log:
            self.log.close()
        return False

    def hooks(self):
        from rnnlm_cli.rnn.training import Hooks
        return Hooks(on_chunk=self.chunk, on_epoch=self.epoch, on_epoch_start=self.start,
                     on_warning=self.warning)

    def warning(self, message: str) -> None:
        if self.bar is not None:
            self.bar.clear()   # the line goes above the bar, which goes on
        click.echo(f"Warning: {message}", err=True)
        if self.bar is not None:
            self.bar.refresh()

    def start(self, epoch: int, done: int, chunks: int) -> None:
        self._close_bar()
        self.bar = progress.bar(total=chunks, initial=done, desc=f"epoch {epoch}", leave=False,
                                unit="chunk")

    def chunk(self, progress) -> None:
        self.bar.update(1)
        self.bar.set_postfix_str(f"loss {progress.loss:.3f}, ppl {progress.ppl:.1f}, "
                                 f"{progress.tokens_per_s:,.0f} tokens/s", refresh=False)

    def epoch(self, record) -> None:
        self._close_bar()
        click.echo(f"epoch {record.epoch}: train ppl {record.train_ppl:.2f}, valid stream ppl "
                   f"{record.valid_ppl:.2f}{' (best)' if record.improved else ''}, grad norm "
                   f"{record.grad_norm:.3g}, clipped {record.clipped:.0%}, lr {record.lr:g}, "
                   f"{record.tokens_per_s:,.0f} tokens/s, {record.seconds:.1f} s", err=True)
        if self.log:
            self._write_log(_json(record.to_dict()) + "\n")

    def _write_log(self, line: str) -> None:
        """A log that cannot be written (disk full) stops logging, not training."""
        try:
            self.log.write(line)
            self.log.flush()
        except OSError as exc:
            self.warning(f"{self.log_path}: cannot write: {exc.strerror}; training goes on "
                         "without the log")
            try:
                self.log.close()
            except OSError:
                pass   # the unwritten line is what the warning is about
            self.log = None

    def _close_bar(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _say_interrupted(ctx, stop) -> None:
    """After Ctrl-C: where the checkpoint is, and the command that resumes from it."""
    import shlex
    from click.core import ParameterSource
    words = ["rnnlm", ctx.info_name]
    for param in ctx.command.params:
        source = ctx.get_parameter_source(param.name)
        if param.name == "resume" or source not in (ParameterSource.COMMANDLINE,
                                                    ParameterSource.ENVIRONMENT):
            continue
        value = ctx.params[param.name]
        if isinstance(param, click.Argument):
            words.extend(value)
        elif getattr(param, "is_flag", False):
            words.extend([param.opts[0]] if value else [])
        else:
            words.extend([param.opts[0], str(value)])
    words.extend(["--resume", stop.path])
    state = stop.state
    click.echo(f"Interrupted in epoch {state.epoch + 1} after {state.position} chunk(s): "
               f"checkpoint saved to {stop.path}\nTo resume: "
               f"{' '.join(map(shlex.quote, words))}", err=True)
    ctx.exit(stop.exit_code)


def _warn_rnn_training(state, data) -> None:
    skipped = data.train_corpus.skipped_markers
    if skipped:
        click.echo(f"Warning: dropped {skipped} literal <s> or </s> from the corpus "
                   "(they mark sentence boundaries)", err=True)
    if state.stopped == "non-finite":
        click.echo(f"Warning: {state.message}; writing the best model so far", err=True)
    elif state.stopped == "early stop":
        click.echo(f"Stopped early: validation perplexity did not improve in "
                   f"{state.bad_epochs} epochs in a row", err=True)


# -- perplexity ---------------------------------------------------------------------------------

@cli.command()
@click.argument("model", type=click.Path())
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
@click.option("--carry-state", is_flag=True,
              help="Recurrent models: read each file as one text, every line in the "
                   "context of the lines before it (the state after a line's </s> reads "
                   "the next line), as training reads its text and as PyTorch and "
                   "Mikolov's rnnlm evaluate (in a mixture, with --tune too). Without it "
                   "each line is read alone, from <s>, as an n-gram model reads it.")
@mixture_options
@encoding_option
def perplexity(model, text, per_sentence, per_token, as_json, carry_state, mix, weights,
               tune, encoding_errors):
    """Score TEXT files (stdin if none) with MODEL, one sentence per line.

    MODEL is an .npz written by rnnlm, or an ARPA file (.arpa, .arpa.gz) made by KenLM
    or SRILM. Each line is scored with <s> before it and </s> after; </s> counts as a
    token. Perplexity is reported including and excluding OOVs (KenLM's conventions).

    \b
    Example:
        rnnlm perplexity en.npz test.txt
        rnnlm perplexity en.npz --per-sentence --json < test.txt
        rnnlm perplexity lstm.npz --carry-state test.txt
        rnnlm perplexity kn.npz --mix lstm.npz --tune valid.txt test.txt
    """
    from rnnlm_cli.allocator import keep_freed_memory
    from rnnlm_cli.scoring import Totals, score_blocks

    keep_freed_memory()   # the lookups' temporaries are reused, not faulted in (allocator.py)
    stdin_at_most_once(*(text or ("-",)), tune)
    lm = _open_lm(model, mix, weights, tune, encoding_errors, carry_state)
    paths = text or ("-",)
    details = per_sentence or per_token
    blocks = _WatchedBlocks(read_corpus_blocks(paths, encoding_errors), model)
    totals, held, index = Totals(), [], 0
    for block in score_blocks(lm, blocks, keep_lines=details):
        totals += block.totals
        if details:   # (held back while every line so far is blank: that is an error)
            held.append(block.scored)
            if blocks.seen_words:
                for scored in held:
                    index = _print_details(lm, scored, index, per_sentence, per_token,
                                           as_json)
                held.clear()
    if not blocks.seen_words:
        raise CorpusError(f"{', '.join(map(_name, paths))}: only blank lines; nothing to score")
    summary = totals.summary()
    _print_summary(summary, as_json)
    if summary.zero_prob:
        click.echo(f"Warning: the model gives probability zero to {summary.zero_prob} "
                   "token(s): perplexity is infinite", err=True)


class _WatchedBlocks:
    """The blocks of the text to score, passed on as they are, looked at on the way:
    whether a line so far holds a word (``seen_words``), and, for an ARPA model, whether
    the text's start looks untokenized (a warning, once)."""

    def __init__(self, blocks, model: str):
        from rnnlm_cli.models import is_arpa_path
        self.blocks = blocks
        self.seen_words = False
        self.sample = "" if is_arpa_path(model) else None   # the text's first characters

    def __iter__(self):
        from rnnlm_cli.tokenizer import UNTOKENIZED_SAMPLE
        for block in self.blocks:
            if not self.seen_words:
                self.seen_words = not block.is_blank()
            if self.sample is not None:
                self.sample += block.text()
                if len(self.sample) >= UNTOKENIZED_SAMPLE:
                    self._warn_if_untokenized()
            yield block
        if self.sample is not None:
            self._warn_if_untokenized()

    def _warn_if_untokenized(self) -> None:
        """An ARPA file does not say how its text was tokenized: the README's advice."""
        from rnnlm_cli.tokenizer import untokenized_example
        glued = untokenized_example(self.sample)
        self.sample = None
        if glued:
            click.echo(f"Warning: the text looks untokenized (punctuation glued to words, as "
                       f"in '{glued}') but an ARPA model splits it at spaces only: tokenize "
                       "it as the model's training text was, or score with the .npz model",
                       err=True)


def _print_details(lm, scored, index: int, per_sentence, per_token, as_json) -> int:
    """Print the sentences of one block, numbered from ``index``; the next number."""
    from rnnlm_cli.scoring import sentence_summaries, token_rows
    sentences = sentence_summaries(scored)
    tokens = token_rows(lm, scored) if per_token else itertools.repeat(None)
    for line, summary, rows in zip(scored.lines, sentences, tokens):
        if as_json:
            record = {"sentence": index, "text": line, **summary.to_dict()}
            del record["sentences"]
            if rows is not None:
                record["token_scores"] = rows
            click.echo(_json(record))
        else:
            if per_token:
                click.echo("\t".join(f"{r['token']}={r['id']} {r['order']} "
                                     f"{r['log10prob']:.6g}" for r in rows) +
                           f"\tTotal: {summary.log10prob:.6g} OOV: {summary.oovs}")
            if per_sentence:
                click.echo(f"{summary.log10prob:.6g}\t{summary.tokens}\t{summary.oovs}\t"
                           f"{summary.perplexity:.6g}\t{line}")
        index += 1
    return index


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


# -- generate and complete ----------------------------------------------------------------------

@cli.command()
@click.argument("model", type=click.Path())
@click.option("-n", "--num", type=click.IntRange(min=1), default=1, show_default=True,
              help="Samples per prompt (drawn together as one batch).")
@click.option("--max-tokens", type=click.IntRange(min=1), default=50, show_default=True,
              help="Longest sample in tokens (</s> included); a sample stops at </s>.")
@click.option("--prompt", multiple=True,
              help="Text the samples continue, tokenized as the model's training text "
                   "(repeat for several prompts). Unknown words are read as <unk>.")
@click.option("--prompt-file", type=click.Path(allow_dash=True),
              help="Prompts, one per line (- for stdin), each answered as soon as it is "
                   "read; an empty line starts a sentence from scratch.")
@click.option("--temperature", type=FiniteFloat(min=0), default=1.0, show_default=True,
              help="Divide log-probabilities by T: below 1 sharper, above 1 flatter; "
                   "0 always takes the most probable token (greedy).")
@click.option("--top-k", type=click.IntRange(min=0), default=0, show_default=True,
              help="Sample from the K most probable tokens only (0: all).")
@click.option("--top-p", type=FiniteFloat(0, 1, min_open=True), default=1.0,
              show_default=True, help="Nucleus sampling: from the fewest most probable "
                                      "tokens holding probability >= P (after --top-k).")
@click.option("--seed", type=click.IntRange(min=0), default=None,
              help="Random seed: the same seed and options give the same text, always "
                   "(default: a fresh seed each run).")
@click.option("--no-unk", is_flag=True, help="Never emit <unk>.")
@click.option("--json", "as_json", is_flag=True,
              help="One JSON object per sample: prompt, tokens (</s> last if the sample "
                   "ended), text, logprob (natural log), log10prob, token_logprobs. The "
                   "log-probabilities are the model's own, not those of the distribution "
                   "reshaped by --temperature, --top-k, --top-p or --no-unk.")
@mixture_options
@encoding_option
def generate(model, num, max_tokens, prompt, prompt_file, temperature, top_k, top_p, seed,
             no_unk, as_json, mix, weights, tune, encoding_errors):
    """Sample sentences from MODEL, from scratch or continuing prompts.

    Prints one sample per line: the prompt and its continuation, detokenized (--prompt
    first, then the lines of --prompt-file; with neither, one sentence from scratch).

    \b
    Example:
        rnnlm generate en.npz --num 3 --seed 1
        rnnlm generate en.npz --prompt "The market" --top-p 0.9 --temperature 0.8
        rnnlm generate chars.npz --prompt-file prompts.txt --num 2 --json
    """
    _one_blas_thread()
    import numpy as np
    from rnnlm_cli.decoding import SamplingConfig, encode_prompt, sample
    from rnnlm_cli.modelfile import check_mapped_files

    stdin_at_most_once(prompt_file, tune)
    lm = _open_lm(model, mix, weights, tune, encoding_errors)
    tokenizer = lm.tokenizer
    config = SamplingConfig(max_tokens, temperature, top_k, top_p, no_unk)
    rng = np.random.default_rng(seed)
    prompts = _texts_and_lines(prompt, prompt_file, encoding_errors)
    for place, text in prompts if (prompt or prompt_file) else [("''", "")]:
        check_mapped_files()   # a model rewritten in place since it was loaded is an error
        encoded = encode_prompt(lm, tokenizer, text)
        if encoded.unknown:
            click.echo(encoded.warning(place), err=True)
        for drawn in sample(lm, encoded, num, config, rng):
            click.echo(_json(drawn.to_dict()) if as_json else drawn.text)


@cli.command("complete")
@click.argument("model", type=click.Path())
@click.argument("prefix", nargs=-1)
@click.option("--top", type=click.IntRange(min=0), default=5, show_default=True,
              help="Continuations per prefix; 0 (with --max-tokens 1): every possible next "
                   "token, sorted.")
@click.option("--max-tokens", type=click.IntRange(min=1), default=1, show_default=True,
              help="Continuation length in tokens; a continuation may end earlier at </s>.")
@click.option("--beam", type=click.IntRange(min=1), default=None,
              help="Beam width of the search (default: max(TOP, 5)); wider is slower and "
                   "closer to exact.")
@click.option("--json", "as_json", is_flag=True,
              help="One JSON object per prefix (one line per prefix, also for a "
                   "coprocess): prefix, and completions best first, each with text, tokens, "
                   "logprob (natural log), log10prob and token_logprobs.")
@mixture_options
@encoding_option
def complete_command(model, prefix, top, max_tokens, beam, as_json, mix, weights, tune,
                     encoding_errors):
    """Print the most probable continuations of each PREFIX (stdin lines if none).

    One line per continuation, best first: prefix<TAB>continuation<TAB>log10prob (a
    backslash, TAB or newline inside the texts is written \\\\, \\t or \\n). An
    empty prefix is the start of a sentence; a continuation that ends the sentence ends
    in </s>. Lines of stdin are answered one by one, each flushed before the next is
    read, so this works in a while-read loop or as a coprocess; the model loads once.

    \b
    Example:
        rnnlm complete en.npz "The market opens"
        rnnlm complete en.npz "The" --top 0 | head
        printf 'The train\\nA cat\\n' | rnnlm complete en.npz --max-tokens 3 --json
    """
    _one_blas_thread()
    from rnnlm_cli.decoding import complete, encode_prompt
    from rnnlm_cli.modelfile import check_mapped_files

    if top == 0 and max_tokens != 1:
        raise click.BadOptionUsage("top", "--top 0 (every next token) needs --max-tokens 1")
    stdin_at_most_once(None if prefix else "-", tune)
    lm = _open_lm(model, mix, weights, tune, encoding_errors)
    tokenizer = lm.tokenizer
    for place, text in _texts_and_lines(prefix, None if prefix else "-", encoding_errors):
        check_mapped_files()   # a model rewritten in place since it was loaded is an error
        encoded = encode_prompt(lm, tokenizer, text)
        if encoded.unknown:
            click.echo(encoded.warning(place), err=True)
        found = complete(lm, encoded, top, max_tokens, beam)
        if as_json:
            click.echo(_json({"prefix": text, "completions": [c.to_dict() for c in found]}))
        elif found:
            click.echo("\n".join(f"{_tsv_field(text)}\t{_tsv_field(c.text)}\t"
                                 f"{c.log10prob:.6f}" for c in found))


TSV_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _tsv_field(text: str) -> str:
    r"""A field of a TSV line: backslash, TAB, newline and CR escaped as ``\\``, ``\t``,
    ``\n``, ``\r`` (as PostgreSQL's text format), so a line stays three columns."""
    return text.translate(TSV_ESCAPES)


def _texts_and_lines(texts, path, encoding_errors) -> Iterator[tuple]:
    """``(place, text)`` for each of ``texts``, then for each line of ``path`` (``-``:
    stdin) as it arrives; ``place`` names the text in warnings. ``path`` opens at once."""
    from rnnlm_cli.tokenizer import read_lines_lazily
    lines = read_lines_lazily(path, encoding_errors) if path else ()
    numbered = ((f"{_name(path)}: line {n}", line) for n, line in enumerate(lines, start=1))
    return itertools.chain(((repr(text), text) for text in texts), numbered)


# -- mix -------------------------------------------------------------------------------------

@cli.command("mix")
@click.argument("models", nargs=-1, required=True, metavar="MODEL...")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="The mixture file to write (.npz): every model's arrays and the weights.")
@weight_options
@encoding_option
def mix_command(models, output, weights, tune, encoding_errors):
    """Mix MODELs (n-gram .npz, RNN .npz, ARPA files, mixtures) into one model file:
    P(w|h) = sum_i w_i P_i(w|h), with given weights or weights tuned on held-out text.

    The file is self-contained (it holds every model's arrays) and is used like any model
    file. Without a file, perplexity, generate and complete take --mix, --weights and
    --tune themselves. The models must read text alike (the same tokenizer); their
    vocabularies may differ (the README's section on rnnlm mix says how).

    \b
    Example:
        rnnlm mix kn5.npz lstm.npz --tune valid.txt -o mixed.npz
        rnnlm mix kn5.npz lstm.npz --weights 0.4,0.6 -o mixed.npz
        rnnlm perplexity mixed.npz test.txt
    """
    from rnnlm_cli.modelfile import write_model
    from rnnlm_cli.models import check_not_arpa_output
    from rnnlm_cli.outputs import atomic_output, check_outputs

    check_not_arpa_output(output, hint="")
    check_outputs({"-o": output}, inputs=[*models, tune])
    equal = [1 / len(models)] * len(models)   # (so that one model is a mixture of one too)
    lm = _open_lm(models[0], models[1:], weights if weights is not None else equal, tune,
                  encoding_errors)
    with atomic_output(output, "wb") as out:
        write_model(out, lm.to_arrays(), lm.metadata)
    click.echo(f"{output}: a mixture of {len(models)} model(s), {len(lm.vocab)} words, "
               f"weights {','.join(f'{w:.6g}' for w in lm.weights)}", err=True)


# -- gradients -------------------------------------------------------------------------------

NETWORK_PARAMS = ("cell", "activation", "layers", "hidden", "embed", "init", "init_scale",
                  "forget_bias", "seed")


@cli.command("gradients")
@click.argument("files", nargs=-1, required=True, metavar="[MODEL] TEXT")
@click.option("--max-distance", type=click.IntRange(min=1), default=50, show_default=True,
              help="Measure dJ_t/ds_k for t - k from 0 to this; chunks are this + 1 steps.")
@click.option("--chunks", type=click.IntRange(min=0), default=20, show_default=True,
              help="Use at most N chunks of TEXT (0: all of it).")
@click.option("--streams", type=click.IntRange(min=1), default=1, show_default=True,
              help="B parallel streams of TEXT, as train-rnn's --batch-size.")
@click.option("--json", "as_json", is_flag=True,
              help="One JSON object: distances, mean_norm, log10_mean_norm, counts, "
                   "jacobian_norm and what was measured.")
@click.option("--plot", type=click.Path(dir_okay=False), default=None, metavar="FILE.png",
              help="Also draw the curve to FILE.png (needs matplotlib, an optional extra).")
@network_options
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Seed of the untrained model's weights (as train-rnn's --seed: the same "
                   "seed gives train-rnn's starting point).")
@encoding_option
@click.pass_context
def gradients(ctx, files, max_distance, chunks, streams, as_json, plot, cell, activation,
              layers, hidden, embed, init, init_scale, forget_bias, seed, encoding_errors):
    """Vanishing and exploding gradients: how the loss at step t reaches the hidden state
    of step k, as a function of the distance t - k.

    Give a trained recurrent MODEL (.npz) and TEXT, or only TEXT and the network options
    (--cell, --activation, --layers, --hidden, --embed, --init, --init-scale,
    --forget-bias, --seed, as train-rnn) for an untrained model, whose vocabulary is then
    built from TEXT: exactly one of the two. TEXT is one file (- for stdin), one sentence
    per line, read as one stream of chunks like train-rnn's.

    For every step t of a chunk, the loss at step t alone is back-propagated to the top
    layer's hidden state s_k (h for the LSTM) of every earlier step k of the chunk; the
    mean norm of dJ_t/ds_k is printed for each distance, in a table with a log-scale chart.
    The mean spectral norm of the per-step Jacobian ds_t/ds_{t-1} (of (h, c) for the LSTM)
    follows: below 1 gradients vanish, above 1 they may explode.

    \b
    Example:
        rnnlm gradients en-rnn.npz corpora/en/sentences.txt --max-distance 20
        rnnlm gradients --cell rnn --activation tanh --init normal --hidden 200 text.txt
        rnnlm gradients --cell lstm --hidden 64 text.txt --json
    """
    from rnnlm_cli.rnn import gradients as grad
    from rnnlm_cli.rnn.config import RnnConfig
    from rnnlm_cli.tokenizer import Tokenizer, TokenizerConfig

    if len(files) > 2:
        raise click.UsageError(f"give [MODEL] TEXT: one or two files, not {len(files)}")
    model, text = (None,) + files if len(files) == 1 else files
    given = list(_given(ctx, NETWORK_PARAMS).values())
    if model is not None and given:
        raise click.UsageError(f"give a MODEL or the network options of an untrained model, "
                               f"not both (MODEL {model} with {', '.join(given)})")
    if model is None and not given:
        raise click.UsageError("give a MODEL file before TEXT, or network options (--cell, "
                               "--hidden, ...) for an untrained model")
    if plot:
        grad.check_plotting()
    lines = list(read_corpus_lines([text], encoding_errors))
    if model is not None:
        from rnnlm_cli.models import open_model
        lm = open_model(model)
        tokenizer = lm.tokenizer
        network, stream = grad.model_network(lm, model, list(tokenizer.tokenize_lines(lines)))
    else:
        config = RnnConfig(cell=cell, activation=activation, layers=layers, hidden=hidden,
                           embed=embed, init=init, init_scale=init_scale,
                           forget_bias=forget_bias)
        sentences = list(Tokenizer(TokenizerConfig()).tokenize_lines(lines))
        network, stream = grad.untrained_network(config, sentences, seed)
    report = grad.measure_gradients(network, stream, max_distance, streams,
                                    max_chunks=chunks or None)
    for note in report.notes:
        click.echo(f"Warning: {_name(text)}: {note}", err=True)
    click.echo(_json(report.to_dict()) if as_json else grad.format_report(report))
    if plot:
        grad.plot_report(report, plot)


# -- check -----------------------------------------------------------------------------------

@cli.command("check")
@click.argument("models", nargs=-1, required=True, type=click.Path(dir_okay=False),
                metavar="MODEL...")
def check_command(models):
    """Verify every array and invariant of each MODEL file, CRCs included.

    MODEL is an .npz written by rnnlm (an n-gram or recurrent model, or a train-rnn
    checkpoint) or an ARPA file. Prints MODEL: ok (what it holds) for each good file;
    stops at the first bad one with an Error line and exit status 1. Loading a model
    checks only what keeps it from reading out of bounds; this reads the whole file.

    \b
    Example:
        rnnlm check en.npz
        rnnlm check models/*.npz && echo all good
    """
    from rnnlm_cli.models import check_model
    for model in models:
        click.echo(f"{model}: ok ({check_model(model)})")


def main() -> None:
    """The ``rnnlm`` console script and ``python -m rnnlm_cli``.

    At exit, the objects alive are moved out of the garbage collector's sight
    (``gc.freeze``): Python's finalization otherwise runs full collections over
    everything NumPy and Click created, ~15 ms of a 0.35 s ``perplexity`` run, to free
    memory the operating system takes back anyway. (Objects are still released by
    reference counting; only cycles among them are left to the exit.)
    """
    import atexit
    import gc
    from rnnlm_cli.process import prepare
    atexit.register(gc.freeze)
    prepare()   # closed standard streams, SIGTERM, one-line warnings (process.py)
    sys.exit(_run_command())


def _run_command() -> int:
    """Click's standalone mode, except that an interrupt before a command runs (while
    Click parses, say) is the same ``Error:`` line and status as one during it, not
    Click's "Aborted!" and status 1."""
    try:
        code = cli.main(prog_name="rnnlm", standalone_mode=False)
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except (click.Abort, KeyboardInterrupt) as exc:
        stop = exc.__cause__ or exc   # Click wraps a KeyboardInterrupt in Abort
        click.echo("Error: interrupted; no output file was written", err=True)
        return getattr(stop, "exit_code", 130)
    return code if isinstance(code, int) else 0
