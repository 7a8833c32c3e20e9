"""The Qwen3-Omni tokenizer the repository commits (tests/fixtures/tokenizer/), unpacked for the generators."""
import lzma
import os
import shutil
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COMMITTED = os.path.join(REPO, "tests", "fixtures", "tokenizer")


def committed_tokenizer_dir():
    """A temporary folder with tokenizer.json (unpacked from tokenizer.json.xz) and tokenizer_config.json."""
    out = tempfile.mkdtemp(prefix="omni_tokenizer_")
    with lzma.open(os.path.join(COMMITTED, "tokenizer.json.xz")) as src, \
            open(os.path.join(out, "tokenizer.json"), "wb") as dst:
        shutil.copyfileobj(src, dst)
    shutil.copy(os.path.join(COMMITTED, "tokenizer_config.json"), out)
    return out
