"""Tiny random Llama and Exaone4 models with a byte-level tokenizer, built in code (tests, gallery)."""

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import AutoModelForCausalLM, Exaone4Config, LlamaConfig, PreTrainedTokenizerFast

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
TINY_VOCAB = 3 + 256
# ChatML, as SmolLM2's tokenizer carries it (for tests of evaluations through the chat template)
CHATML = ("{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
          "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def byte_tokenizer(chat_template: str | None = None) -> PreTrainedTokenizerFast:
    """256 byte tokens after 3 specials, no merges: exact round trip for any UTF-8 text."""
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    for ch in sorted(alphabet):
        vocab[ch] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|im_end|>",
        unk_token=None,
        model_input_names=["input_ids", "attention_mask"],
    )
    fast.add_special_tokens({"additional_special_tokens": SPECIAL_TOKENS})
    if chat_template:
        fast.chat_template = chat_template
    return fast


def _common(layers: int, hidden: int, heads: int, kv_heads: int, ffn: int) -> dict:
    return dict(
        vocab_size=TINY_VOCAB,
        hidden_size=hidden,
        intermediate_size=ffn,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        head_dim=hidden // heads,
        max_position_embeddings=2048,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=2,
        tie_word_embeddings=True,
    )


def tiny_llama_config(layers=4, hidden=64, heads=4, kv_heads=2, ffn=128) -> LlamaConfig:
    return LlamaConfig(**_common(layers, hidden, heads, kv_heads, ffn), rope_theta=10000.0)


def tiny_exaone4_config(layers=4, hidden=64, heads=4, kv_heads=2, ffn=128, hybrid=False) -> Exaone4Config:
    """All layers full attention like EXAONE-4.0-1.2B; `hybrid` gives the 32B's 3 sliding : 1 full."""
    layer_types = [
        "sliding_attention" if hybrid and (i + 1) % 4 else "full_attention" for i in range(layers)
    ]
    return Exaone4Config(
        **_common(layers, hidden, heads, kv_heads, ffn),
        rope_theta=1000000.0,
        sliding_window=16 if hybrid else None,
        layer_types=layer_types,
    )


def tiny_model(config, seed: int = 0):
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    # Random init std 0.02 makes every layer a near no-op; widen it so edits change the output.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 2:
                p.normal_(0.0, 0.15)
    return model.eval()


def save_tiny(kind: str, folder: Path, seed: int = 0, chat_template: str | None = None, **shape) -> Path:
    """Write a tiny random `llama` or `exaone4` checkpoint with its tokenizer (and `chat_template`) to `folder`."""
    builders = {"llama": tiny_llama_config, "exaone4": tiny_exaone4_config}
    model = tiny_model(builders[kind](**shape), seed=seed)
    folder = Path(folder)
    model.save_pretrained(folder, safe_serialization=True)
    byte_tokenizer(chat_template).save_pretrained(folder)
    return folder
