"""Replace a rendered site in one step: readers see the old site or the new one, never a mix.

The new site is written into a hidden folder beside the old one (`.site.new-XXXX`), then the two
are exchanged with one `renameat2(RENAME_EXCHANGE)` call where Linux offers it, else with two
renames (the old site moved aside, the new one moved in: a moment with no site, never a mixed
one). An interrupted render leaves only hidden `.site.new-*` / `.site.old-*` folders, which the
next render removes. The old site's thumbnails are hard-linked into the new one: they are
content-addressed and slow to make.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from harness.records.store import default_mode

# What `render` writes; a folder holding anything else is not replaced (think `-o .`).
SITE_ENTRIES = frozenset({"index.html", "results.json", "results.csv", "v", "thumbs"})
_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


class SiteFolderError(ValueError):
    """The output folder holds files that are not a rendered site."""


def _foreign(folder: Path) -> list[str]:
    """Entries of `folder` that `render` did not write (hidden temporary files excepted)."""
    return sorted(
        p.name
        for p in folder.iterdir()
        if p.name not in SITE_ENTRIES and not (p.name.startswith(".") and p.name.endswith(".tmp"))
    )


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux renameat2); False where the call is unavailable."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    libc = ctypes.CDLL(name, use_errno=True)
    if not hasattr(libc, "renameat2"):
        return False
    rc = libc.renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if rc == 0:
        return True
    errno = ctypes.get_errno()
    if errno in (22, 38, 95):  # EINVAL, ENOSYS, EOPNOTSUPP: file system without exchange
        return False
    raise OSError(errno, os.strerror(errno), str(b))


def _link_tree(src: Path, dst: Path) -> None:
    def link(s: str, d: str) -> None:
        try:
            os.link(s, d)
        except OSError:
            shutil.copy2(s, d)

    shutil.copytree(src, dst, copy_function=link, dirs_exist_ok=True)


def clean_strays(final: Path) -> None:
    """Remove what interrupted renders of `final` left beside it."""
    for prefix in (f".{final.name}.new-", f".{final.name}.old-"):
        for stray in final.parent.glob(f"{prefix}*"):
            if stray.is_dir() and not stray.is_symlink():
                shutil.rmtree(stray, ignore_errors=True)
    if final.is_dir():
        for tmp in final.rglob(".*.tmp"):
            if tmp.is_file():
                tmp.unlink(missing_ok=True)


@contextmanager
def new_site(final: Path) -> Iterator[Path]:
    """A fresh folder to render into; on success it becomes `final` in one step."""
    final = Path(os.path.realpath(final))  # a symlinked site: swap its target, keep the link
    if final.exists() and not final.is_dir():
        raise SiteFolderError(f"{final}: exists and is not a folder")
    if final.is_dir():
        foreign = _foreign(final)
        if foreign:
            shown = ", ".join(foreign[:3]) + (", …" if len(foreign) > 3 else "")
            raise SiteFolderError(
                f"{final}: holds files that are not part of a rendered site ({shown}); "
                "render into a new or empty folder"
            )
    final.parent.mkdir(parents=True, exist_ok=True)
    clean_strays(final)
    new = Path(tempfile.mkdtemp(prefix=f".{final.name}.new-", dir=final.parent))
    os.chmod(new, default_mode(directory=True))  # mkdtemp makes 0700
    try:
        if (final / "thumbs").is_dir():
            _link_tree(final / "thumbs", new / "thumbs")
        yield new
        if not final.exists():
            os.rename(new, final)
        elif _exchange(new, final):
            pass  # `new` now holds the old site; removed below
        else:
            old = Path(tempfile.mkdtemp(prefix=f".{final.name}.old-", dir=final.parent))
            os.rename(final, old / "site")
            os.rename(new, final)
            new = old
    finally:
        shutil.rmtree(new, ignore_errors=True)
