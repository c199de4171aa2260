"""Where the Debian text packages put their files, and the one error when one is missing.

    >>> from clbench.data.debian import find_file, DICTD
    >>> find_file(DICTD, "freedict-eng-fra.index", package_name="freedict-eng-fra")
    PosixPath('/usr/share/dictd/freedict-eng-fra.index')
    >>> find_file(DICTD, "freedict-eng-fra.index", "/nowhere", "freedict-eng-fra")
    Traceback (most recent call last):
    clbench.errors.DataError: no freedict-eng-fra.index in /nowhere/dictd/ or /nowhere/; apt-get install dict-freedict-eng-fra (as root), or pass --data-root DIR with the file in DIR/dictd/

Each source is a :class:`Source`: a sub-folder name, the system folder Debian installs into and
the package that installs there. A file ``name`` is looked for, first hit wins, in

    data_root=None     DEFAULT_DATA_ROOT/<sub>/name, then <system>/name
    data_root=DIR      DIR/<sub>/name, then DIR/name       (the system folder is not searched)

so an explicit ``data_root`` (``--data-root``, or a test's ``tmp_path``) is hermetic. A missing
file raises one line naming the file, where it was looked for, and the ``apt-get install``
command that provides it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from clbench.data.base import DEFAULT_DATA_ROOT
from clbench.errors import DataError


@dataclass(frozen=True)
class Source:
    """A folder of files one Debian package (or a family of them) installs."""

    sub: str          # sub-folder under a data root
    system: Path      # where Debian installs the files
    package: str      # what to apt-get install; ``{name}`` is filled by :meth:`package_for`

    def package_for(self, name: str) -> str:
        return self.package.format(name=name)


DICTD = Source("dictd", Path("/usr/share/dictd"), "dict-{name}")
WORDNET = Source("wordnet", Path("/usr/share/wordnet"), "wordnet-base")
FORTUNES = Source("fortunes", Path("/usr/share/games/fortunes"), "fortunes")
BIBLE = Source("bible-kjv", Path("/usr/lib"), "bible-kjv-text")


def candidates(source: Source, data_root: Path | str | None = None) -> list[Path]:
    """The folders searched for ``source``'s files, in order (see the module docstring)."""
    if data_root is None:
        return [DEFAULT_DATA_ROOT / source.sub, source.system]
    root = Path(data_root).expanduser()
    return [root / source.sub, root]


def find_file(source: Source, name: str, data_root: Path | str | None = None,
              package_name: str = "") -> Path:
    """The first existing ``<folder>/name`` over :func:`candidates`; a :class:`DataError`
    naming the ``apt-get install`` command when none exists. ``package_name`` fills
    ``{name}`` in the package (``freedict-eng-fra`` -> ``dict-freedict-eng-fra``)."""
    folders = candidates(source, data_root)
    for folder in folders:
        if (folder / name).is_file():
            return folder / name
    where = " or ".join(f"{f}/" for f in folders)
    raise DataError(
        f"no {name} in {where}; apt-get install {source.package_for(package_name)} "
        f"(as root), or pass --data-root DIR with the file in DIR/{source.sub}/"
    )


def read_bytes(path: Path) -> bytes:
    """The bytes of ``path``; an unreadable file is a one-line :class:`DataError`."""
    try:
        return path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror}); check its permissions") from None
