"""Where the Ray executor's trials keep their checkpoints: a folder, a shared path, or a bucket.

Ray Tune persists each checkpoint a trial reports to its storage (`RunConfig(storage_path,
storage_filesystem)`), and a retried trial on any node reads it back with `tune.get_checkpoint()`.
So the storage must be reachable from every node: the results folder (the default) is enough on
one machine; a cluster needs a shared path or an object store, named by `--storage` or the suite's
`storage` field, e.g. `/mnt/shared/ckpt` or `s3://bucket/prefix` (pyarrow's URI syntax, which
takes options such as `?endpoint_override=host:port&scheme=http` for S3-compatible servers;
credentials come from the usual AWS environment variables or instance roles, on every node).
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pyarrow.fs

from benchmark import BenchmarkError


class StorageError(BenchmarkError):
    """Checkpoint storage that cannot be reached, written or read."""


@dataclass(frozen=True, eq=False)
class Storage:
    uri: str                               # as named (credentials never recorded)
    filesystem: pyarrow.fs.FileSystem
    path: str                              # the root inside the filesystem

    def join(self, relative: str) -> str:
        return f"{self.path.rstrip('/')}/{relative}"

    def relative(self, path: str) -> str | None:
        """`path` relative to the root, or None if it lies outside."""
        root = self.path.rstrip("/") + "/"
        return path[len(root):] if path.startswith(root) else None

    def has_file(self, relative: str) -> bool:
        return self.filesystem.get_file_info(self.join(relative)).type == pyarrow.fs.FileType.File

    def move(self, relative: str, target: str) -> None:
        self.filesystem.move(self.join(relative), self.join(target))

    def probe(self) -> None:
        """Write, read back and delete a small file; a StorageError names the storage otherwise."""
        name = self.join(f".probe-{uuid.uuid4().hex[:8]}")
        try:
            self.filesystem.create_dir(self.path, recursive=True)
            with self.filesystem.open_output_stream(name) as handle:
                handle.write(b"ok")
            with self.filesystem.open_input_stream(name) as handle:
                if handle.read() != b"ok":
                    raise OSError("read back other bytes than were written")
            self.filesystem.delete_file(name)
        except (OSError, pyarrow.ArrowException) as exc:
            raise StorageError(f"storage {self.uri}: cannot write there ({_first_line(exc)})") from None


def open_storage(uri: str) -> Storage:
    """The storage named by a local path or a URI (`s3://`, `gs://`, `file://`, ...)."""
    is_uri = "://" in uri
    target = uri if is_uri else os.path.abspath(os.path.expanduser(uri))
    try:
        filesystem, path = pyarrow.fs.FileSystem.from_uri(target)
    except (OSError, ValueError, pyarrow.ArrowException) as exc:
        raise StorageError(f"storage {uri}: not a path or a storage URI pyarrow can open ({_first_line(exc)})") from None
    return Storage(_without_secrets(target), filesystem, path)


def _without_secrets(uri: str) -> str:
    parts = urlsplit(uri)
    if not parts.query:
        return uri
    options = parse_qsl(parts.query)
    kept = [(k, v) for k, v in options if not any(s in k.lower() for s in ("key", "secret", "token"))]
    return uri if kept == options else urlunsplit(parts._replace(query=urlencode(kept, safe=":/")))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__
