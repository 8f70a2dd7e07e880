"""Recurrent networks: the LSTM feature rule, the character-level language model, truncated BPTT."""

import math
import re

import pytest
import torch
import torch.nn.functional as F

import alrao_edu as ae
from alrao_edu.training import MethodSpec
from alrao_edu.training.language import (
    CharLanguageModel,
    LanguageComparison,
    LanguageRun,
    TextCorpus,
    batchify,
    generate,
    load_corpus,
    python_docs_text,
)
from alrao_edu.views import figures

# A short English text for the fast tests: 1,200 characters, so 1,080 for training.
SAMPLE = (
    "The quick brown fox jumps over the lazy dog, and the dog sleeps on in the sun. "
    "A small cat watches them both from the wall and thinks about its dinner. "
) * 8
SAMPLE = SAMPLE[:1200]


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def corpus():
    return TextCorpus(SAMPLE, name="sample")


def _alrao_run(corpus, **options) -> LanguageRun:
    torch.manual_seed(0)
    network = CharLanguageModel(corpus.vocab_size, embedding_dim=8, hidden_size=16)
    spec = MethodSpec("alrao", eta_min=1e-3, eta_max=10.0, n_heads=4)
    options = {"batch_size": 4, "bptt": 10, "device": "cpu", **options}
    return LanguageRun(spec, network, corpus, **options)


# ---------------------------------------------------------------------------------------------
# The LSTM feature rule


def test_lstm_unit_rate_shared_by_every_gate(corpus):
    run = _alrao_run(corpus)
    hidden = 16
    rates = run.model.feature_learning_rates
    unit_rates = rates["lstm.weight_ih_l0"].view(4, hidden)  # gate, unit

    for gate in range(1, 4):
        torch.testing.assert_close(unit_rates[gate], unit_rates[0], msg=f"gate {gate}")
    for name in ("lstm.weight_hh_l0", "lstm.bias_ih_l0", "lstm.bias_hh_l0"):
        torch.testing.assert_close(rates[name].reshape(4, hidden), unit_rates, msg=name)
    assert len(set(unit_rates[0].tolist())) == hidden  # one draw per unit
    assert rates["embedding.weight"].shape == (1, 8)  # one rate per embedding dimension


def test_lstm_rule_drives_optimizer_steps(corpus):
    run = _alrao_run(corpus, clip=None)
    lstm = run.model.preclassifier.lstm
    before = {name: param.detach().clone() for name, param in lstm.named_parameters()}

    run.step()

    unit_rates = run.model.feature_learning_rates["lstm.weight_ih_l0"].view(4, 16)[0]
    for name, param in lstm.named_parameters():
        step = before[name] - param.detach()  # = rate * gradient, row by row
        gradient = param.grad
        rows = step.reshape(4 * 16, -1)
        gradient_rows = gradient.reshape(4 * 16, -1)
        expected = unit_rates.repeat(4).view(-1, 1) * gradient_rows
        torch.testing.assert_close(rows, expected, msg=name)


def test_heads_run_at_every_time_step(corpus):
    run = _alrao_run(corpus)
    model = run.model
    for _ in range(3):
        model.switch.update(-torch.arange(4, dtype=torch.float32))
    x = batchify(corpus.train, 4)[:, :10]  # [B, T]

    model.preclassifier.reset_state()
    heads = model.head_outputs(x)  # [B, T, H, V]
    model.preclassifier.reset_state()
    mixture = model(x)  # [B, T, V]

    assert heads.shape == (4, 10, 4, corpus.vocab_size)
    assert mixture.shape == (4, 10, corpus.vocab_size)
    log_weights = model.switch.log_posterior.float().view(1, 1, 4, 1)
    torch.testing.assert_close(mixture, torch.logsumexp(heads + log_weights, dim=2))


# ---------------------------------------------------------------------------------------------
# Truncated backpropagation through time


