"""Chat templates, model.chat / chat_stream, the `slmkit chat` loop, and predictive text
(model.suggest), on small random models with a tokenizer that has real special tokens."""
import io
import sys

import numpy as np
import pytest
from tokenizers import Tokenizer as HFBackend, decoders, models, pre_tokenizers

from slmkit.chat import ChatTemplateError, end_of_turn_ids, render
from slmkit.cli import main
from slmkit.commands.chat import chat_loop
from slmkit.generate import stream_tokens
from slmkit.loading import model_from_checkpoint
from slmkit.sampling import SamplingParams
from slmkit.suggest import piece_table
from slmkit.tokenizers._text_pieces import byte_level_alphabet
from slmkit.tokenizers.hf_json import HFTokenizer
from utils import random_checkpoint

CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
SPECIALS = ["<s>", "</s>", "<|im_start|>", "<|im_end|>"]
BOS, EOS, IM_START, IM_END = 282, 283, 284, 285
VOCAB = 286


def byte_level_tokenizer(**settings) -> HFTokenizer:
    """Byte-level BPE: one token per byte (id = byte), one merge per lowercase letter after a space
    (" a" .. " z": ids 256..281) and four special tokens (ids 282..285): <s> is BOS, </s> EOS."""
    alphabet = byte_level_alphabet()
    vocab = {alphabet[b]: b for b in range(256)}
    merges = [(alphabet[ord(" ")], c) for c in "abcdefghijklmnopqrstuvwxyz"]
    vocab.update({left + right: 256 + i for i, (left, right) in enumerate(merges)})
    backend = HFBackend(models.BPE(vocab=vocab, merges=merges))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens(SPECIALS)
    assert [backend.token_to_id(t) for t in SPECIALS] == [BOS, EOS, IM_START, IM_END]
    options = dict(bos_id=BOS, eos_ids={EOS}, add_bos=True, chat_template=CHATML)
    options.update(settings)
    return HFTokenizer(backend, **options)


def random_chat_model(seed=0, backend="numpy", **tokenizer_settings):
    ckpt = random_checkpoint(seed, vocab_size=VOCAB, max_position_embeddings=256)
    return model_from_checkpoint(ckpt, backend, tokenizer=byte_level_tokenizer(**tokenizer_settings))


@pytest.fixture(scope="module")
def model():
    return random_chat_model(backend="cpu")


USER = [{"role": "user", "content": "Hi there"}]


# ---- templates -------------------------------------------------------------------------------

def test_render_chatml():
    text = render(CHATML, [{"role": "system", "content": "Be brief."}] + USER)
    assert text == ("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi there<|im_end|>\n"
                    "<|im_start|>assistant\n")
    assert not render(CHATML, USER, add_generation_prompt=False).endswith("assistant\n")


def test_render_has_what_hugging_face_templates_use():
    template = ("{{ bos_token }}{% for m in messages %}{% if m['role'] == 'tool' %}"
                "{{ raise_exception('no tools here') }}{% endif %}{% if loop.index > 2 %}{% break %}{% endif %}"
                "{{ m | tojson }};{% endfor %}{{ strftime_now('%Y') }}{{ eos_token }}")
    tokenizer = byte_level_tokenizer()
    messages = [{"role": "user", "content": "café"}, {"role": "assistant", "content": "b"},
                {"role": "user", "content": "never shown"}]
    text = render(template, messages, tokenizer=tokenizer)
    assert text.startswith('<s>{"role": "user", "content": "café"};')   # tojson keeps non-ASCII
    assert "never shown" not in text                                      # {% break %} works
    assert text.endswith("</s>") and text[-8:-4].isdigit()                # a year from strftime_now
    with pytest.raises(ChatTemplateError, match="no tools here"):
        render(template, [{"role": "tool", "content": "x"}], tokenizer=tokenizer)


