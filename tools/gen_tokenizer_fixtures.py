#!/usr/bin/env python3
"""Reference fixtures for the C++ tokenizer and chat renderer (tests/unit/test_tokenizer.cpp, test_chat.cpp).

Uses Hugging Face `tokenizers` on the real Qwen3-Omni tokenizer.json and writes
tests/fixtures/tokenizer/cases.json:
  encode:        [{text, ids, ids_split_special, decode, decode_skip_special}]
                 ids_split_special: encode with encode_special_tokens=True (special added tokens in the text
                 are tokenized as plain text; non-special added tokens such as <think> still match)
  decode:        [{ids, decode, decode_skip_special}]  id sequences that cut UTF-8 characters apart
  chat:          [{system, text, audio_tokens, rendered, ids}]  ChatML built as a string, then encoded
  flags:         [{text, ids, ids_split_special, decode}] for flags_tokenizer.json, a small tokenizer (the first
                 ids of the real vocabulary and the merges among them) whose added tokens use lstrip, rstrip,
                 single_word and normalized=true, to check that those flags are honoured as HF does
Also copies the tokenizer as tests/fixtures/tokenizer/tokenizer.json.xz (xz -9) + tokenizer_config.json.

Seeded and re-runnable: python3 tools/gen_tokenizer_fixtures.py [--tokenizer-dir DIR] [--out DIR]
"""
import argparse
import json
import lzma
import os
import random
import shutil
import unicodedata

from fixturelib.tokenizer_file import committed_tokenizer_dir
from tokenizers import Tokenizer

SEED = 1234

