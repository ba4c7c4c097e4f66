"""Model architectures: one file per family. The registry maps HF `architectures` names to them."""
from .llama import LlamaModel

ARCHITECTURES = {
    "LlamaForCausalLM": LlamaModel,
    "MistralForCausalLM": LlamaModel,
    "Qwen2ForCausalLM": LlamaModel,
}

__all__ = ["ARCHITECTURES", "LlamaModel"]
