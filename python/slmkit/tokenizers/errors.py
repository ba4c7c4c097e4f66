"""Errors raised while finding or reading a tokenizer."""
from ..errors import TokenizerError

# The name the tokenizer modules use; the same class as slmkit.errors.TokenizerError.
TokenizerLoadError = TokenizerError
