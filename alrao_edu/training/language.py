"""Character-level language models: a text corpus, an LSTM network and runs with truncated BPTT.

A :class:`TextCorpus` turns a text into character indices, split into a training and a test part.
:class:`CharLanguageModel` reads characters through an embedding and an LSTM and predicts the next
character with a linear layer over the vocabulary, so ``alraofy`` replaces that layer by Alrao's
heads, which then run at every time step. :class:`LanguageRun` trains one method with truncated
backpropagation through time, one segment of ``bptt`` characters per step, and records its losses
in a :class:`~alrao_edu.training.records.RunRecord`, so the figure builders draw it like any other
run. :class:`LanguageComparison` trains several such runs in lock-step.

The metric is bits per character (bpc): the mean negative log-likelihood of the next character in
nats, divided by ln 2.

Shapes used in this file:
    B: streams, the batch size (each stream is one contiguous part of the text)
    T: time steps of one segment, at most ``bptt``
    V: vocabulary size (distinct characters of the text)
    E: embedding size
    D: LSTM hidden size
"""

from __future__ import annotations

import copy
import math
import os
import re
from pathlib import Path
from typing import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..core import AlraoModel
from .devices import resolve_device
from .runs import Comparison, MethodSpec, SteppedRun, build_method

__all__ = [
    "PYTHON_DOCS",
    "CharLanguageModel",
    "LanguageComparison",
    "LanguageRun",
    "TextCorpus",
    "batchify",
    "generate",
    "load_corpus",
    "python_docs_text",
]

PYTHON_DOCS = "python-docs"
TEST_FRACTION = 0.1  # the last tenth of the text is the test part
EVAL_STREAMS = 10  # streams for evaluation; fewer only when the test part is too short
DEFAULT_BPTT = 64  # characters per truncated-BPTT segment: a few words of context
# Maximum gradient norm of the pre-classifier, as in the authors' LSTM script (leonardblier/alrao,
# main_rnn.py, --clip 0.25). Every parameter's step is then at most its rate times 0.25, so a unit
# with a large rate cannot jump far in one step.
DEFAULT_CLIP = 0.25

# Lines that underline a heading in the reStructuredText of Python's documentation.
_HEADING_UNDERLINE = re.compile(r"^[*=\-^~]+$")


# ---------------------------------------------------------------------------------------------
# The text


def python_docs_text() -> str:
    """Return the English prose of the Python language reference that ships with this Python.

    The text comes from ``pydoc_data.topics``, the help pages that ``help()`` shows offline. Each
    paragraph becomes one line. Code examples, grammar rules and tables are left out (they are the
    indented blocks and the lines that start with ``+`` or ``|``), and so are headings and
    repeated paragraphs. In Python 3.11 this leaves about 200,000 characters of prose with about
    100 distinct characters. Other Python versions ship other texts, so their numbers differ.
    """
    from pydoc_data.topics import topics

    paragraphs: list[str] = []
    seen: set[str] = set()
    for key in sorted(topics):
        for block in re.split(r"\n[ \t]*\n", topics[key]):
            lines = block.split("\n")
            if not block.strip() or lines[0][:1].isspace() or lines[0].startswith(("+", "|")):
                continue
            if len(lines) > 1 and _HEADING_UNDERLINE.match(lines[1].strip()):
                continue
            paragraph = " ".join(block.split())
            if paragraph not in seen:
                seen.add(paragraph)
                paragraphs.append(paragraph)
    return "\n".join(paragraphs)


