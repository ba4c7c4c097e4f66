import pytest

from slmkit import hub
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


@pytest.fixture(scope="session")
def smollm2_path():
    """The real SmolLM2-135M-Instruct GGUF (never downloaded by the tests)."""
    path = hub.find_smollm2_gguf()
    if path is None:
        pytest.skip(f"SmolLM2 GGUF not present: run `slmkit pull smollm2-135m` (it goes to "
                    f"{hub.cached_path(hub.DEFAULT_MODEL)}) or set SLMKIT_SMOLLM2_GGUF")
    return path
