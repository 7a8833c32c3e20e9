#!/usr/bin/env python3
"""Writes engine/src/tokenizer/unicode_compat_tables.h: where Hugging Face `tokenizers` disagrees with libutf8proc.

The C++ tokenizer takes Unicode data from libutf8proc (Unicode 15.0 in Debian's 2.8). HF `tokenizers`
uses two other sources, each of its own Unicode version:
  * the Split regex runs on Oniguruma (Unicode 16.0 in tokenizers 0.23): \\p{L} / \\p{N} also cover
    characters that utf8proc still lists as unassigned;
  * the NFC normalizer uses the `unicode-normalization-alignments` crate (Unicode 9.0 data): combining
    marks and composites added later are unknown to it, so it neither reorders nor composes them.
HF is used here as the oracle: every code point is probed through HF's pre-tokenizer and normalizer and
compared with what utf8proc says (read through ctypes). The differences become two tables:
  kRegexClassOverrides  code-point ranges whose regex class (letter / number / other) differs,
  kNfcOpaque            code points HF's NFC does not know: they act as starters without decomposition,
                        so the C++ side normalizes the text between them separately.
The model is then checked against HF on all probes (and fails loudly if it does not reproduce HF).

Usage: python3 tools/gen_unicode_compat_tables.py [--tokenizer PATH] [--out engine/src/tokenizer/unicode_compat_tables.h]
"""
import argparse
import ctypes
import os
import sys

from fixturelib.tokenizer_file import committed_tokenizer_dir
from tokenizers import Tokenizer, normalizers

STABLE, COMPOSE, DECOMPOSE = 1 << 1, 1 << 3, 1 << 4
WHITE_SPACE = set([*range(9, 14), 0x20, 0x85, 0xA0, 0x1680, *range(0x2000, 0x200B), 0x2028, 0x2029, 0x202F,
                   0x205F, 0x3000])
PROBE_MARKS = ["\u0334", "\u0328", "\u0316", "\u0301", "\u0345", "\u05b0", "\u0e38"]  # ccc 1, 202, 220, 230, 240, 10, 103


class Utf8proc:
    def __init__(self):
        self.lib = ctypes.CDLL("libutf8proc.so.2")
        self.lib.utf8proc_get_property.restype = ctypes.POINTER(ctypes.c_int16 * 2)  # category, combining_class
        self.lib.utf8proc_get_property.argtypes = [ctypes.c_int32]
        self.lib.utf8proc_map.argtypes = [ctypes.c_char_p, ctypes.c_ssize_t, ctypes.POINTER(ctypes.c_void_p),
                                          ctypes.c_int]
        self.lib.utf8proc_map.restype = ctypes.c_ssize_t
        self.lib.utf8proc_version.restype = ctypes.c_char_p
        self.libc = ctypes.CDLL(None)

    def category(self, cp):
        return self.lib.utf8proc_get_property(cp).contents[0]

    def ccc(self, cp):
        return self.lib.utf8proc_get_property(cp).contents[1]

    def _map(self, s, options):
        data = s.encode("utf-8", "surrogatepass")
        out = ctypes.c_void_p()
        n = self.lib.utf8proc_map(data, len(data), ctypes.byref(out), options)
        if n < 0:
            raise RuntimeError("utf8proc_map failed on %r" % s)
        result = ctypes.string_at(out, n).decode("utf-8")
        self.libc.free(out)
        return result

    def nfc(self, s):
        return self._map(s, STABLE | COMPOSE)

    def nfd(self, s):
        return self._map(s, STABLE | DECOMPOSE)


def utf8proc_class(u, cp):
    """The class the C++ pre-tokenizer derives from utf8proc (pretokenize.cpp classify())."""
    if cp in WHITE_SPACE:
        return "W"
    cat = u.category(cp)
    if 1 <= cat <= 5:  # Lu Ll Lt Lm Lo
        return "L"
    if 9 <= cat <= 11:  # Nd Nl No
        return "N"
    return "O"


def hf_class(pre_tokenizer, cp):
    c = chr(cp)
    if len(pre_tokenizer.pre_tokenize_str(c + c)) == 2:
        return "N"  # \p{N} matches one character at a time
    if len(pre_tokenizer.pre_tokenize_str("a" + c)) == 1:
        return "L"
    if len(pre_tokenizer.pre_tokenize_str("!" + c)) == 1:
        return "O"
    return "W"


def to_ranges(items):
    """[(cp, value)] sorted by cp → [(lo, hi, value)] of consecutive runs."""
    ranges = []
    for cp, value in items:
        if ranges and ranges[-1][1] == cp - 1 and ranges[-1][2] == value:
            ranges[-1][1] = cp
        else:
            ranges.append([cp, cp, value])
    return ranges


def code_points():
    return (cp for cp in range(0x110000) if not 0xD800 <= cp < 0xE000)