class TextCorpus:
    """A text as character indices: a vocabulary and a training and a test part.

    The vocabulary is every distinct character of the whole text, sorted, so the test part has no
    unknown character. The test part is the last ``test_fraction`` of the text, kept in one piece
    so that it reads as text.

    Args:
        text: the text, at least two characters in each part.
        name: a short name for records and tables.
        test_fraction: share of the characters kept for testing, in (0, 1).

    Attributes:
        name, text, vocabulary (``list[str]``), train and test (int64 ``[N]`` character indices).
    """

    def __init__(self, text: str, *, name: str = "text", test_fraction: float = TEST_FRACTION) -> None:
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        if isinstance(test_fraction, bool) or not isinstance(test_fraction, (int, float)) or not 0 < test_fraction < 1:
            raise ValueError(f"Invalid test_fraction: {test_fraction!r}; expected a number in (0, 1)")
        n_test = int(len(text) * test_fraction)
        if len(text) - n_test < 2 or n_test < 2:
            raise ValueError(
                f"The text {name!r} has {len(text)} characters, too few to split into a training and a "
                f"test part of at least 2 characters each with test_fraction={test_fraction}; "
                "pass a longer text"
            )
        self.name = name
        self.text = text
        self.vocabulary = sorted(set(text))
        self._index = {character: index for index, character in enumerate(self.vocabulary)}
        indices = self.encode(text)
        self.train = indices[: len(text) - n_test]
        self.test = indices[len(text) - n_test :]

    @classmethod
    def from_file(
        cls,
        path: str | os.PathLike,
        *,
        encoding: str = "utf-8",
        test_fraction: float = TEST_FRACTION,
    ) -> "TextCorpus":
        """Read a text file (named after the file) as a corpus.

        Raises:
            FileNotFoundError: the file does not exist.
            ValueError: the path is a folder, the file is empty or not text in ``encoding``, or it
                is too short to split.
        """
        path = Path(path).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"Text file not found: {path}; pass the path of an existing text file")
        if path.is_dir():
            raise ValueError(f"{path} is a folder; pass the path of a text file")
        try:
            text = path.read_text(encoding=encoding)
        except UnicodeDecodeError as error:
            raise ValueError(
                f"{path} is not a text file in the {encoding} encoding ({error}); pass encoding=... "
                "with the file's encoding"
            ) from None
        if not text.strip():
            raise ValueError(f"The text file {path} is empty; pass a file that contains text")
        return cls(text, name=path.name, test_fraction=test_fraction)

    @classmethod
    def python_docs(cls, *, max_chars: int | None = None, test_fraction: float = TEST_FRACTION) -> "TextCorpus":
        """Load the prose of Python's language reference (:func:`python_docs_text`), optionally cut short.

        ``max_chars`` keeps the first ``max_chars`` characters, for quick runs.
        """
        text = python_docs_text()
        if max_chars is not None:
            if isinstance(max_chars, bool) or not isinstance(max_chars, int) or max_chars < 1:
                raise ValueError(f"Invalid max_chars: {max_chars!r}; expected None or an integer >= 1")
            text = text[:max_chars]
        return cls(text, name=PYTHON_DOCS, test_fraction=test_fraction)

    @property
    def vocab_size(self) -> int:
        return len(self.vocabulary)

    def __len__(self) -> int:
        return len(self.text)

    def __repr__(self) -> str:
        return (
            f"TextCorpus({self.name!r}, {len(self.text):,} characters, vocabulary {self.vocab_size}, "
            f"{len(self.train):,} train / {len(self.test):,} test)"
        )

    def encode(self, text: str) -> Tensor:
        """Turn a string into int64 character indices ``[len(text)]``."""
        unknown = sorted(set(text) - self._index.keys())
        if unknown:
            raise ValueError(
                f"Characters not in the vocabulary of {self.name!r}: {''.join(unknown)!r}; "
                "use only characters that occur in the text"
            )
        return torch.tensor([self._index[character] for character in text], dtype=torch.int64)

    def decode(self, indices: Iterable[int] | Tensor) -> str:
        """Turn character indices back into a string."""
        if isinstance(indices, Tensor):
            indices = indices.tolist()
        return "".join(self.vocabulary[index] for index in indices)

    def unigram_entropy_bits(self, split: str = "test") -> float:
        """Entropy, in bits per character, of the character frequencies of one part of the text.

        It is the bits per character of the best model that ignores context, fitted to that very
        part, so a language model below it has learned something from the preceding characters.

        Args:
            split: ``"train"``, ``"test"`` or ``"all"``.
        """
        parts = {"train": self.train, "test": self.test, "all": torch.cat([self.train, self.test])}
        if split not in parts:
            raise ValueError(f"Invalid split: {split!r}; expected 'train', 'test' or 'all'")
        counts = torch.bincount(parts[split], minlength=self.vocab_size).double()
        probabilities = counts[counts > 0] / counts.sum()
        return float(-(probabilities * probabilities.log2()).sum())


