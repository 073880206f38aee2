"""Where the Ray executor's trials keep their checkpoints: a folder, a shared path, or a bucket.

Ray Tune persists each checkpoint a trial reports to its storage (`RunConfig(storage_path,
storage_filesystem)`), and a retried trial on any node reads it back with `tune.get_checkpoint()`.
So the storage must be reachable from every node: the results folder (the default) is enough on
one machine; a cluster needs a shared path or an object store, named by `--storage` or the suite's
`storage` field, e.g. `/mnt/shared/ckpt` or `s3://bucket/prefix` (pyarrow's URI syntax, which
takes options such as `?endpoint_override=host:port&scheme=http` for S3-compatible servers;
credentials come from the usual AWS environment variables or instance roles, on every node).

A URI may also carry credentials (`s3://KEY:SECRET@bucket/prefix`, or query options such as
`access_key`, `secret_key`, `session_token`): they are used to open the storage and never written
or printed. Every URI we record or show is `redact`ed, and every error message that could quote
one is `scrub`bed of its secrets.

The results folder's own storage (the default) is recorded as `DEFAULT_STORAGE`, its place relative
to the folder, so that a folder moved, renamed or copied elsewhere still finds its checkpoints.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from urllib.parse import unquote

import pyarrow.fs

from benchmark import BenchmarkError


class StorageError(BenchmarkError):
    """Checkpoint storage that cannot be reached, written or read."""


DEFAULT_STORAGE = "_state/ray"  # the results folder's own storage, as runs.csv records it: relative to the folder
REDACTED = "***"
# Query options whose values are credentials: pyarrow's `access_key`, `secret_key`, `session_token`,
# a proxy's password, and the like in other schemes (a signature, a SAS token, a credentials file).
SECRET_WORDS = ("key", "secret", "token", "password", "passwd", "credential", "signature")
SECRET_NAMES = ("sig",)  # too short to look for inside other names


@dataclass(frozen=True, eq=False)
class Storage:
    uri: str                               # as named, redacted: credentials are never recorded
    filesystem: pyarrow.fs.FileSystem
    path: str                              # the root inside the filesystem
    secrets: tuple[str, ...] = ()          # the URI's credentials, only to scrub them from error messages

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
            reason = scrub(_first_line(exc), self.secrets)
            raise StorageError(f"storage {self.uri}: cannot write there ({reason})") from None


def open_storage(uri: str) -> Storage:
    """The storage named by a local path or a URI (`s3://`, `gs://`, `file://`, ...)."""
    is_uri = "://" in uri
    target = uri if is_uri else os.path.abspath(os.path.expanduser(uri))
    secrets = secrets_of(target)
    try:
        filesystem, path = pyarrow.fs.FileSystem.from_uri(target)
    except (OSError, ValueError, pyarrow.ArrowException) as exc:
        reason = scrub(_first_line(exc), secrets)
        raise StorageError(f"storage {redact(uri)}: not a path or a storage URI pyarrow can open ({reason})") from None
    return Storage(redact(target), filesystem, path, secrets)


def same_storage(recorded: str, current: str) -> bool:
    """Whether a trial's recorded storage is `current` (both as recorded: redacted, or DEFAULT_STORAGE).
    Rows written before the default was recorded by its place hold the folder's absolute path then;
    they name the folder's own storage too, wherever the folder is now."""
    if recorded == current:
        return True
    legacy_default = "://" not in recorded and recorded.rstrip("/").endswith("/" + DEFAULT_STORAGE)
    return current == DEFAULT_STORAGE and legacy_default


def redact(uri: str) -> str:
    """`uri` with each credential replaced by REDACTED: the user info (`s3://KEY:SECRET@bucket`)
    and the values of query options named like one (`access_key`, `secret_key`, `session_token`, ...).
    A local path is returned as it is."""
    scheme, separator, rest = uri.partition("://")
    if not separator:
        return uri
    target, question, query = rest.partition("?")
    _, at, host = target.rpartition("@")  # the last "@": a secret may hold an unencoded "/" or "@"
    if at:
        target = f"{REDACTED}@{host}"
    if question:
        query = "&".join(_redact_option(option) for option in query.split("&"))
    return f"{scheme}://{target}" + (f"?{query}" if question else "")


def secrets_of(uri: str) -> tuple[str, ...]:
    """The credentials `redact` hides, as written and percent-decoded, longest first."""
    scheme, separator, rest = uri.partition("://")
    if not separator:
        return ()
    target, _, query = rest.partition("?")
    user_info, at, _ = target.rpartition("@")
    found = [user_info, *user_info.split(":", 1)] if at else []
    for option in query.split("&") if query else []:
        name, _, value = option.partition("=")
        if _is_secret(name):
            found.append(value)
    found += [unquote(text) for text in found]
    return tuple(sorted({text for text in found if text}, key=len, reverse=True))


def scrub(text: str, secrets: tuple[str, ...]) -> str:
    """`text` (an error message that may quote a URI) with every one of `secrets` replaced."""
    for secret in secrets:
        text = text.replace(secret, REDACTED)
    return text


def _redact_option(option: str) -> str:
    name, equals, _ = option.partition("=")
    return f"{name}={REDACTED}" if equals and _is_secret(name) else option


def _is_secret(name: str) -> bool:
    name = unquote(name).lower()
    return name in SECRET_NAMES or any(word in name for word in SECRET_WORDS)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__