def test_templates_run_in_the_sandbox():
    with pytest.raises(ChatTemplateError):
        render("{{ ''.__class__.__mro__[1].__subclasses__() }}", USER)
    with pytest.raises(ChatTemplateError):            # immutable: no mutating the messages
        render("{% set _ = messages.append(1) %}", USER)
    with pytest.raises(ChatTemplateError, match="does not compile"):
        render("{% for %}", USER)


def test_bad_messages_are_named():
    with pytest.raises(ChatTemplateError, match="message 1"):
        render(CHATML, [{"role": "user", "content": "a"}, {"content": "no role"}])
    with pytest.raises(ChatTemplateError, match="list"):
        render(CHATML, "just a string")


# ---- prompt ids: control tokens and BOS -------------------------------------------------------

def test_template_text_becomes_control_tokens_and_bos_is_added_once(model):
    ids = model.apply_chat_template(USER, tokenize=True)
    assert ids[:2] == [BOS, IM_START]                  # BOS (add_bos), then <|im_start|> as one id
    assert ids.count(IM_END) == 1 and ids[-1] == ord("\n")
    assert model.tokenizer.decode(ids) == "user\nHi there\nassistant\n"  # control tokens drop out


def test_no_double_bos_when_the_template_writes_it():
    m = random_chat_model(chat_template="{{ bos_token }}" + CHATML)
    assert m.apply_chat_template(USER).startswith("<s><|im_start|>")
    ids = m.apply_chat_template(USER, tokenize=True)
    assert ids[:2] == [BOS, IM_START] and ids.count(BOS) == 1


def test_user_text_outside_the_template_stays_plain(model):
    assert IM_START not in model.encode("<|im_start|>")     # plain encode: not a control token


def test_model_without_template_is_a_clear_error():
    m = random_chat_model(chat_template=None)
    with pytest.raises(ChatTemplateError, match="no chat template"):
        m.chat(USER)
    assert m.apply_chat_template(USER, template=CHATML).endswith("assistant\n")  # given one: fine


# ---- replies ---------------------------------------------------------------------------------

def test_chat_is_generation_from_the_rendered_prompt(model):
    ids = model.apply_chat_template(USER, tokenize=True)
    expected = model.generate(ids, max_new_tokens=12, temperature=0)
    assert model.chat(USER, max_new_tokens=12, temperature=0) == expected
    assert model.chat("Hi there", max_new_tokens=12, temperature=0) == expected
    assert "".join(model.chat_stream(USER, max_new_tokens=12, temperature=0)) == expected


def test_end_of_turn_ids_come_from_the_template():
    tokenizer = byte_level_tokenizer()
    assert end_of_turn_ids(tokenizer, CHATML) == {EOS, IM_END}
    assert end_of_turn_ids(tokenizer, "{{ messages[0]['content'] }}") == {EOS}


def test_stop_ids_end_generation(model):
    ids = model.apply_chat_template(USER, tokenize=True)
    greedy = SamplingParams(temperature=0)
    free = list(stream_tokens(model, ids, 10, greedy))
    stop = free[4]
    first = free.index(stop)
    assert list(stream_tokens(model, ids, 10, greedy, stop_ids={stop})) == free[:first + 1]


# ---- the chat loop ---------------------------------------------------------------------------

def lines(*texts):
    queue = list(texts)

    def read_line():
        if not queue:
            raise EOFError
        item = queue.pop(0)
        if isinstance(item, BaseException):
            raise item
        return item
    return read_line