def test_hidden_state_carried_and_detached(corpus):
    model = CharLanguageModel(corpus.vocab_size, embedding_dim=8, hidden_size=16)
    streams = batchify(corpus.train, 4)
    first, second = streams[:, :10], streams[:, 10:20]

    F.cross_entropy(model(first).flatten(0, 1), streams[:, 1:11].flatten()).backward()
    carried = model(second)
    model.reset_state()
    fresh = model(second)

    assert not torch.allclose(carried, fresh)
    # The second segment's graph starts at the carried state, so a second backward works.
    model.reset_state()
    model(first)
    loss = F.cross_entropy(model(second).flatten(0, 1), streams[:, 11:21].flatten())
    loss.backward()


def test_run_matches_manual_truncated_bptt(corpus):
    # A baseline run against a loop written out: carried and detached state, reset each epoch,
    # clipping on every parameter except the decoder, torch.optim.SGD.
    torch.manual_seed(3)
    network = CharLanguageModel(corpus.vocab_size, embedding_dim=8, hidden_size=16)
    run = LanguageRun(MethodSpec("sgd", lr=0.5), network, corpus, epochs=2, batch_size=36, bptt=10, clip=0.1, device="cpu")
    assert run.steps_per_epoch == 3

    oracle = CharLanguageModel(corpus.vocab_size, embedding_dim=8, hidden_size=16)
    oracle.load_state_dict(network.state_dict())
    optimizer = torch.optim.SGD(oracle.parameters(), lr=0.5)
    clipped = [*oracle.embedding.parameters(), *oracle.lstm.parameters()]
    streams = batchify(corpus.train, 36)  # [36, 30]
    expected_losses = []
    for _ in range(2):
        state = None
        for start in range(0, 29, 10):
            length = min(10, 29 - start)
            x, y = streams[:, start : start + length], streams[:, start + 1 : start + 1 + length]
            output, state = oracle.lstm(oracle.embedding(x), None if state is None else tuple(s.detach() for s in state))
            loss = F.cross_entropy(oracle.decoder(output).flatten(0, 1), y.flatten())
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(clipped, 0.1)
            optimizer.step()
            expected_losses.append(loss.item())

    while run.step():
        pass
    assert run.record.train_loss == pytest.approx(expected_losses, rel=1e-5)
    for (name, param), expected in zip(run.model.named_parameters(), oracle.parameters()):
        torch.testing.assert_close(param, expected, msg=name)


def test_clip_limits_preclassifier_not_heads(corpus):
    run = _alrao_run(corpus, clip=1e-3)
    run.step()

    preclassifier = [p.grad for p in run.model.preclassifier.parameters()]
    heads = [run.model.heads.weight.grad, run.model.heads.bias.grad]
    assert torch.linalg.vector_norm(torch.cat([g.flatten() for g in preclassifier])) <= 1e-3 * (1 + 1e-4)
    assert torch.linalg.vector_norm(torch.cat([g.flatten() for g in heads])) > 1e-2


@pytest.mark.parametrize("bptt", [0, -5, 2.5, True, "64", None])
def test_bad_bptt_rejected(corpus, bptt):
    message = rf"Invalid bptt: {re.escape(repr(bptt))}; expected an integer >= 1"
    with pytest.raises(ValueError, match=message):
        _alrao_run(corpus, bptt=bptt)
    with pytest.raises(ValueError, match=message):
        LanguageComparison([MethodSpec("adam")], lambda seed: CharLanguageModel(corpus.vocab_size), corpus, bptt=bptt)


@pytest.mark.parametrize("clip", [0, -1.0, math.inf, math.nan, "1", True])
def test_bad_clip_rejected(corpus, clip):
    with pytest.raises(ValueError, match=rf"Invalid clip: {re.escape(repr(clip))}; expected None"):
        _alrao_run(corpus, clip=clip)