# Hand-picked cases, each aimed at one rule of the pre-tokenizer, normalizer or added-token matcher.
FIXED = [
    "", " ", "  ", "a", "Hello world", "Hello, world!", "hello  world", "The quick brown fox jumps over the lazy dog.",
    "I'm here; you're there, they've gone, we'll see, he'd know, it's fine, don't.",
    "I'M HERE; YOU'RE THERE, THEY'VE GONE, WE'LL SEE, HE'D KNOW, IT'S FINE, DON'T.",
    "It'S 'Ll 'lL 'Re 'rE 'Ve 'vE 'M 'D 'T", "'s", "'S", "'", "''", "'''s", "' s", "'sam", "'llama", "'x",
    "rock'n'roll", "O'Neil's", "‘curly’ quotes’s", "'ſ", "'K", "\u212a",
    "1", "12", "123", "1234567890", "3.14159", "-42", "1,000,000", "x2", "2x", "٣٤٥", "Ⅻ", "½ ¾", "²³",
    "9" * 100, "007", "v1.2.3-beta+45",
    "def f(x):\n\treturn x + 1\n", "if (a) {\n    b();\n}\n", "\tindented\n\t\tmore\n", "    four spaces",
    "for i in range(10):\n        print(i)  # comment\n", "x = [1, 2, 3]\ny = {'a': 1}",
    "trailing space ", "trailing spaces   ", "   leading", "a    b", "a\t\tb", " \t \t ", "\n", "\n\n", "\n\n\n",
    "\r\n", "a\r\nb\r\n", "a\rb", "line1\rline2\r", "a \n b", "a  \n\n  b", "end\n  ", " \n ", "x\n\ty",
    "\u3000全角スペース\u3000", "a\u00a0b", "a\u2003b", "a\u2028b", "a\u2029b", "a\u0085b", "a\u200bb", "a\u180eb",
    "a\u202fb", "a\u205fb", "a\u1680b", "a\x0bb\x0cc", "\x1c\x1d\x1e\x1f", "a\x1cb", "a \x1c b",
    "\x00", "a\x00b", "\x01\x02\x03\x7f", "bell\x07", "\x1b[31mred\x1b[0m",
    "你好，世界！", "我爱自然语言处理。今天天气很好。", "中文English混合123", "漢字かなカナ", "こんにちは、世界。",
    "カタカナとひらがな", "ｈａｌｆ／ｆｕｌｌ　ｗｉｄｔｈ", "안녕하세요 세계", "한국어 텍스트입니다.",
    "مرحبا بالعالم", "السَّلَامُ عَلَيْكُمْ", "שלום עולם", "עִבְרִית", "नमस्ते दुनिया", "हिन्दी में लिखा गया पाठ।",
    "क्षत्रिय", "สวัสดีชาวโลก", "ภาษาไทย", "Привет, мир!", "Ελληνικά", "Zürich, Köln, Ærøskøbing",
    "naïve café résumé", "ǅ ǈ ǋ", "ﬁ ﬂ ﬀ", "ß ẞ",
    "😀", "😀😃😄", "👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "👩🏿‍💻", "🇺🇸🇯🇵🇩🇪", "🇺", "❤️", "☺︎", "1️⃣", "hi 👋 there",
    "e\u0301", "\u00e9", "cafe\u0301", "caf\u00e9", "A\u030a", "\u212b", "\u1e9b\u0323", "n\u0303o", "\u0041\u0308\u0304",
    "\u1100\u1161\u11a8", "\uac01", "ﾊﾟ", "e\u0301\u0301\u0301",
    "∀x∈ℝ: x² ≥ 0", "∑_{i=1}^{n} i = n(n+1)/2", "√2 ≈ 1.414", "α+β=γ", "→ ⇒ ↔", "½ + ¼ = ¾", "∞",
    "<|im_start|>user\nhi<|im_end|>", "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>assistant\n",
    "<|audio_pad|>", "<|audio_pad|>" * 5, "<|audio_start|>" + "<|audio_pad|>" * 13 + "<|audio_end|>",
    "x<|audio_pad|>y", " <|im_end|> ", "<|im_start", "<|im_start|", "im_start|>", "<|im_end|<|im_end|>",
    "<<|im_start|>>", "<|endoftext|>", "<|endoftext|><|endoftext|>", "<think>\nreasoning\n</think>\n\nanswer",
    "<tool_call>{\"name\": \"f\"}</tool_call>", "<|fim_prefix|>a<|fim_suffix|>b<|fim_middle|>", "<tts_pad><tts_text_bos>",
    "<tts_text_eod><tts_text_bos_single>", "<|vision_start|><|image_pad|><|vision_end|>", "<|IM_START|>", "<| im_start |>",
    "e\u0301<|im_end|>\u0301", "<|im_end|>\u0301",
    "supercalifragilisticexpialidocious", "Pneumonoultramicroscopicsilicovolcanoconiosis" * 3, "a" * 500,
    "ab" * 300, "x" * 1000 + " y", "_" * 80, "=" * 64, "-" * 100, "." * 50, "!!!???", "...", "—–-",
    "https://example.com/path?q=1&r=2#frag", "user@example.com", "C:\\Users\\name\\file.txt", "@mention #hashtag",
    "$100.00 €50 £20 ¥1000", "100%", "3pm-5pm", "snake_case camelCase PascalCase kebab-case SCREAMING_CASE",
    "<html><body class=\"x\">text</body></html>", "SELECT * FROM t WHERE a = 'b';", "{\"key\": [1, 2.5, null, true]}",
    "a\u0300\u0301\u0302\u0303\u0304", "\u0301leading mark", "Ａ", "ｶﾀｶﾅ", "\ufeffBOM", "\ufffd", "\U0010ffff",
    "\ue000private", "\U0001d400\U0001d401", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
    # Where HF's Unicode data differs from utf8proc's (tools/gen_unicode_compat_tables.py): letters and
    # digits new in Unicode 16 (regex), marks and composites HF's NFC (Unicode 9 data) does not know.
    "a\u1c89b", "x\ua7cb\ua7dc y", "\U00010d40\U00010d41 \U00010d4a", "y\u08d1\u0328", "a\u1ac0\u0301",
    "e\u1ace\u0301\u0328", "\U00011935\U00011930", "\U00011938", "q\u0898\u0328 e\u0301",
]

# Fragments for seeded random mixtures (cover transitions between classes).
FRAGMENTS = [
    "hello", "World", "'s", "'LL", "'re", " ", "  ", "\t", "\n", "\r\n", "\r", "\n\n", "   \n", "123", "4", "3.5",
    ",", ".", "!", "?", "(", ")", "[]", "{}", "\"", "'", "-", "_", "/", "\\", "#", "@", "&", "*", "+", "=",
    "你好", "世界", "こんにちは", "カタカナ", "한국", "مرحبا", "שלום", "नमस्ते", "สวัสดี", "Привет", "ελλάδα",
    "😀", "👍🏽", "👨‍👩‍👧", "🇫🇷", "e\u0301", "a\u0308", "\u00a0", "\u3000", "∑", "√", "≥", "<|im_start|>",
    "<|im_end|>", "<|audio_pad|>", "<think>", "<|im_", "|>", "<|", "\x00", "\x1f", "\u200d", "\ufe0f",
]

DECODE_PROBES = ["😀", "👨‍👩‍👧‍👦", "你好世界", "é", "ñandú", "🇺🇸", "ﷺ", "𝔘𝔫𝔦", "ก้", "한국어"]


