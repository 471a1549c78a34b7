"""Which local paths a job may read: only those under the configured data roots.

A path is resolved (``realpath``: ``..`` collapsed, every symlink followed) before it is compared
with the roots, so ``root/../etc`` and ``root/link-to-elsewhere`` are refused like ``/etc`` is. A
refused path is :class:`PermissionDenied` whether or not it exists, so callers cannot probe the
server's filesystem; only a path inside the roots can be :class:`NotFound`.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence
from pathlib import Path

from tfic.errors import InvalidArgument, NotFound, PermissionDenied


def check_no_nul(path: str, what: str = "path") -> None:
    """No file system takes a NUL byte in a name (``realpath`` raises ValueError on one): the caller's mistake."""
    if "\x00" in path:
        raise InvalidArgument(f"{what} {path!r} contains a NUL byte, which no path may hold", path=path)


def is_inside(path: str | Path, root: str | Path) -> bool:
    real, top = os.fspath(path), os.fspath(root)
    return os.path.commonpath([real, top]) == top


class DataRoots:
    """The folders jobs may read. Relative paths are taken relative to the first root."""

    def __init__(self, roots: Sequence[str | Path]) -> None:
        self.roots = tuple(Path(os.path.realpath(r)) for r in roots)

    def describe(self) -> str:
        return ", ".join(str(r) for r in self.roots) if self.roots else "none configured (--data-root)"

    def resolve(self, path: str, what: str = "path") -> Path:
        """The real path of ``path`` if it lies inside a root and exists; a TFRecord glob stays a glob."""
        check_no_nul(path, what)
        if not self.roots:
            raise PermissionDenied(
                f"{what} {path!r} is a local path, but this server has no data roots configured (--data-root)",
                path=path,
            )
        given = Path(path)
        absolute = given if given.is_absolute() else self.roots[0] / given
        if glob.has_magic(path):
            real_dir = Path(os.path.realpath(absolute.parent))
            self._check_inside(real_dir, path, what)
            real = real_dir / absolute.name
            if not glob.glob(str(real)):
                raise NotFound(f"{what} {path!r} matches no files", path=path)
            return real
        real = Path(os.path.realpath(absolute))
        self._check_inside(real, path, what)
        if not real.exists():
            raise NotFound(f"{what} {path!r} does not exist", path=path)
        return real

    def _check_inside(self, real: Path, path: str, what: str) -> None:
        if not any(is_inside(real, root) for root in self.roots):
            raise PermissionDenied(f"{what} {path!r} is outside the data roots ({self.describe()})", path=path)

    def check_tree(self, folder: Path, what: str = "path") -> None:
        """Refuse a folder holding a symlink (file or folder) that leads outside the roots."""
        for top, dirs, files in os.walk(folder):
            for name in (*dirs, *files):
                entry = os.path.join(top, name)
                if os.path.islink(entry):
                    real = os.path.realpath(entry)
                    if not any(is_inside(real, root) for root in self.roots):
                        shown = os.path.relpath(entry, folder)
                        raise PermissionDenied(
                            f"{what} {str(folder)!r} holds {shown!r}, a symlink that leads outside the data roots",
                            path=entry,
                        )
