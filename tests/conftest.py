import pytest

from utils import shared_path


@pytest.fixture(scope="session")
def stories_hf():
    return shared_path("models", "stories260K", "hf")


@pytest.fixture(scope="session")
def stories_llama2c():
    return shared_path("models", "stories260K", "llama2c", "stories260K.bin")


@pytest.fixture(scope="session")
def tinystories_text():
    return shared_path("corpora", "tinystories-valid-part.txt").read_text(encoding="utf-8")