def test_network_must_fit_vocabulary(corpus):
    network = CharLanguageModel(corpus.vocab_size + 1)
    with pytest.raises(ValueError, match=r"predicts \d+ characters but the corpus 'sample' has \d+"):
        LanguageRun(MethodSpec("adam"), network, corpus, device="cpu")


# ---------------------------------------------------------------------------------------------
# Corpora


def test_python_docs_is_english_prose():
    text = python_docs_text()
    lines = text.split("\n")

    assert len(text) > 100_000
    assert not any(line[:1].isspace() for line in lines)  # no indented code examples
    assert len(lines) == len(set(lines))  # no repeated paragraph
    assert " the " in text and " statement " in text


def test_corpus_split_and_round_trip(corpus):
    assert len(corpus.train) == 1080
    assert len(corpus.test) == 120
    assert corpus.decode(torch.cat([corpus.train, corpus.test])) == SAMPLE
    assert corpus.vocabulary == sorted(set(SAMPLE))
    with pytest.raises(ValueError, match=r"Characters not in the vocabulary of 'sample': 'Z'"):
        corpus.encode("Zebra")


def test_unigram_entropy_of_uniform_text():
    corpus = TextCorpus("abcd" * 100, test_fraction=0.25)
    assert corpus.unigram_entropy_bits("test") == pytest.approx(2.0)
    assert corpus.unigram_entropy_bits("all") == pytest.approx(2.0)
    with pytest.raises(ValueError, match="Invalid split: 'valid'"):
        corpus.unigram_entropy_bits("valid")


def test_batchify_cuts_contiguous_streams():
    streams = batchify(torch.arange(23), 4)
    assert streams.tolist() == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9], [10, 11, 12, 13, 14], [15, 16, 17, 18, 19]]
    with pytest.raises(ValueError, match="cannot fill 12 streams"):
        batchify(torch.arange(23), 12)


def test_user_text_file_trains(tmp_path):
    path = tmp_path / "story.txt"
    path.write_text(SAMPLE, encoding="utf-8")
    corpus = load_corpus(path)
    run = _alrao_run(corpus)
    run.step()

    assert corpus.name == "story.txt"
    assert run.record.dataset == "story.txt"
    assert len(run.record.train_loss) == 1


def test_missing_text_file(tmp_path):
    path = tmp_path / "absent.txt"
    with pytest.raises(FileNotFoundError, match=rf"Text file not found: {re.escape(str(path))}"):
        load_corpus(path)


@pytest.mark.parametrize("content", ["", "  \n\n\t"])
def test_empty_text_file(tmp_path, content):
    path = tmp_path / "empty.txt"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=rf"The text file {re.escape(str(path))} is empty"):
        TextCorpus.from_file(path)


def test_text_file_too_short_for_one_batch(tmp_path):
    path = tmp_path / "short.txt"
    path.write_text(SAMPLE[:400], encoding="utf-8")
    corpus = TextCorpus.from_file(path)
    with pytest.raises(ValueError, match=r"'short.txt' has 360 characters, fewer than the 1056 that one batch needs"):
        LanguageRun(MethodSpec("adam"), CharLanguageModel(corpus.vocab_size), corpus, batch_size=16, bptt=65, device="cpu")


@pytest.mark.parametrize("bptt", [1, 2, 10, 44])
def test_short_test_part_still_evaluates(bptt):
    corpus = TextCorpus("abcde" * 10, test_fraction=0.1)  # 45 training and 5 test characters
    run = LanguageRun(MethodSpec("sgd", lr=0.1), CharLanguageModel(5), corpus, batch_size=1, bptt=bptt, device="cpu")
    metrics = run.evaluate()
    assert math.isfinite(metrics["test_bpc"])


def test_text_file_too_short_to_split(tmp_path):
    path = tmp_path / "tiny.txt"
    path.write_text("Hi.", encoding="utf-8")
    with pytest.raises(ValueError, match=r"'tiny.txt' has 3 characters, too few to split"):
        TextCorpus.from_file(path)


