"""FileSystemStorage: write a temporary file beside the target, then publish it.

The encoded bytes go to a hidden, uniquely named file in the target's folder; only a
complete file is then put in place: ``os.link`` for a new name (it fails if another
writer took the name, so it never overwrites a file this save did not write) or
``os.replace`` where the storage overwrites (``allow_overwrite``) and for rewrites.
Both are atomic on one filesystem, so a reader, a failed save or a process killed
at any moment sees the old file or the new one, never a partial one. What a killed
process can leave is its temporary file, named ``.layered-<random>.partial``, which
``LayeredStorage.listdir`` does not list.
"""

from __future__ import annotations

import contextlib
import errno
import os

from django.core.files.storage import FileSystemStorage, Storage

try:
    from django.utils._os import safe_makedirs
except ImportError:  # Django < 5.1
    safe_makedirs = None  # type: ignore[assignment]

from layered_storage.backends.base import Backend, NameTakenError, partial_name
from layered_storage.streams import (
    WHOLE_READ,
    ByteStream,
    ProducerStream,
    WholeStream,
    read_exactly,
)

#: errno values of a filesystem that has no hard links (some FUSE, FAT, SMB mounts).
_NO_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV, errno.EMLINK}


def handles(inner: Storage) -> bool:
    """Return whether ``inner`` stores plain files through FileSystemStorage's own
    ``_save`` (a subclass that writes differently gets the generic path)."""
    own_save = getattr(FileSystemStorage, "_save", None)
    return isinstance(inner, FileSystemStorage) and (
        getattr(type(inner), "_save", None) is own_save
    )