def regex_overrides(u, pre_tokenizer):
    diffs = []
    for cp in code_points():
        if cp in (0x0A, 0x0D):
            continue  # CR/LF are handled by the regex itself
        mine, theirs = utf8proc_class(u, cp), hf_class(pre_tokenizer, cp)
        if mine != theirs:
            if "W" in (mine, theirs):
                sys.exit("white-space disagreement at U+%04X (%s vs HF %s): not modelled" % (cp, mine, theirs))
            diffs.append((cp, theirs))
    return to_ranges(diffs)


def nfc_model(u, opaque, s):
    """The C++ normalization: utf8proc NFC of the text between code points HF's NFC does not know."""
    out, segment = [], []
    for ch in s:
        if ord(ch) in opaque:
            out.append(u.nfc("".join(segment)))
            out.append(ch)
            segment = []
        else:
            segment.append(ch)
    out.append(u.nfc("".join(segment)))
    return "".join(out)


def nfc_opaque(u, hf_nfc):
    candidates = set()
    for cp in code_points():
        c = chr(cp)
        decomposed = u.nfd(c)
        if u.ccc(cp) != 0 or decomposed != c:
            candidates.add(cp)
            candidates.update(ord(x) for x in decomposed)

    def probes(cp):
        c = chr(cp)
        return [c, "a" + c, u.nfd(c)] + ["a" + m + c for m in PROBE_MARKS] + ["a" + c + m for m in PROBE_MARKS]

    opaque = set()
    for cp in sorted(candidates):
        if any(hf_nfc.normalize_str(p) != u.nfc(p) for p in probes(cp)):
            opaque.add(cp)
            # A composite HF does not know: its parts are new too (Unicode's composition stability), and
            # utf8proc would compose them back.
            decomposed = u.nfd(chr(cp))
            if decomposed != chr(cp):
                opaque.update(ord(x) for x in decomposed)
    failures = [cp for cp in sorted(candidates)
                if any(hf_nfc.normalize_str(p) != nfc_model(u, opaque, p) for p in probes(cp))]
    if failures:
        sys.exit("NFC model does not reproduce HF for: " + " ".join("U+%04X" % cp for cp in failures[:20]))
    return sorted(opaque), len(candidates)


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokenizer", default=os.environ.get("OMNI_TOKENIZER"),
                    help="the real tokenizer.json (default: the committed tests/fixtures/tokenizer, unpacked)")
    ap.add_argument("--out", default=os.path.join(root, "engine", "src", "tokenizer", "unicode_compat_tables.h"))
    args = ap.parse_args()
    if not args.tokenizer:
        args.tokenizer = os.path.join(committed_tokenizer_dir(), "tokenizer.json")

    import tokenizers
    u = Utf8proc()
    tok = Tokenizer.from_file(args.tokenizer)
    regex = regex_overrides(u, tok.pre_tokenizer)
    opaque, n_candidates = nfc_opaque(u, normalizers.NFC())
    kind = {"L": "CharClass::kLetter", "N": "CharClass::kNumber", "O": "CharClass::kOther"}

    lines = [
        "// Generated by tools/gen_unicode_compat_tables.py (do not edit): where HF `tokenizers` %s" % tokenizers.__version__,
        "// disagrees with libutf8proc %s. See that script for how each table was measured." %
        u.lib.utf8proc_version().decode(),
        "#pragma once",
        "#include <cstdint>",
        "",
        "namespace omni::unicode_compat {",
        "",
        "enum class CharClass : uint8_t { kLetter, kNumber, kSpace, kOther };",
        "",
        "struct ClassRange {",
        "  char32_t lo, hi;",
        "  CharClass cls;",
        "};",
        "",
        "// Regex \\p{L} / \\p{N} (Oniguruma's Unicode data) where utf8proc's category says otherwise.",
        "inline constexpr ClassRange kRegexClassOverrides[] = {",
    ]
    for lo, hi, cls in regex:
        lines.append("    {0x%04X, 0x%04X, %s}," % (lo, hi, kind[cls]))
    lines += [
        "};",
        "",
        "// Code points HF's NFC (Unicode 9.0 data) does not know, of the %d utf8proc knows to reorder or" % n_candidates,
        "// (de)compose: they must neither move, decompose nor compose.",
        "inline constexpr char32_t kNfcOpaque[] = {",
    ]
    for i in range(0, len(opaque), 8):
        lines.append("    " + " ".join("0x%04X," % cp for cp in opaque[i:i + 8]))
    lines += ["};", "", "}  // namespace omni::unicode_compat", ""]
    with open(args.out, "w") as f:
        f.write("\n".join(lines))
    print("wrote %s: %d regex ranges, %d NFC-opaque code points" % (args.out, len(regex), len(opaque)))


if __name__ == "__main__":
    main()
