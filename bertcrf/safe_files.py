"""Writing outputs without losing anything: an output is never one of the command's inputs, and a file or folder
appears in its place only once complete. It is written beside its target under a temporary name (same folder, so
same file system) and renamed into place with `os.replace`, which is atomic: an interrupted or failed run leaves
whatever stood there before, and removes its temporary file. Shared by tag.py, export_onnx.py, trim_vocab.py,
convert_e5.py and the predictions files and model card of run_ner.py and distill.py."""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
from pathlib import Path
from typing import IO, Callable, Iterable, Iterator, Mapping


def same_path(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether `a` and `b` name the same file or folder: the same path once symlinks and `..` are resolved, or
    the same inode (a hard link, a bind mount)."""
    if Path(a).resolve() == Path(b).resolve():
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist
        return False


def within(path: str | os.PathLike, folder: str | os.PathLike) -> bool:
    """Whether `path` is `folder` or lies anywhere below it."""
    resolved = Path(path).resolve()
    return any(same_path(p, folder) for p in (resolved, *resolved.parents))


def check_not_input(output: str | os.PathLike, inputs: Mapping[str, str | os.PathLike | None], option: str) -> None:
    """A ValueError when the output file `output` is one of `inputs` (option -> path; None for an unused one)."""
    for name, path in inputs.items():
        if path is not None and same_path(output, path):
            raise ValueError(
                f"{option} {output} is the {name} file ({path}: the same file by path, link or inode): writing "
                f"it would destroy what is being read. Choose another {option}"
            )


def check_output_folder(
    output: str | os.PathLike, inputs: Mapping[str, str | os.PathLike | None], option: str, overwrite: bool
) -> None:
    """Refuse an output folder that is, or holds, one of `inputs` (option -> path), that is a file, or that holds
    anything unless `overwrite` (it is then replaced as a whole once the new one is complete, see `staged_folder`)."""
    folder = Path(output)
    for name, path in inputs.items():
        if path is not None and within(path, folder):
            where = "is" if same_path(path, folder) else "holds"
            raise ValueError(
                f"{option} {output} {where} the {name} {path}: writing there would overwrite or remove it. "
                f"Choose another {option}"
            )
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{option} {output} is a file, not a folder")
    if folder.is_dir() and not overwrite:
        found = [p.name for p in folder.iterdir()]
        if found:
            raise ValueError(
                f"{option} {output} is not empty ({listing(found)}): pass --overwrite to replace it as a whole once the new "
                f"one is complete, or choose another {option}"
            )


def current_umask() -> int:
    """The process's umask (new files get 0o666 & ~umask, new folders 0o777 & ~umask)."""
    umask = os.umask(0)
    os.umask(umask)
    return umask


@contextlib.contextmanager
def atomic_write(
    path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8", newline: str | None = None
) -> Iterator[IO]:
    """Open `path` for writing through a temporary file beside it, renamed over `path` when the block completes
    and removed if it fails or is interrupted. A symlink is followed (its target is replaced); an existing file
    keeps its permissions, a new one gets the usual ones. Something that is not a regular file (/dev/null, a
    pipe) is written directly."""
    target = Path(os.path.realpath(path))
    binary = "b" in mode
    if target.exists() and not target.is_file():
        with open(target, mode, encoding=None if binary else encoding, newline=None if binary else newline) as f:
            yield f
        return
    if not target.parent.is_dir():
        raise FileNotFoundError(f"{path}: no such folder {target.parent}")
    permissions = stat.S_IMODE(target.stat().st_mode) if target.exists() else 0o666 & ~current_umask()
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(
            handle, mode, encoding=None if binary else encoding, newline=None if binary else newline
        ) as stream:
            yield stream
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, permissions)
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def write_text(path: str | os.PathLike, text: str) -> None:
    """`Path.write_text(text, encoding="utf-8")`, atomically (see `atomic_write`)."""
    with atomic_write(path) as stream:
        stream.write(text)


def copy_file(source: str | os.PathLike, target: str | os.PathLike) -> None:
    """`shutil.copyfile`, atomically (see `atomic_write`)."""
    with open(source, "rb") as original, atomic_write(target, "wb") as copy:
        shutil.copyfileobj(original, copy)


@contextlib.contextmanager
def staged_folder(output: str | os.PathLike, publish: Callable[[Path, Path], None] | None = None) -> Iterator[Path]:
    """A new empty folder beside `output` to write into. When the block completes it becomes `output` (renamed
    into place; a folder that stood there is removed after, see `check_output_folder` for when that is allowed),
    or `publish(staging, target)` moves it there (export_onnx.py merges file by file); when the block or the move
    fails or is interrupted, the staging folder is removed and `output` stays as it was."""
    target = Path(output).resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent))
    try:
        yield staging
        os.chmod(staging, 0o777 & ~current_umask())  # mkdtemp makes it private
        (publish or replace_folder)(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def replace_folder(new: Path, target: Path) -> None:
    """Rename the complete folder `new` to `target`; a folder already there is moved aside first and removed after,
    so that `target` is at every moment either the old folder or the new one."""
    if not target.exists():
        os.replace(new, target)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
    os.replace(target, old / target.name)
    try:
        os.replace(new, target)
    except BaseException:
        os.replace(old / target.name, target)
        raise
    finally:
        if target.exists():
            shutil.rmtree(old, ignore_errors=True)


def listing(names: Iterable[str], limit: int = 5) -> str:
    """`a, b, c and 3 more`."""
    names = sorted(names)
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")
