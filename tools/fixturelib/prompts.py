"""Prompt rendering (docs/model.md §5.4 ChatML) and tokenization with the real Qwen3-Omni tokenizer."""
from tokenizers import Tokenizer

AUDIO_START, AUDIO_PAD, AUDIO_END = "<|audio_start|>", "<|audio_pad|>", "<|audio_end|>"


class PromptBuilder:
    def __init__(self, tokenizer_json):
        self.tokenizer = Tokenizer.from_file(tokenizer_json)

    def encode(self, text):
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def decode(self, ids):
        return self.tokenizer.decode(list(ids), skip_special_tokens=False)

    def chat(self, prompt, system=None, audio_tokens=0):
        """<|im_start|>system\\n..<|im_end|>\\n (if system) <|im_start|>user\\n[audio span]prompt<|im_end|>\\n
        <|im_start|>assistant\\n — the audio placeholder is expanded to `audio_tokens` <|audio_pad|> tokens."""
        text = ""
        if system is not None:
            text += f"<|im_start|>system\n{system}<|im_end|>\n"
        text += "<|im_start|>user\n"
        if audio_tokens:
            text += AUDIO_START + AUDIO_PAD * audio_tokens + AUDIO_END
        text += f"{prompt}<|im_end|>\n<|im_start|>assistant\n"
        ids = self.encode(text)
        if audio_tokens and ids.count(151675) != audio_tokens:
            raise RuntimeError("audio placeholder expansion did not tokenize to one id per <|audio_pad|>")
        return ids