def load_corpus(source: str | os.PathLike = PYTHON_DOCS, *, max_chars: int | None = None) -> TextCorpus:
    """Load ``"python-docs"`` (the default, offline) or the text file at a path.

    ``max_chars`` keeps only the first characters of the Python documentation; for a file, cut
    the file itself.
    """
    if str(source) == PYTHON_DOCS:
        return TextCorpus.python_docs(max_chars=max_chars)
    if max_chars is not None:
        raise ValueError("max_chars applies only to the Python documentation; pass a shorter file instead")
    return TextCorpus.from_file(source)


def batchify(data: Tensor, n_streams: int) -> Tensor:
    """Cut a sequence ``[N]`` into ``n_streams`` contiguous streams ``[B, N // B]``.

    Stream b continues the text where stream b-1 ends. The last ``N % B`` characters are dropped.
    """
    if isinstance(n_streams, bool) or not isinstance(n_streams, int) or n_streams < 1:
        raise ValueError(f"Invalid n_streams: {n_streams!r}; expected an integer >= 1")
    length = len(data) // n_streams
    if length < 2:
        raise ValueError(
            f"{len(data)} characters cannot fill {n_streams} streams of at least 2 characters; "
            "pass fewer streams or a longer text"
        )
    return data[: n_streams * length].view(n_streams, length)


# ---------------------------------------------------------------------------------------------
# The network


class CharLanguageModel(nn.Module):
    """Embedding, LSTM and a linear decoder over the vocabulary, with a state kept between calls.

    ``forward`` starts from the LSTM state that the previous call ended with, detached from the
    graph of that call. This is truncated backpropagation through time: the hidden state carries
    over from one segment to the next, but gradients stay within a segment. Call
    :meth:`reset_state` at the start of a text. A call with another number of streams than the
    kept state starts from zeros.

    ``decoder`` is the last ``nn.Linear`` and the last operation of ``forward``, so ``alraofy``
    replaces it by heads that run at every time step.

    Args:
        vocab_size: V, the number of distinct characters.
        embedding_dim: E, the size of each character's embedding.
        hidden_size: D, the LSTM's hidden units per layer.
        num_layers: stacked LSTM layers.
    """

    def __init__(self, vocab_size: int, *, embedding_dim: int = 32, hidden_size: int = 128, num_layers: int = 1) -> None:
        super().__init__()
        for name, value in (
            ("vocab_size", vocab_size),
            ("embedding_dim", embedding_dim),
            ("hidden_size", hidden_size),
            ("num_layers", num_layers),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"Invalid {name}: {value!r}; expected an integer >= 1")
        self.embedding = nn.Embedding(vocab_size, embedding_dim)
        self.lstm = nn.LSTM(embedding_dim, hidden_size, num_layers=num_layers, batch_first=True)
        self.decoder = nn.Linear(hidden_size, vocab_size)
        self.state: tuple[Tensor, Tensor] | None = None  # (h, c), each [num_layers, B, D]

    def reset_state(self) -> None:
        """Forget the LSTM state, so the next call starts from zeros."""
        self.state = None

    def forward(self, x: Tensor) -> Tensor:
        """Next-character scores ``[B, T, V]`` for character indices ``[B, T]``."""
        if x.dim() != 2:
            raise ValueError(f"Expected character indices of shape [B, T], got shape {tuple(x.shape)}")
        state = self.state
        if state is not None and state[0].shape[1] != x.shape[0]:
            state = None
        if state is not None:
            state = (state[0].detach(), state[1].detach())

        embedded = self.embedding(x)  # [B, T, E]
        output, self.state = self.lstm(embedded, state)  # [B, T, D]
        return self.decoder(output)  # [B, T, V]


def language_model_of(model: nn.Module) -> CharLanguageModel:
    """Return the :class:`CharLanguageModel` of a baseline network or of an Alrao model's pre-classifier."""
    inner = model.preclassifier if isinstance(model, AlraoModel) else model
    if not isinstance(inner, CharLanguageModel):
        raise TypeError(
            f"Expected a CharLanguageModel or an AlraoModel built from one, got {type(model).__name__}"
        )
    return inner