def test_folder_and_binary_file_rejected(tmp_path):
    with pytest.raises(ValueError, match="is a folder"):
        TextCorpus.from_file(tmp_path)
    path = tmp_path / "image.bin"
    path.write_bytes(bytes([0xFF, 0xFE, 0x80, 0x81]) * 100)
    with pytest.raises(ValueError, match="is not a text file in the utf-8 encoding"):
        TextCorpus.from_file(path)


# ---------------------------------------------------------------------------------------------
# Training, comparisons and samples


@pytest.mark.slow
def test_alrao_beats_unigram_entropy_quickly():
    # The quick-mode setting of the recurrent lesson: 60,000 characters, two epochs.
    corpus = TextCorpus.python_docs(max_chars=60_000)
    torch.manual_seed(0)
    network = CharLanguageModel(corpus.vocab_size)
    run = LanguageRun(MethodSpec("alrao", eta_min=1e-3, eta_max=100.0), network, corpus, epochs=2, device="cpu")
    while run.step():
        pass

    record = run.record
    assert not run.diverged
    assert len(record.test_bpc) == 2
    assert record.test_bpc[-1] == pytest.approx(record.test_loss[-1] / math.log(2))
    assert record.test_bpc[-1] < corpus.unigram_entropy_bits("test")


def test_comparison_same_start_and_records(corpus):
    specs = [MethodSpec("alrao", eta_min=1e-3, eta_max=10.0, n_heads=3), MethodSpec("sgd", lr=1.0), MethodSpec("adam")]
    comparison = LanguageComparison(
        specs,
        lambda seed: CharLanguageModel(corpus.vocab_size, embedding_dim=8, hidden_size=16),
        corpus,
        epochs=2,
        batch_size=8,
        bptt=20,
        device="cpu",
    )
    alrao, sgd, adam = comparison.runs
    for name, param in sgd.model.named_parameters():
        torch.testing.assert_close(param, adam.model.get_parameter(name))
        if not name.startswith("decoder"):
            torch.testing.assert_close(param, alrao.model.preclassifier.get_parameter(name))

    assert comparison.train()
    for record in comparison.records:
        assert len(record.test_bpc) == 2, record.label
        assert len(record.epoch_train_loss) == 2, record.label
        assert len(record.train_loss) == 2 * record.steps_per_epoch, record.label
        first_epoch = record.train_loss[: record.steps_per_epoch]
        assert record.epoch_train_loss[0] == pytest.approx(sum(first_epoch) / len(first_epoch))
    assert alrao.record.feature_layers == ["embedding", "lstm"]
    assert len(alrao.record.feature_rates["lstm"]) == 16


def test_figures_draw_language_records(corpus):
    run = _alrao_run(corpus, epochs=1)
    while run.step():
        pass
    record = run.record

    assert len(figures.loss_figure([record]).data) >= 1
    assert len(figures.switch_posterior_figure(record).data) >= 4
    assert len(figures.rate_histogram_figure(record, layer="lstm").data) >= 1
    assert len(figures.rate_movement_figure(record).data) >= 1


def test_generate_samples_from_vocabulary(corpus):
    run = _alrao_run(corpus)
    run.step()
    state = run.language_model.state

    text = generate(run.model, corpus, prompt="The ", length=50, seed=1)
    again = generate(run.model, corpus, prompt="The ", length=50, seed=1)

    assert len(text) == 50
    assert set(text) <= set(corpus.vocabulary)
    assert text == again
    assert run.language_model.state is state  # training state restored
    with pytest.raises(ValueError, match="Invalid temperature: 0"):
        generate(run.model, corpus, temperature=0)
    with pytest.raises(ValueError, match="not in the vocabulary"):
        generate(run.model, corpus, prompt="Zebra")


def test_generate_needs_language_model(corpus):
    network = ae.alraofy(torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2)))
    with pytest.raises(TypeError, match="Expected a CharLanguageModel or an AlraoModel built from one"):
        generate(network, corpus)
