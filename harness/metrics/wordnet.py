"""WordNet 3.0 for METEOR, offline, from Debian's `wordnet-base` + `wordnet-sense-index`.

NLTK reads WordNet only from `<data dir>/corpora/wordnet/`, only under a directory listed in
`nltk.data.path`, only if that directory is private to its owner, and it needs a `lexnames` file
that Debian does not ship. `ensure_wordnet` lays such a copy out once and checks that it loads.
There is no fallback: METEOR without WordNet is a different metric, so a missing WordNet is an
error that says how to install it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

DATA_DIR_ENV = "ROCOBENCH_NLTK_DATA"
SOURCE_ENV = "ROCOBENCH_WORDNET_SOURCE"
DEFAULT_SOURCE = Path("/usr/share/wordnet")
WORDNET_VERSION = "3.0"
INSTALL_HINT = "apt-get install wordnet-base wordnet-sense-index (or run `make install`)"

# The database files NLTK's reader opens; Debian ships all of them (index.sense comes with
# wordnet-sense-index). `lexnames` is written by us.
SOURCE_FILES = (
    "cntlist.rev",
    "index.sense",
    "index.adj",
    "index.adv",
    "index.noun",
    "index.verb",
    "data.adj",
    "data.adv",
    "data.noun",
    "data.verb",
    "adj.exc",
    "adv.exc",
    "noun.exc",
    "verb.exc",
)

# WordNet 3.0 lexicographer files in file-number order (lexnames(5WN)). Each line of `lexnames`
# is "NN<TAB>name<TAB>category" with category 1 noun, 2 verb, 3 adjective, 4 adverb; NLTK
# checks that line i carries number i and uses the names for Synset.lexname().
LEXNAMES = (
    "adj.all", "adj.pert", "adv.all", "noun.Tops", "noun.act", "noun.animal", "noun.artifact",
    "noun.attribute", "noun.body", "noun.cognition", "noun.communication", "noun.event",
    "noun.feeling", "noun.food", "noun.group", "noun.location", "noun.motive", "noun.object",
    "noun.person", "noun.phenomenon", "noun.plant", "noun.possession", "noun.process",
    "noun.quantity", "noun.relation", "noun.shape", "noun.state", "noun.substance", "noun.time",
    "verb.body", "verb.change", "verb.cognition", "verb.communication", "verb.competition",
    "verb.consumption", "verb.contact", "verb.creation", "verb.emotion", "verb.motion",
    "verb.perception", "verb.possession", "verb.social", "verb.stative", "verb.weather",
    "adj.ppl",
)  # fmt: skip
_CATEGORY = {"noun": 1, "verb": 2, "adj": 3, "adv": 4}
_FILES = (*SOURCE_FILES, "lexnames")

# Readers already checked in this process, by resolved corpus directory.
_READERS: dict[Path, WordNetCorpusReader] = {}


class WordNetError(RuntimeError):
    """WordNet is present but unusable (wrong version, refused by NLTK, ...)."""


class WordNetMissing(WordNetError):
    """WordNet 3.0 is not installed where we copy it from, and no ready copy exists."""


def lexnames_text() -> str:
    return "".join(
        f"{i:02d}\t{name}\t{_CATEGORY[name.split('.')[0]]}\n" for i, name in enumerate(LEXNAMES)
    )


def default_data_dir() -> Path:
    env = os.environ.get(DATA_DIR_ENV)
    return Path(env) if env else Path.home() / ".cache" / "rocobench" / "nltk_data"


def default_source() -> Path:
    env = os.environ.get(SOURCE_ENV)
    return Path(env) if env else DEFAULT_SOURCE


def ensure_wordnet(data_dir: Path | None = None, source: Path | None = None) -> Path:
    """Make WordNet 3.0 loadable by NLTK from `data_dir` and return `data_dir`.

    Idempotent: copies `source` (default `$ROCOBENCH_WORDNET_SOURCE` or /usr/share/wordnet) to
    `<data_dir>/corpora/wordnet` only when no complete copy exists, puts `data_dir` first on
    `nltk.data.path` and checks that WordNet 3.0 loads from there.
    """
    data_dir = _absolute(data_dir)
    _prepare(data_dir, source)
    return data_dir


def wordnet_reader(data_dir: Path | None = None, source: Path | None = None) -> WordNetCorpusReader:
    """The checked WordNet 3.0 reader for `data_dir`, prepared as `ensure_wordnet` does.

    METEOR is given this reader explicitly, so it never scores against another WordNet that
    happens to sit earlier on NLTK's search path.
    """
    return _prepare(_absolute(data_dir), source)


def _absolute(data_dir: Path | None) -> Path:
    return Path(data_dir if data_dir is not None else default_data_dir()).expanduser().absolute()


def _prepare(data_dir: Path, source: Path | None) -> WordNetCorpusReader:
    target = data_dir / "corpora" / "wordnet"
    if not _complete(target):
        _materialise(Path(source) if source is not None else default_source(), target)
    # Every call: NLTK checks each file it opens against nltk.data.path, lazily.
    _register(data_dir)
    key = target.resolve()
    if key not in _READERS:
        reader = _load(data_dir, key, share=data_dir == _absolute(None))
        version = reader.get_version()
        if version != WORDNET_VERSION:
            raise WordNetError(f"{key} holds WordNet {version}; METEOR here needs WordNet 3.0")
        if not reader.synsets("dog"):
            raise WordNetError(f"WordNet at {key} loads but finds no synsets for 'dog'")
        _READERS[key] = reader
    return _READERS[key]


def _complete(target: Path) -> bool:
    return all((target / name).is_file() for name in _FILES)


def _materialise(source: Path, target: Path) -> None:
    missing = [name for name in SOURCE_FILES if not (source / name).is_file()]
    if missing:
        what = "directory is absent" if not source.is_dir() else f"lacks {', '.join(missing)}"
        raise WordNetMissing(
            f"WordNet 3.0 not found: {source} {what}; install it with {INSTALL_HINT}"
        )
    # NLTK refuses data under directories that others can write to, whatever the umask.
    target.parent.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    target.parent.mkdir(mode=0o755, exist_ok=True)
    # Built beside the target and renamed into place, so a crash never leaves a half copy.
    staging = Path(tempfile.mkdtemp(prefix=".wordnet-", dir=target.parent))
    try:
        for name in SOURCE_FILES:
            shutil.copyfile(source / name, staging / name)
        (staging / "lexnames").write_text(lexnames_text(), encoding="utf-8")
        for path in staging.iterdir():
            path.chmod(0o644)
        staging.chmod(0o755)
        _swap_in(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _swap_in(staging: Path, target: Path) -> None:
    old = None
    if target.exists():  # an incomplete copy: set it aside, remove it once the new one is in
        old = Path(tempfile.mkdtemp(prefix=".wordnet-old-", dir=target.parent)) / "wordnet"
        target.rename(old)
    try:
        staging.rename(target)
    except OSError:
        if not _complete(target):  # else another process won the race with a complete copy
            raise
    finally:
        if old is not None:
            shutil.rmtree(old.parent, ignore_errors=True)


def _register(data_dir: Path) -> None:
    import nltk

    entry = str(data_dir)
    if entry in nltk.data.path:
        nltk.data.path.remove(entry)
    nltk.data.path.insert(0, entry)


def _load(data_dir: Path, target: Path, share: bool) -> WordNetCorpusReader:
    import nltk
    from nltk.corpus import wordnet as shared
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    # A shared `nltk.corpus.wordnet` already loaded from our copy is reused. It is not loaded
    # for us: its reader spends most of its load mapping WordNet onto the Open Multilingual
    # Wordnet's version, which METEOR never uses.
    if (
        share
        and isinstance(shared, WordNetCorpusReader)
        and Path(shared.root.path).resolve() == target
    ):
        return shared
    try:
        root = nltk.data.find("corpora/wordnet", paths=[str(data_dir)])
    except LookupError as exc:
        raise WordNetError(
            f"NLTK refuses to read {target}: {data_dir} or a directory below it is writable by "
            "others or owned by another account (make it private: chmod go-w)"
        ) from exc

    class EnglishWordNet(WordNetCorpusReader):
        """NLTK's reader without its map to the multilingual wordnets' version: NLTK builds it
        whenever the version read ("3.0") differs from the corpus name ("wordnet"), mapping the
        corpus onto itself — about 4 of 5 seconds of loading, for data that only the
        multilingual lookups read (`map30`)."""

        def map_wn(self, version: str = "wordnet") -> None:
            return None

    with warnings.catch_warnings():
        # English-only reader: METEOR needs no Open Multilingual Wordnet.
        warnings.filterwarnings("ignore", message="The multilingual functions")
        return EnglishWordNet(root, None)