def test_chat_loop_keeps_the_conversation(model):
    out = []
    options = dict(max_new_tokens=6, temperature=0)
    conversation = chat_loop(model, lines("Hello", "", "How are you?"), out.append, system="Be kind.",
                             **options)
    assert [m["role"] for m in conversation] == ["system", "user", "assistant", "user", "assistant"]
    first = model.chat([{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Hello"}],
                       **options)
    assert conversation[2]["content"] == first
    assert conversation[4]["content"] == model.chat(conversation[:4], **options)
    assert "".join(out) == first + "\n" + conversation[4]["content"] + "\n"


def test_chat_loop_reset_and_exit(model):
    out = []
    conversation = chat_loop(model, lines("Hello", "/reset", "Again", "/exit", "never read"), out.append,
                             max_new_tokens=4, temperature=0)
    assert [m["content"] for m in conversation if m["role"] == "user"] == ["Again"]
    assert "(conversation cleared)\n" in out


def test_ctrl_c_stops_the_reply_not_the_loop(model):
    """A KeyboardInterrupt while the reply streams (here raised by the terminal write, as a Ctrl-C
    during output would) ends that reply only; the next line gets a full reply."""
    out, calls = [], [0]

    def write(text):
        calls[0] += 1
        if calls[0] == 3:
            raise KeyboardInterrupt
        out.append(text)

    options = dict(max_new_tokens=8, temperature=0)
    conversation = chat_loop(model, lines("Hello", KeyboardInterrupt(), "Next"), write, **options)
    assert [m["role"] for m in conversation] == ["user", "assistant", "user", "assistant"]
    full = model.chat([{"role": "user", "content": "Hello"}], **options)
    partial = conversation[1]["content"]
    assert len(partial) < len(full) and full.startswith(partial)
    assert " [stopped]" in out
    assert conversation[3]["content"] == model.chat(conversation[:3], **options)


def test_cli_chat_with_piped_stdin(stories_hf, tmp_path, monkeypatch, capsys):
    template = tmp_path / "plain.jinja"
    template.write_text("{% for m in messages %}{{ m['content'] }}\n{% endfor %}")
    monkeypatch.setattr(sys, "stdin", io.StringIO("Once upon a time\n/reset\nThe cat\n"))
    assert main(["chat", "-m", str(stories_hf), "--chat-template", str(template), "-n", "12",
                 "--temp", "0"]) == 0
    out = capsys.readouterr().out
    assert "(conversation cleared)" in out and len(out.strip().splitlines()) >= 3
    monkeypatch.setattr(sys, "stdin", io.StringIO("hi\n"))
    assert main(["chat", "-m", str(stories_hf)]) == 2
    assert "no chat template" in capsys.readouterr().err


# ---- predictive text -------------------------------------------------------------------------

def brute_force_words(model, text, max_tokens=3):
    """Exact probabilities of every word of up to max_tokens tokens, by enumerating all token
    paths (feasible for a 260-token vocabulary and short words)."""
    from slmkit.evaluate import log_softmax
    from slmkit.suggest import _word_text
    table = piece_table(model.tokenizer)
    prompt = model.tokenizer.encode(text.rstrip(" "))
    words = {}

    def walk(ids, logp, depth):
        lp = log_softmax(model.logits(prompt + ids)[-1])
        if depth:
            p_end = np.exp(logp + np.logaddexp.reduce(lp[~table.continues]))
            word = _word_text(table, model.tokenizer, ids)
            words[word] = words.get(word, 0.0) + p_end
        if depth == max_tokens:
            return
        allowed = table.starts_after_space if depth == 0 else table.continues
        for t in np.flatnonzero(allowed & ~table.ends_inside):
            if logp + lp[t] > np.log(1e-4):             # paths this unlikely cannot reach the top
                walk(ids + [int(t)], logp + lp[t], depth + 1)
    walk([], 0.0, 0)
    return words


def test_piece_table_classifies_tokens(model):
    table = piece_table(model.tokenizer)
    space, a, comma, space_a = ord(" "), ord("a"), ord(","), 256
    assert table.texts[a] == "a" and table.continues[a] and table.starts_without_space[a]
    assert table.texts[space_a] == " a" and table.starts_after_space[space_a]
    assert not table.continues[space_a] and not table.starts_after_space[a]
    assert not table.continues[space] and not table.continues[comma] and not table.continues[EOS]
    assert np.flatnonzero(table.starts_after_space).tolist() == list(range(256, 282))
    assert piece_table(model.tokenizer) is table        # built once


def test_suggest_words_are_whole_and_probable(model):
    # with one byte per token a word needs several tokens: the beam search must assemble them
    found = model.suggest_with_probs("Hello", k=3, beam_width=8, max_word_tokens=3)
    assert len(found) <= 3
    exact = brute_force_words(model, "Hello", max_tokens=3)
    for word, prob in found:
        assert word and not word.startswith(" ") and all(c.isalnum() or c in "'-_" for c in word)
        assert prob == pytest.approx(exact[word], rel=1e-4)
    probs = [p for _, p in found]
    assert probs == sorted(probs, reverse=True)
    assert model.suggest("Hello", k=3, beam_width=8, max_word_tokens=3) == [w for w, _ in found]


def test_suggest_finds_the_top_word_of_a_wide_search(model):
    """A small beam finds the most likely word that an exhaustive search finds."""
    exact = brute_force_words(model, "The", max_tokens=2)
    best = max(exact, key=exact.get)
    found = model.suggest_with_probs("The ", k=1, beam_width=16, max_word_tokens=2)
    assert found[0][0] == best


def test_suggest_rejects_bad_arguments(model):
    with pytest.raises(ValueError, match="k must"):
        model.suggest("Hello", k=0)


class BigramArch:
    """A stand-in for model.arch whose next-token distribution depends on the last token only:
    letters strongly tend to follow letters, so words run to several tokens."""

    class Cache(list):
        def copy(self):
            return BigramArch.Cache(self)

    def __init__(self, tokenizer, seed=0):
        rng = np.random.default_rng(seed)
        table = piece_table(tokenizer)
        self.logits = rng.standard_normal((VOCAB, VOCAB)).astype(np.float32)
        for t, text in enumerate(table.texts):
            if not text[-1:].isalpha():
                self.logits[t, table.starts_after_space] += 5.0  # " a".." z" start a word
            if len(text) == 2 and "a" <= text[-1] < "z":
                self.logits[t, ord(text[-1]) + 1] += 9.0       # " j" is mostly followed by "k"
            elif len(text) == 1 and text.isalpha():
                self.logits[t, ord(",")] += 9.0                # and then mostly by a comma

    def new_cache(self, max_seq=None):
        return self.Cache()

    def forward(self, ids, cache):
        cache.extend(ids)
        return self.logits[cache[-1]]


def bigram_model():
    from slmkit.model import Model
    tokenizer = byte_level_tokenizer()
    return Model(random_checkpoint(0, vocab_size=VOCAB), BigramArch(tokenizer), tokenizer, None)


def test_suggest_assembles_words_of_several_tokens():
    from slmkit.evaluate import log_softmax
    model = bigram_model()
    table = piece_table(model.tokenizer)
    end = ~table.continues
    # exact word probabilities over all paths of up to 3 tokens (bigram: cheap to enumerate)
    lp = log_softmax(model.arch.logits.astype(np.float64))
    exact = {}
    after = model.tokenizer.encode("go.")[-1]             # after ".", a word may start with no space
    frontier = [([t], lp[after, t]) for t in np.flatnonzero(table.starts_after_space | table.starts_without_space)]
    for depth in range(3):
        grown = []
        for ids, logp in frontier:
            word = model.tokenizer.decode(ids).strip()
            exact[word] = exact.get(word, 0.0) + np.exp(logp + np.logaddexp.reduce(lp[ids[-1]][end]))
            if depth < 2:
                grown += [(ids + [int(t)], logp + lp[ids[-1], t]) for t in np.flatnonzero(table.continues)
                          if logp + lp[ids[-1], t] > np.log(1e-6)]
        frontier = grown
    best = sorted(exact, key=exact.get, reverse=True)[:3]
    assert all(len(w) == 2 for w in best)                 # two tokens each
    found = model.suggest_with_probs("go.", k=3, beam_width=6, max_word_tokens=3)
    assert [w for w, _ in found] == best
    for word, prob in found:
        assert prob == pytest.approx(exact[word], rel=1e-6)