def _log_probabilities(model: nn.Module, x: Tensor) -> Tensor:
    """Next-character log-probabilities ``[B, T, V]``: Alrao's mixture or a log-softmax of the scores."""
    output = model(x)
    return output if isinstance(model, AlraoModel) else F.log_softmax(output, dim=-1)


@torch.no_grad()
def generate(
    model: nn.Module,
    corpus: TextCorpus,
    *,
    prompt: str = "The ",
    length: int = 200,
    temperature: float = 1.0,
    seed: int = 0,
) -> str:
    """Sample ``length`` characters after ``prompt``, one at a time, and return them (without the prompt).

    Works for a :class:`CharLanguageModel` and for an Alrao model built from one (it samples from
    the switch mixture). The model's kept LSTM state is restored afterwards, so sampling between two
    training steps leaves the training unchanged.

    Args:
        model: the network, e.g. ``run.model``.
        corpus: the corpus the model was trained on, for its vocabulary.
        prompt: characters to read first; each must occur in the corpus.
        length: characters to sample (>= 1).
        temperature: divides the log-probabilities before sampling (> 0); below 1 sharpens them.
        seed: seeds the sampling.
    """
    if isinstance(length, bool) or not isinstance(length, int) or length < 1:
        raise ValueError(f"Invalid length: {length!r}; expected an integer >= 1")
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not (
        math.isfinite(temperature) and temperature > 0
    ):
        raise ValueError(f"Invalid temperature: {temperature!r}; expected a finite number > 0")
    if not prompt:
        raise ValueError("The prompt is empty; pass at least one character, e.g. prompt='The '")
    language_model = language_model_of(model)
    device = next(model.parameters()).device
    prompt_indices = corpus.encode(prompt).to(device)
    generator = torch.Generator().manual_seed(seed)

    was_training, kept_state = model.training, language_model.state
    model.eval()
    language_model.reset_state()
    try:
        log_probs = _log_probabilities(model, prompt_indices.view(1, -1))[0, -1]  # [V]
        sampled = []
        for _ in range(length):
            probabilities = torch.softmax(log_probs.double().cpu() / temperature, dim=-1)
            index = int(torch.multinomial(probabilities, 1, generator=generator))
            sampled.append(index)
            log_probs = _log_probabilities(model, torch.tensor([[index]], device=device))[0, -1]
    finally:
        language_model.state = kept_state
        model.train(was_training)
    return corpus.decode(sampled)


# ---------------------------------------------------------------------------------------------
# Training


def _check_bptt(bptt) -> None:
    if isinstance(bptt, bool) or not isinstance(bptt, int) or bptt < 1:
        raise ValueError(f"Invalid bptt: {bptt!r}; expected an integer >= 1 (characters per segment)")


def _check_clip(clip) -> None:
    if clip is None:
        return
    if isinstance(clip, bool) or not isinstance(clip, (int, float)) or not (math.isfinite(clip) and clip > 0):
        raise ValueError(f"Invalid clip: {clip!r}; expected None (no clipping) or a finite number > 0")


