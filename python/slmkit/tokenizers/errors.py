"""Errors raised while finding or reading a tokenizer."""


class TokenizerLoadError(ValueError):
    """A tokenizer file is missing, of an unknown kind, corrupt or unsupported. The message names the file."""
