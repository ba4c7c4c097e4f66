"""Errors that name what was wrong with which input."""


class SlmkitError(Exception):
    """Base class of slmkit's own errors."""


class ModelFormatError(SlmkitError, ValueError):
    """A model file or folder is corrupt, truncated, or contradicts its own config."""


class UnsupportedModelError(SlmkitError, ValueError):
    """The model's architecture or a tensor type is not supported."""


class TokenizerError(SlmkitError, ValueError):
    """A tokenizer file is missing, corrupt, unsupported or of an unknown kind (names the file)."""