class LanguageRun(SteppedRun):
    """One method training a character-level language model, one segment per :meth:`step`.

    The training part of the corpus is cut into ``batch_size`` streams (:func:`batchify`). Step i
    reads characters ``[i*bptt, (i+1)*bptt)`` of every stream and predicts each next character.
    The LSTM state carries over from one step to the next (detached, so gradients stay within a
    segment) and is reset at the start of each epoch. Before each optimizer step the gradient norm
    of the pre-classifier (every parameter except the output layer or Alrao's heads) is clipped to
    ``clip``. Alrao's heads are not clipped: each head trains on its own loss, and clipping them
    together would tie their steps to one another.

    At the end of each epoch the run reads the whole test part in ``bptt``-long segments on up to
    ten streams. It appends to :attr:`record` the ``test_loss`` (nats per character), the
    ``test_bpc`` (bits per character), the ``test_accuracy`` (share of next characters predicted
    right) and the ``epoch_train_loss`` (mean training loss of the epoch, nats per character).
    ``record.train_loss`` contains the loss of every step.

    Args:
        spec: the method (:class:`~alrao_edu.training.runs.MethodSpec`).
        network: a :class:`CharLanguageModel`; the run trains a deep copy, so several runs can
            start from the same weights.
        corpus: the :class:`TextCorpus`.
        epochs: passes over the training part (>= 1).
        batch_size: streams (>= 1). The training part must hold ``batch_size * (bptt + 1)``
            characters, so that every stream has one full segment and its targets.
        bptt: characters per segment, the length of truncated backpropagation through time.
        clip: maximum gradient norm of the pre-classifier, or ``None`` for no clipping.
        seed: seeds Alrao's rates and heads.
        device: ``"auto"`` or a device name.
    """

    def __init__(
        self,
        spec: MethodSpec,
        network: CharLanguageModel,
        corpus: TextCorpus,
        *,
        epochs: int = 1,
        batch_size: int = 32,
        bptt: int = DEFAULT_BPTT,
        clip: float | None = DEFAULT_CLIP,
        seed: int = 0,
        device: str | torch.device = "auto",
    ) -> None:
        if not isinstance(network, CharLanguageModel):
            raise TypeError(f"network must be a CharLanguageModel, got {type(network).__name__}")
        if not isinstance(corpus, TextCorpus):
            raise TypeError(f"corpus must be a TextCorpus, got {type(corpus).__name__}")
        for name, value in (("epochs", epochs), ("batch_size", batch_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"Invalid {name}: {value!r}; expected an integer >= 1")
        _check_bptt(bptt)
        _check_clip(clip)
        if network.decoder.out_features != corpus.vocab_size:
            raise ValueError(
                f"The network predicts {network.decoder.out_features} characters but the corpus "
                f"{corpus.name!r} has {corpus.vocab_size}; build it as CharLanguageModel(corpus.vocab_size)"
            )
        needed = batch_size * (bptt + 1)
        if len(corpus.train) < needed:
            raise ValueError(
                f"The training part of {corpus.name!r} has {len(corpus.train)} characters, fewer than "
                f"the {needed} that one batch needs (batch_size={batch_size} streams of bptt+1={bptt + 1}); "
                "pass a longer text, a smaller batch_size or a smaller bptt"
            )
        self.spec = spec
        self.corpus = corpus
        self.epochs = epochs
        self.batch_size = batch_size
        self.bptt = bptt
        self.clip = None if clip is None else float(clip)
        self.seed = seed
        self.device = resolve_device(device)
        self.task = "language"

        network = copy.deepcopy(network)
        network.reset_state()
        self.model, self.optimizer = build_method(spec, network, seed=seed, device=self.device)
        if isinstance(self.model, AlraoModel):
            clipped = self.model.preclassifier.parameters()
        else:
            # The same layers as Alrao's pre-classifier, so that the methods differ only in their rates.
            decoder = set(map(id, self.model.decoder.parameters()))
            clipped = (p for p in self.model.parameters() if id(p) not in decoder)
        self._clipped = list(clipped)
        self.language_model = language_model_of(self.model)

        self._train_streams = batchify(corpus.train, batch_size).to(self.device)  # [B, L]
        self.steps_per_epoch = math.ceil((self._train_streams.shape[1] - 1) / bptt)
        self.total_steps = self.steps_per_epoch * epochs
        self._position = 0  # where the next segment starts in each stream
        # Each test stream contains at least one segment and its targets, or the whole test part.
        test_streams = max(1, min(EVAL_STREAMS, len(corpus.test) // (bptt + 1)))
        self._test_streams = batchify(corpus.test, test_streams).to(self.device)

        self._start_record(corpus.name)

    # --------------------------------------------------------------- training

    def _loss(self, x: Tensor, y: Tensor) -> Tensor:
        if isinstance(self.model, AlraoModel):
            return self.model.training_loss(x, y)
        scores = self.model(x)  # [B, T, V]
        return F.cross_entropy(scores.reshape(-1, scores.shape[-1]), y.reshape(-1))

    def step(self) -> bool:
        """Train on one segment of every stream; evaluate at the end of each epoch.

        Returns ``True`` while the run has steps left, ``False`` once it has finished or
        diverged. A loss that is not finite marks the run diverged at this step, before any
        weight changes.
        """
        if self.finished:
            return False
        self.model.train()
        if self._position == 0:
            self.language_model.reset_state()
        length = min(self.bptt, self._train_streams.shape[1] - 1 - self._position)
        x = self._train_streams[:, self._position : self._position + length]  # [B, T]
        y = self._train_streams[:, self._position + 1 : self._position + 1 + length]  # [B, T]

        self.optimizer.zero_grad(set_to_none=True)
        loss = self._loss(x, y)
        value = float(loss.detach())
        if not math.isfinite(value):
            self.record.mark_diverged(self.step_count + 1)
            return False
        loss.backward()
        if self.clip is not None:
            nn.utils.clip_grad_norm_(self._clipped, self.clip)
        self.optimizer.step()
        self.record.train_loss.append(value)
        if isinstance(self.model, AlraoModel):
            self.model.update_switch()
            self.record.switch_posterior.append(self.model.switch.posterior.tolist())
            self.record.head_losses.append(self.model.last_head_losses.tolist())

        self._position += length
        if self._position >= self._train_streams.shape[1] - 1:
            self._position = 0
            self.evaluate()
        return not self.finished

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Compute the test metrics, append them to the record and return them.

        The training state of the LSTM is kept aside and restored, so evaluating between two
        steps leaves the training unchanged.
        """
        was_training, kept_state = self.model.training, self.language_model.state
        self.model.eval()
        self.language_model.reset_state()
        total_nll, correct, count = 0.0, 0, 0
        try:
            streams = self._test_streams
            for start in range(0, streams.shape[1] - 1, self.bptt):
                length = min(self.bptt, streams.shape[1] - 1 - start)
                x = streams[:, start : start + length]
                y = streams[:, start + 1 : start + 1 + length]
                log_probs = _log_probabilities(self.model, x)  # [B, T, V]
                total_nll += float(F.nll_loss(log_probs.reshape(-1, log_probs.shape[-1]), y.reshape(-1), reduction="sum"))
                correct += int((log_probs.argmax(-1) == y).sum())
                count += y.numel()
        finally:
            self.language_model.state = kept_state
            self.model.train(was_training)

        test_loss = total_nll / count
        previous_step = self.record.eval_steps[-1] if self.record.eval_steps else 0
        epoch_losses = self.record.train_loss[previous_step:]
        metrics = {
            "test_loss": test_loss,
            "test_bpc": test_loss / math.log(2),
            "test_accuracy": correct / count,
            "epoch_train_loss": sum(epoch_losses) / len(epoch_losses) if epoch_losses else math.nan,
        }
        if not math.isfinite(test_loss) and not self.diverged:
            self.record.mark_diverged(self.step_count)
        self.record.add_evaluation(self.step_count, metrics)
        if self.features is not None:
            self.record.feature_movement.append(self.features.movement())
        return metrics


class LanguageComparison(Comparison):
    """Several :class:`LanguageRun` on the same corpus, trained in lock-step from the same weights.

    ``network_factory(seed)`` is called once per seed, after ``torch.manual_seed(seed)``, and
    every method of that seed trains a copy of the network it returns. Stepping, stopping and
    ``records`` work as in :class:`~alrao_edu.training.runs.Comparison`.

    Args:
        specs: the methods to compare.
        network_factory: ``seed -> CharLanguageModel``.
        corpus: the :class:`TextCorpus`.
        seeds: the seeds; one run per (method, seed).
        epochs, batch_size, bptt, clip, device: as in :class:`LanguageRun`.
    """

    def __init__(
        self,
        specs: Iterable[MethodSpec],
        network_factory: Callable[[int], CharLanguageModel],
        corpus: TextCorpus,
        *,
        seeds: Iterable[int] = (0,),
        epochs: int = 1,
        batch_size: int = 32,
        bptt: int = DEFAULT_BPTT,
        clip: float | None = DEFAULT_CLIP,
        device: str | torch.device = "auto",
    ) -> None:
        self.dataset = corpus
        self.corpus = corpus

        def make_run(spec: MethodSpec, network: nn.Module, seed: int) -> LanguageRun:
            return LanguageRun(
                spec, network, corpus, epochs=epochs, batch_size=batch_size, bptt=bptt, clip=clip,
                seed=seed, device=device,
            )

        self._build_runs(specs, seeds, network_factory, make_run)
