"""slmkit chat: an interactive conversation with a chat model. Replies stream as they are
generated; Ctrl-C stops a reply (not the program); /reset forgets the conversation; /exit or
Ctrl-D quits. With stdin from a pipe, each line is one user message."""
import sys

from . import add_model_arg, load_model
from .generate import add_sampling_args, check_sampling_args, sampling_kwargs

HELP = "/reset forgets the conversation, /exit or Ctrl-D quits, Ctrl-C stops a reply"


def add_parser(sub):
    c = sub.add_parser("chat", help="chat with a model (interactive, streams)")
    add_model_arg(c)
    c.add_argument("--system", default=None, help="system prompt")
    c.add_argument("--chat-template", default=None, metavar="FILE",
                   help="Jinja chat template file (default: the model's own)")
    c.add_argument("-n", "--max-tokens", type=int, default=512, help="longest reply, in tokens")
    add_sampling_args(c)
    c.set_defaults(func=run)


def chat_loop(model, read_line, write, system: str | None = None, **options) -> list[dict]:
    """Read user lines with read_line() (EOFError ends), stream each reply through write(text).
    A KeyboardInterrupt while a reply streams stops that reply and keeps what was said; one at
    the prompt just asks again. Returns the conversation."""
    start = [{"role": "system", "content": system}] if system else []
    messages = list(start)
    while True:
        try:
            line = read_line()
        except EOFError:
            return messages
        except KeyboardInterrupt:
            write("\n")
            continue
        text = line.strip()
        if not text:
            continue
        if text in ("/exit", "/quit", "/bye"):
            return messages
        if text == "/reset":
            messages = list(start)
            write("(conversation cleared)\n")
            continue
        if text in ("/help", "/?"):
            write(HELP + "\n")
            continue
        messages.append({"role": "user", "content": line.rstrip("\n")})
        messages, dropped = fit_context(model, messages, len(start), options)
        if dropped:
            write(f"(the conversation outgrew the model's context of {context_length(model)} "
                  f"tokens: forgot the {dropped} oldest message(s))\n")
        if not messages or messages[-1]["role"] != "user":
            write("(that message alone is too long for the model's context; it was not sent)\n")
            continue
        reply = []
        stream = model.chat_stream(messages, **options)
        try:
            for piece in stream:
                reply.append(piece)
                write(piece)
        except KeyboardInterrupt:
            write(" [stopped]")
        finally:
            stream.close()
        write("\n")
        messages.append({"role": "assistant", "content": "".join(reply)})


def context_length(model) -> int:
    return model.config.max_position_embeddings


def fit_context(model, messages, keep: int, options) -> tuple[list[dict], int]:
    """messages, less the oldest turns after the first `keep` (the system prompt) until the
    rendered prompt leaves room for a reply (max_new_tokens, at most a quarter of the context);
    and how many messages were dropped. The last (user) message is dropped only when it alone
    does not fit, which leaves the list ending in an assistant or system message."""
    limit = context_length(model)
    room = min(options.get("max_new_tokens", 512), limit // 4)
    template = options.get("template")
    messages, dropped = list(messages), 0
    while True:
        n = len(model.apply_chat_template(messages, tokenize=True, template=template))
        if n + room <= limit:
            return messages, dropped
        if len(messages) - keep <= 1:            # only the new message is left: it cannot fit
            return messages[:-1], dropped
        # forget the oldest exchange (a user message and the reply to it)
        cut = 2 if len(messages) - keep > 2 and messages[keep + 1]["role"] == "assistant" else 1
        del messages[keep:keep + cut]
        dropped += cut


def run(args) -> int:
    check_sampling_args(args)
    from ..chat import ChatTemplateError
    template = None
    if args.chat_template:
        with open(args.chat_template, encoding="utf-8") as f:
            template = f.read()
    model = load_model(args)
    if not (template or model.tokenizer.chat_template):
        raise ChatTemplateError(f"{model.checkpoint.source} has no chat template; give one with "
                                f"--chat-template FILE, or use `slmkit generate`")
    interactive = sys.stdin.isatty()
    if interactive:
        try:
            import readline  # noqa: F401  (line editing and history for input())
        except ImportError:
            pass
        print(f"slmkit chat: {model.checkpoint.source}. {HELP}.", file=sys.stderr)

    def read_line():
        return input("> " if interactive else "")

    def write(text):
        sys.stdout.write(text)
        sys.stdout.flush()

    options = sampling_kwargs(args)
    chat_loop(model, read_line, write, system=args.system, template=template,
              max_new_tokens=args.max_tokens, **options)
    return 0