class FileSystemBackend(Backend):
    """A temporary file in the target folder, then an atomic link or rename."""

    inner: FileSystemStorage
    can_replace = True
    takes_uploads = True

    def open(self, name: str) -> ByteStream:
        """Return the stored file unbuffered, or a small one read whole: an open,
        a size and one read, where the storage's file object takes twice the
        system calls."""
        inner = type(self.inner)
        own_open = getattr(FileSystemStorage, "_open", None)
        if (
            inner.open is not Storage.open
            or getattr(inner, "_open", None) is not own_open
        ):
            return super().open(name)  # a subclass opens its own way
        file = open(self.inner.path(name), "rb", buffering=0)  # noqa: SIM115
        try:
            size = os.fstat(file.fileno()).st_size
            if size > WHOLE_READ:
                return file
            data = read_exactly(file, size)
        except BaseException:
            file.close()
            raise
        file.close()
        return WholeStream(data, size)

    def save(self, name: str, stream: ProducerStream, *, exact_name: bool) -> str:
        full_path = self.inner.path(name)
        temporary = self._write_temporary(full_path, stream)
        try:
            while True:
                try:
                    self._publish(temporary, full_path)
                    break
                except FileExistsError:
                    if exact_name:
                        raise NameTakenError(
                            f"{name!r} was taken by another writer during the save."
                        ) from None
                    name = self.inner.get_available_name(name)
                    full_path = self.inner.path(name)
        finally:
            _remove(temporary)
        return self._finish(full_path)

    def replace(self, name: str, stream: ProducerStream) -> None:
        full_path = self.inner.path(name)
        temporary = self._write_temporary(full_path, stream)
        try:
            os.replace(temporary, full_path)
        finally:
            _remove(temporary)
        self._finish(full_path)

    def _overwrites(self) -> bool:
        # Django 5.1+ has allow_overwrite; before, a subclass dropped O_EXCL.
        if getattr(self.inner, "_allow_overwrite", False):
            return True
        flags = getattr(self.inner, "OS_OPEN_FLAGS", os.O_EXCL)
        return not flags & os.O_EXCL

    def _publish(self, temporary: str, full_path: str) -> None:
        """Put the complete ``temporary`` file at ``full_path``.

        Raises:
            FileExistsError: the name is taken and the storage does not overwrite.
        """
        if self._overwrites():
            os.replace(temporary, full_path)
            return
        try:
            os.link(temporary, full_path)
        except OSError as exc:
            if isinstance(exc, FileExistsError) or exc.errno not in _NO_LINKS:
                raise
            # No hard links here: the check and the rename are two steps, as in
            # Django's own file_move_safe.
            if os.path.lexists(full_path):
                raise FileExistsError(full_path) from exc
            os.rename(temporary, full_path)

    def _write_temporary(self, full_path: str, stream: ProducerStream) -> str:
        """Write ``stream`` to a new temporary file beside ``full_path``; return its
        path. On failure it is removed."""
        directory = os.path.dirname(full_path)
        temporary = os.path.join(directory, partial_name(""))
        # The mode FileSystemStorage gives new files, before its umask and chmod.
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
        try:
            descriptor = os.open(temporary, flags, 0o666)
        except (FileNotFoundError, NotADirectoryError):
            # Folders are made only when missing, so a save into an existing one
            # costs no stat or mkdir (FileSystemStorage's makedirs takes three).
            self._make_directories(directory)
            descriptor = os.open(temporary, flags, 0o666)
        try:
            try:
                # Straight to the descriptor: the chunks are whole segments or
                # frames already, and a file object would only add system calls
                # (fstat, ioctl, lseek) and a buffer to copy through. Short ones
                # (a header, a small file's one batch, the trailer) are gathered
                # into one call.
                pending: list[bytes | bytearray | memoryview] = []
                gathered = 0
                for chunk in stream.chunks():
                    pending.append(chunk)
                    gathered += len(chunk)
                    if gathered >= _GATHER or len(pending) >= _IOV_MAX:
                        _write_all(descriptor, pending)
                        pending, gathered = [], 0
                _write_all(descriptor, pending)
            finally:
                os.close(descriptor)
        except BaseException:
            _remove(temporary)
            raise
        return temporary

    def _make_directories(self, directory: str) -> None:
        """Create ``directory`` and its parents as FileSystemStorage does, with its
        directory mode on every folder created."""
        mode = self.inner.directory_permissions_mode
        try:
            if mode is None:
                os.makedirs(directory, exist_ok=True)
            elif safe_makedirs is not None:  # Django 5.1+
                safe_makedirs(directory, mode, exist_ok=True)
            else:
                # os.makedirs applies ``mode`` through the umask, and only to the
                # last folder: clear the umask meanwhile, as Django 4.2 does.
                umask = os.umask(0o777 & ~mode)
                try:
                    os.makedirs(directory, mode, exist_ok=True)
                finally:
                    os.umask(umask)
        except FileExistsError:
            raise FileExistsError(
                f"{directory} exists and is not a directory."
            ) from None

    def _finish(self, full_path: str) -> str:
        """Apply the storage's file mode and group; return the storage name."""
        if self.inner.file_permissions_mode is not None:
            os.chmod(full_path, self.inner.file_permissions_mode)
        ensure_group = getattr(self.inner, "_ensure_location_group_id", None)
        if callable(ensure_group):
            ensure_group(full_path)
        # Both paths are normalised and absolute: below the location, the name is
        # the rest of the path, which is what relpath would compute at length.
        prefix = os.path.join(self.inner.location, "")
        if os.sep == "/" and full_path.startswith(prefix):
            return full_path[len(prefix) :]
        name = os.path.relpath(full_path, self.inner.location)
        return name.replace("\\", "/")


#: Output chunks shorter than this together are written in one system call.
_GATHER = 256 * 1024


def _iov_max() -> int:
    """Return how many chunks one ``writev`` may take here (at most 1024)."""
    try:
        limit = os.sysconf("SC_IOV_MAX")
    except (AttributeError, ValueError, OSError):
        return 16  # the least POSIX allows
    return 1024 if limit < 0 else min(limit, 1024)  # -1: no limit


#: At most this many chunks go to one ``writev``: past the system's limit (1024 on
#: Linux) it fails with EINVAL, and a compress-only file of many tiny frames (zeros)
#: gathers more than that before reaching ``_GATHER``.
_IOV_MAX = _iov_max()


def _write_all(descriptor: int, chunks: list[bytes | bytearray | memoryview]) -> None:
    """Write ``chunks`` in order, in one ``writev`` where the system has it."""
    if len(chunks) > 1 and hasattr(os, "writev"):
        written = os.writev(descriptor, chunks)
        if written == sum(len(chunk) for chunk in chunks):
            return
        chunks = [b"".join(chunks)[written:]]  # written in part: rare, so simple
    for chunk in chunks:
        view = memoryview(chunk)
        while view:
            view = view[os.write(descriptor, view) :]


def _remove(path: str) -> None:
    """Remove a temporary file of this adapter's (never a stored file)."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
