#!/usr/bin/env python3
"""Writes the small seed corpora of the libFuzzer targets (tests/fuzz/corpus/<target>/).

Run from the repository root after changing a parser's format: python3 tools/fuzz_seeds.py
Seeds are valid inputs of every shape the parser accepts plus a few near misses; the fuzzer mutates them.
"""
import json
import os
import struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
CORPUS = os.path.join(ROOT, "tests", "fuzz", "corpus")


def put(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def safetensors(tensors, metadata=None, pad=0):
    header, blob = {}, b""
    if metadata is not None:
        header["__metadata__"] = metadata
    sizes = {"BF16": 2, "F16": 2, "F32": 4, "I32": 4}
    for name, (dtype, shape) in tensors.items():
        n = sizes[dtype]
        for d in shape:
            n *= d
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(blob), len(blob) + n]}
        blob += bytes(range(256)) * (n // 256) + bytes(n % 256)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8 + pad)  # aligned data, as writers pad it (pad != 0: misaligned)
    return struct.pack("<Q", len(h)) + h + blob


def wav(fmt_tag, bits, channels, rate, frames, extensible=False, extra_chunk=False, odd_pad=True):
    block = channels * bits // 8
    data = bytes((i * 37) & 0xFF for i in range(frames * block))
    if fmt_tag == 3 and bits == 32:
        data = b"".join(struct.pack("<f", ((i % 17) - 8) / 8) for i in range(frames * channels))
    if fmt_tag == 3 and bits == 64:
        data = b"".join(struct.pack("<d", ((i % 17) - 8) / 8) for i in range(frames * channels))
    if extensible:
        guid = struct.pack("<H", fmt_tag) + b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
        fmt = struct.pack("<HHIIHHHHI", 0xFFFE, channels, rate, rate * block, block, bits, 22, bits, 0) + guid
    else:
        fmt = struct.pack("<HHIIHH", fmt_tag, channels, rate, rate * block, block, bits)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    if extra_chunk:
        body += b"LIST" + struct.pack("<I", 5) + b"INFOx" + (b"\x00" if odd_pad else b"")
    body += b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def main():
    # safetensors header
    put("fuzz_safetensors_header", "bf16_f32_i32",
        safetensors({"a.weight": ("BF16", [4, 8]), "b": ("F32", [3]), "ids": ("I32", [2, 2])}, {"format": "pt"}))
    put("fuzz_safetensors_header", "five_dims", safetensors({"patch": ("F16", [2, 1, 2, 2, 2]), "s": ("F32", [])}))
    put("fuzz_safetensors_header", "padded_header", safetensors({"x": ("F16", [16])}, pad=7))
    put("fuzz_safetensors_header", "empty_header", safetensors({}))
    put("fuzz_safetensors_header", "truncated", safetensors({"x": ("F32", [64])})[:-10])

    # safetensors index
    index = {"metadata": {"total_size": 1234},
             "weight_map": {"thinker.model.embed_tokens.weight": "model-00001-of-00002.safetensors",
                            "thinker.lm_head.weight": "model-00002-of-00002.safetensors",
                            "talker.codec_head.weight": "model-00002-of-00002.safetensors"}}
    put("fuzz_safetensors_index", "two_shards", json.dumps(index, indent=2))
    put("fuzz_safetensors_index", "one_shard", json.dumps({"weight_map": {"w": "model.safetensors"}}))
    put("fuzz_safetensors_index", "path_escape", json.dumps({"weight_map": {"w": "../x.safetensors"}}))

    # config.json: the committed tiny checkpoints' configs
    for name in ("tiny-a", "tiny-b"):
        with open(os.path.join(ROOT, "tests", "fixtures", "models", name, "config.json"), "rb") as f:
            put("fuzz_model_config", name, f.read())

    # WAV: every sample format decode_wav accepts, unknown chunks with and without pad byte
    put("fuzz_wav", "pcm8_mono", wav(1, 8, 1, 8000, 16))
    put("fuzz_wav", "pcm16_stereo", wav(1, 16, 2, 16000, 16))
    put("fuzz_wav", "pcm24_mono_list", wav(1, 24, 1, 44100, 8, extra_chunk=True))
    put("fuzz_wav", "pcm32_mono_list_nopad", wav(1, 32, 1, 48000, 8, extra_chunk=True, odd_pad=False))
    put("fuzz_wav", "float32_mono", wav(3, 32, 1, 24000, 16))
    put("fuzz_wav", "float64_stereo", wav(3, 64, 2, 22050, 4))
    put("fuzz_wav", "extensible_pcm16_3ch", wav(1, 16, 3, 16000, 4, extensible=True))
    put("fuzz_wav", "extensible_float32", wav(3, 32, 1, 16000, 4, extensible=True))

    # tokenizer: byte 0 picks encode (0), encode_plain (1), decode (2)
    texts = ["Hello, world! How are you today?", "<|im_start|>user\nWhat's 12+30?<|im_end|>\n",
             "Café naïve 東京 😀 e\u0301 \u1100\u1161", "  multiple   spaces\t\ttabs\r\n\n", "<think>\n\n</think>\n\n"]
    for i, t in enumerate(texts):
        put("fuzz_tokenizer", "encode_%d" % i, b"\x00" + t.encode())
        put("fuzz_tokenizer", "plain_%d" % i, b"\x01" + t.encode())
    put("fuzz_tokenizer", "decode_ids", b"\x02" + struct.pack("<8i", 9707, 11, 1879, 0, 151644, 151645, -1, 10**9))
    put("fuzz_tokenizer", "decode_split_utf8", b"\x02" + struct.pack("<4i", 30543, 227, 198, 151665))

    # tool schemas: a tools array or one parameters object, then NUL and the bytes that steer the walk
    robot = [{"type": "function", "function": {"name": "move_arm", "parameters": {
        "type": "object", "properties": {"x": {"type": "number", "minimum": -1, "maximum": 1},
                                         "speed": {"type": "string", "enum": ["slow", "fast"]}},
        "required": ["x"]}}},
             {"type": "function", "function": {"name": "set_gripper", "parameters": {
                 "type": "object", "properties": {"closed": {"type": "boolean"}}, "required": ["closed"]}}}]
    put("fuzz_tool_schema", "robot_tools", json.dumps(robot).encode() + b"\x00" + bytes(range(0, 256, 7)))
    nested = {"type": "object", "properties": {
        "target": {"type": ["object", "null"], "properties": {"place": {"type": "string", "maxLength": 5},
                                                             "n": {"type": "integer", "minimum": -3, "maximum": 9}}},
        "path": {"type": "array", "items": {"type": "array", "items": {"type": "number"}, "maxItems": 2},
                 "minItems": 1, "maxItems": 2},
        "mode": {"enum": [1, 10, "x", None, True]}}, "required": ["path"]}
    put("fuzz_tool_schema", "nested_parameters", json.dumps(nested).encode() + b"\x00" + bytes(range(255, 0, -3)))
    put("fuzz_tool_schema", "unsupported_keyword", json.dumps({"type": "object", "properties": {
        "p": {"type": "string", "pattern": "a+"}}}).encode())

    # tool call parser: model output with calls, good and bad
    put("fuzz_tool_call_parser", "two_calls",
        'Moving.\n<tool_call>\n{"name": "move_arm", "arguments": {"x": 0.5, "speed": "slow"}}\n</tool_call>\n'
        '<tool_call>\n{"name": "set_gripper", "arguments": {"closed": true}}\n</tool_call>')
    put("fuzz_tool_call_parser", "bad_calls",
        '<tool_call>{"name": "fly", "arguments": {}}</tool_call><tool_call>{"name": "move_arm", "arguments": '
        '"{\\"x\\": 2}"}</tool_call><tool_call>{oops</tool_call><tool_call>')

    # tokenizer.json: a minimal byte-level BPE file (the shape of Qwen's), strings and pair merges
    alphabet, nxt = {}, 0
    for b in range(256):
        printable = (33 <= b <= 126) or (0xA1 <= b <= 0xAC) or (0xAE <= b <= 0xFF)
        alphabet[chr(b) if printable else chr(256 + nxt)] = b
        if not printable:
            nxt += 1
    vocab = {s: i for i, s in enumerate(alphabet)}
    for t in ("he", "ll", "hell", "hello"):
        vocab[t] = len(vocab)
    regex = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
             r"|\s*[\r\n]+|\s+(?!\S)|\s+")
    tok = {"normalizer": {"type": "NFC"},
           "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
               {"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": False},
               {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}]},
           "post_processor": {"type": "ByteLevel"}, "decoder": {"type": "ByteLevel"},
           "added_tokens": [{"id": 260, "content": "<|im_start|>", "special": True, "normalized": False},
                            {"id": 261, "content": "<think>", "special": False, "normalized": False}],
           "model": {"type": "BPE", "vocab": vocab, "merges": ["h e", "l l", "he ll", "hell o"]}}
    put("fuzz_tokenizer_json", "minimal_string_merges", json.dumps(tok))
    tok["model"]["merges"] = [["h", "e"], ["l", "l"], ["he", "ll"], ["hell", "o"]]
    put("fuzz_tokenizer_json", "minimal_pair_merges", json.dumps(tok))

    # the daemon's YAML config: the documented default file and a small one with flow mappings
    with open(os.path.join(ROOT, "config", "omnid.yaml"), "rb") as f:
        put("fuzz_daemon_config", "default.yaml", f.read())
    put("fuzz_daemon_config", "flow.yaml",
        "model:\n  device: cpu\n  path: /tmp/m\naudio:\n  output: {backend: wav-file, path: \"/tmp/a-{turn}.wav\", "
        "volume: 0.5}\n  vad: {aggressiveness: 3}\nipc: {heartbeat_ms: 100, allow_uids: [0, root], allow_gids: [0]}\n")

    # control protocol (tests/fuzz/fuzz_protocol.cpp: byte 0 bit 0 = a binary frame follows the first NUL)
    requests = [{"id": 1, "cmd": "ping"}, {"id": "s", "cmd": "status"},
                {"id": 3, "cmd": "ask", "text": "Hello!", "speak": False}, {"id": [4], "cmd": "say", "text": "hi"},
                {"id": None, "cmd": "cancel", "turn_id": 7}, {"id": {"k": 1}, "cmd": "listen", "enabled": True},
                {"id": 5, "cmd": "set_volume", "volume": 0.5}, {"id": 6, "cmd": "nope"}]
    for i, r in enumerate(requests):
        put("fuzz_protocol", "request_%d" % i, b"\x00" + json.dumps(r).encode())
    put("fuzz_protocol", "ask_with_wav", b"\x01" + json.dumps({"id": 9, "cmd": "ask"}).encode() + b"\x00" +
        wav(1, 16, 1, 16000, 8))
    put("fuzz_protocol", "ask_with_images", b"\x00" + json.dumps(
        {"id": 10, "cmd": "ask", "text": "What is this?",
         "images": [{"path": "/srv/a.png"}, {"base64": "iVBORw0KGgo=", "format": "png"},
                    {"base64": "/9j/4A==", "format": "jpeg"}]}).encode())

    # conversation files (omni-run --messages)
    convs = {
        "text_only": [{"role": "user", "content": "Hello"}],
        "system_images_text": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "Compare "}, {"type": "image", "image": "a.png"},
                                         {"type": "text", "text": " and "}, {"type": "image", "image": "/abs/b.jpg"}]}],
        "audio_and_answer": [
            {"role": "user", "content": [{"type": "audio", "audio": "q.wav"}, {"type": "text", "text": "?"}]},
            {"role": "assistant", "content": "Yes."}, {"role": "user", "content": None}],
        "calls_and_results": [
            {"role": "user", "content": "Pick it up."},
            {"role": "assistant", "content": "", "tool_calls": [
                {"type": "function", "function": {"name": "grip", "arguments": {"force": 3, "close": True}}},
                {"function": {"name": "lift", "arguments": "{\"height\": 0.2}"}}]},
            {"role": "tool", "content": "{\"ok\": true}"}, {"role": "tool", "content": "done"}],
        "near_miss_video": [{"role": "user", "content": [{"type": "video", "video": "clips/", "fps": 2}]}],
        "near_miss_role": [{"role": "robot", "content": "hi"}],
    }
    for name, conv in convs.items():
        put("fuzz_messages", name, json.dumps(conv, ensure_ascii=False))


if __name__ == "__main__":
    main()
