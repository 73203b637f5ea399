"""Builders of test archives in memory: the good ones users upload and the crafted bad ones."""

from __future__ import annotations

import io
import stat
import struct
import tarfile
import warnings
import zipfile
from collections.abc import Iterable, Mapping
from typing import Literal

DOCKERFILE = b"FROM scratch\nCOPY . /app\n"

ZipMember = tuple[zipfile.ZipInfo, bytes]
TarMember = tuple[tarfile.TarInfo, bytes]


def zip_info(
    name: str, *, mode: int | None = None, compression: int = zipfile.ZIP_DEFLATED
) -> zipfile.ZipInfo:
    """A zip entry; `mode` (type and permission bits) makes it a Unix entry, as zip -y writes."""
    info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
    info.compress_type = compression
    if mode is not None:
        info.create_system = 3
        info.external_attr = mode << 16
    return info


def zip_symlink(name: str, target: str) -> ZipMember:
    return zip_info(name, mode=stat.S_IFLNK | 0o777), target.encode()


def zip_bytes(
    files: Mapping[str, bytes] | Iterable[ZipMember], compression: int = zipfile.ZIP_DEFLATED
) -> bytes:
    members = (
        [(zip_info(name, compression=compression), data) for name, data in files.items()]
        if isinstance(files, Mapping)
        else list(files)
    )
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # duplicate names are one of the crafted cases
        for info, data in members:
            archive.writestr(info, data)
    return buffer.getvalue()


def zip_of_zeros(name: str, size: int, extra: Mapping[str, bytes] | None = None) -> bytes:
    """A zip holding `size` zero bytes (deflated about 1000:1), written without holding them."""
    buffer = io.BytesIO()
    block = bytes(1 << 20)
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for extra_name, data in (extra or {}).items():
            archive.writestr(extra_name, data)
        with archive.open(zip_info(name), "w", force_zip64=False) as out:
            left = size
            while left > 0:
                out.write(block[: min(left, len(block))])
                left -= len(block)
    return buffer.getvalue()


def patch_zip(data: bytes, name: str, *, set_flags: int = 0, file_size: int | None = None) -> bytes:
    """Rewrite one entry's flags or declared unpacked size in both its local and central
    headers, as an attacker would, leaving its data alone."""
    patched = bytearray(data)
    position = zipfile.ZipFile(io.BytesIO(data)).start_dir
    found = False
    while patched[position : position + 4] == b"PK\x01\x02":
        name_length, extra_length, comment_length = struct.unpack_from(
            "<HHH", patched, position + 28
        )
        (local,) = struct.unpack_from("<L", patched, position + 42)
        if patched[position + 46 : position + 46 + name_length] == name.encode():
            found = True
            for flags_at, size_at in ((position + 8, position + 24), (local + 6, local + 22)):
                (flags,) = struct.unpack_from("<H", patched, flags_at)
                struct.pack_into("<H", patched, flags_at, flags | set_flags)
                if file_size is not None:
                    struct.pack_into("<L", patched, size_at, file_size)
        position += 46 + name_length + extra_length + comment_length
    assert found, name
    return bytes(patched)


def tar_file(name: str, data: bytes = b"", mode: int = 0o644) -> TarMember:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    return info, data


def tar_dir(name: str) -> TarMember:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    return info, b""


def tar_link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> TarMember:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info, b""


def tar_special(name: str, kind: bytes) -> TarMember:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.devmajor, info.devminor = 1, 3
    return info, b""


def tar_bytes(
    members: Iterable[TarMember], compression: str = "", format: int = tarfile.PAX_FORMAT
) -> bytes:
    """A tar ("") or tar.gz ("gz") of the members, in order."""
    buffer = io.BytesIO()
    mode: Literal["w", "w:gz"] = "w:gz" if compression == "gz" else "w"
    with tarfile.open(fileobj=buffer, mode=mode, format=format, errors="surrogateescape") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return buffer.getvalue()


def tar_of_zeros(name: str, size: int) -> bytes:
    """A tar.gz holding `size` zero bytes, streamed from a reader rather than held in memory."""

    class Zeros(io.RawIOBase):
        def readable(self) -> bool:
            return True

        def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
            buffer[:] = bytes(len(buffer))
            return len(buffer)

    info, _ = tar_file(name)
    info.size = size
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.addfile(info, io.BufferedReader(Zeros()))
    return buffer.getvalue()


class CountingReader(io.BytesIO):
    """A BytesIO that records how many bytes were read from it, as a ranged S3 reader would."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.bytes_read = 0

    def read(self, size: int | None = -1, /) -> bytes:
        data = super().read(size)
        self.bytes_read += len(data)
        return data