def build_strings(rng):
    strings = list(FIXED)
    for _ in range(140):
        n = rng.randint(1, 12)
        strings.append("".join(rng.choice(FRAGMENTS) for _ in range(n)))
    # Long prose-like strings with mixed whitespace.
    words = ["alpha", "Beta", "gamma's", "DELTA'S", "epsilon", "42", "zeta", "eta,", "theta.", "iota!"]
    for _ in range(10):
        parts = []
        for _ in range(rng.randint(20, 60)):
            parts.append(rng.choice(words))
            parts.append(rng.choice([" ", " ", " ", "  ", "\n", "\t", " \n", "\r\n"]))
        strings.append("".join(parts))
    # Random code points from all planes: checks the Unicode category tables (letters, numbers, white
    # space) against HF's regex engine, including rarely used and unassigned characters.
    def random_char():
        r = rng.random()
        if r < 0.3:
            return chr(rng.randrange(0x20, 0x7F))
        if r < 0.4:
            return rng.choice(" \t\n\r\u3000\u00a0\u2003")
        if r < 0.85:
            c = rng.randrange(0x80, 0x10000)
            return chr(c) if not 0xD800 <= c < 0xE000 else "x"
        return chr(rng.randrange(0x10000, 0x32000))
    for _ in range(60):
        strings.append("".join(random_char() for _ in range(rng.randint(1, 40))))
    seen, unique = set(), []
    for s in strings:
        if s not in seen:
            seen.add(s)
            unique.append(s)
    return unique


def encode_case(tok, tok_split, text):
    ids = tok.encode(text).ids
    return {
        "text": text,
        "ids": ids,
        "ids_split_special": tok_split.encode(text).ids,
        "decode": tok.decode(ids, skip_special_tokens=False),
        "decode_skip_special": tok.decode(ids, skip_special_tokens=True),
    }


def decode_cases(tok, rng):
    cases = []
    for probe in DECODE_PROBES:
        ids = tok.encode(probe).ids
        for cut in range(1, len(ids) + 1):
            cases.append(ids[:cut])  # prefixes end inside a character
            cases.append(ids[cut - 1:])  # suffixes start inside a character
    for _ in range(40):  # random mixtures of byte tokens, including stray continuation bytes
        cases.append([rng.randrange(0, 256) for _ in range(rng.randint(1, 8))])
    cases.append([151644, 872, 198, 9707, 151645])
    cases.append([9707, 151676, 151999, 152063, 11])  # ids past the vocabulary (the LM head has 152064 rows)
    out = []
    for ids in cases:
        out.append({"ids": ids, "decode": tok.decode(ids, skip_special_tokens=False),
                    "decode_skip_special": tok.decode(ids, skip_special_tokens=True)})
    return out


def render_chat(system, text, audio_tokens):
    s = ""
    if system:
        s += "<|im_start|>system\n" + system + "<|im_end|>\n"
    s += "<|im_start|>user\n"
    if audio_tokens >= 0:
        s += "<|audio_start|>" + "<|audio_pad|>" * audio_tokens + "<|audio_end|>"
    s += text + "<|im_end|>\n<|im_start|>assistant\n"
    return s


def chat_cases(tok):
    sys_long = ("You are Qwen, a virtual human developed by the Qwen Team, Alibaba Group, capable of perceiving "
                "auditory and visual inputs, as well as generating text and speech.")
    triples = [
        ("", "Hello!", -1), ("", "", 5), ("", "What is said in this audio?", 13), (sys_long, "", 26),
        ("You are a helpful voice assistant on a robot. Answer briefly.", "Wie spät ist es?", -1),
        ("Be brief.", "\n\nstarts with newlines", -1), ("  spaced system  ", "  spaced text  ", 0),
        ("系统提示。", "你好，请介绍一下你自己。", 7), ("", "cafe\u0301 naïve 👍🏽", 3), ("", "", -1),
    ]
    out = []
    for system, text, audio in triples:
        rendered = render_chat(system, text, audio)
        out.append({"system": system, "text": text, "audio_tokens": audio, "rendered": rendered,
                    "ids": tok.encode(rendered).ids})
    return out


FLAG_TOKENS = [  # (content, special, lstrip, rstrip, single_word, normalized)
    ("<mask>", True, True, False, False, False),
    ("[R]", True, False, True, False, False),
    ("<both>", False, True, True, False, False),
    ("word", False, False, False, True, False),
    ("caf\u00e9", False, False, False, False, True),
    ("<n>", False, False, False, False, True),
    ("<s>", True, False, False, False, False),
    ("<s>x", True, False, False, False, False),
]

FLAG_TEXTS = [
    "a <mask> b", "a   <mask>b", "<mask>", "  <mask>  ", "x\u3000<mask>", "a [R]   b", "a [R]\n\nb", "[R]",
    "p  <both>  q", "<both><both>", " <mask> <mask> ", "word", "a word b", "words", "sword", "word_x", "(word)",
    "wordword", "wordé", "éword", "café", "cafe\u0301", "CAFÉ café caf\u00e9s", "<n>", "x<n>y",
    "<s>", "<s>x", "<s>xy", "<s><s>x", "a<mask>[R]b", "\tword\t", "1word2", "word\u0301",
]


def flags_tokenizer(real_path, vocab_limit=3000):
    with open(real_path, encoding="utf-8") as f:
        real = json.load(f)
    vocab = {tok: i for tok, i in real["model"]["vocab"].items() if i < vocab_limit}
    merges = []
    for m in real["model"]["merges"]:
        a, b = m if isinstance(m, list) else m.split(" ")
        if a in vocab and b in vocab and a + b in vocab:
            merges.append("%s %s" % (a, b))  # string form here; the real file uses pairs
    added = []
    for k, (content, special, lstrip, rstrip, single_word, normalized) in enumerate(FLAG_TOKENS):
        added.append({"id": vocab_limit + k, "content": content, "single_word": single_word, "lstrip": lstrip,
                      "rstrip": rstrip, "normalized": normalized, "special": special})
    out = dict(real)
    out["added_tokens"] = added
    out["model"] = dict(real["model"], vocab=vocab, merges=merges)
    return out


def flag_cases(flags_path):
    tok = Tokenizer.from_file(flags_path)
    tok_split = Tokenizer.from_file(flags_path)
    tok_split.encode_special_tokens = True
    out = []
    for text in FLAG_TEXTS:
        ids = tok.encode(text).ids
        out.append({"text": text, "ids": ids, "ids_split_special": tok_split.encode(text).ids,
                    "decode": tok.decode(ids, skip_special_tokens=False)})
    return out


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokenizer-dir", default=os.environ.get("OMNI_TOKENIZER_DIR"),
                    help="folder with the real tokenizer.json and tokenizer_config.json "
                         "(default: the committed tests/fixtures/tokenizer, unpacked)")
    ap.add_argument("--out", default=os.path.join(root, "tests", "fixtures", "tokenizer"))
    args = ap.parse_args()
    if not args.tokenizer_dir:
        args.tokenizer_dir = committed_tokenizer_dir()
    tok_path = os.path.join(args.tokenizer_dir, "tokenizer.json")
    tok = Tokenizer.from_file(tok_path)
    tok_split = Tokenizer.from_file(tok_path)
    tok_split.encode_special_tokens = True
    rng = random.Random(SEED)

    strings = build_strings(rng)
    # NFC/NFD twins: every string with a precomposed character also appears decomposed.
    strings += [unicodedata.normalize("NFD", s) for s in strings
                if unicodedata.normalize("NFD", s) != s and unicodedata.normalize("NFD", s) not in strings]
    cases = {
        "source": "tokenizers %s on %s" % (__import__("tokenizers").__version__, "qwen3-omni tokenizer.json"),
        "encode": [encode_case(tok, tok_split, s) for s in strings],
        "decode": decode_cases(tok, rng),
        "chat": chat_cases(tok),
    }
    os.makedirs(args.out, exist_ok=True)
    flags_path = os.path.join(args.out, "flags_tokenizer.json")
    with open(flags_path, "w", encoding="utf-8") as f:
        json.dump(flags_tokenizer(tok_path), f, ensure_ascii=True, separators=(",", ":"))
    cases["flags"] = flag_cases(flags_path)
    with open(os.path.join(args.out, "cases.json"), "w", encoding="utf-8") as f:
        json.dump(cases, f, ensure_ascii=True, indent=0)
        f.write("\n")
    with open(tok_path, "rb") as src:
        data = src.read()
    with open(os.path.join(args.out, "tokenizer.json.xz"), "wb") as dst:
        dst.write(lzma.compress(data, preset=9 | lzma.PRESET_EXTREME))
    shutil.copyfile(os.path.join(args.tokenizer_dir, "tokenizer_config.json"),
                    os.path.join(args.out, "tokenizer_config.json"))
    print("wrote %d encode, %d decode, %d chat, %d flags cases to %s" %
          (len(cases["encode"]), len(cases["decode"]), len(cases["chat"]), len(cases["flags"]), args.out))


if __name__ == "__main__":
    main()
