"""Checking an archive while it uploads: bounded memory, what a zip's check reads back from
storage, and a dropped upload stopping its checking thread. (That the verdicts equal those of
`inspect_archive` on the whole file is checked for every case in test_archive_checks.py.)"""

from __future__ import annotations

import asyncio
import io
import os
import threading
import zipfile

from core.archives.checks import ArchiveLimits, ArchiveRejected
from core.archives.inspection import KEEP_TAIL, KEPT_READ_BUFFER, UploadInspection, _Pipe
from tests.unit.archives import DOCKERFILE, tar_bytes, tar_file, zip_bytes

MiB = 1 << 20


class CountingOpener:
    """Opens the stored object (here: bytes in memory) and counts the bytes read from it."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.opened = 0
        self.read = 0

    def __call__(self) -> io.BufferedReader:
        self.opened += 1
        opener = self

        class Counting(io.BytesIO):
            def read(self, size: int | None = -1, /) -> bytes:
                data = super().read(size)
                opener.read += len(data)
                return data

        return io.BufferedReader(Counting(self.data))  # type: ignore[arg-type]


async def inspect_streamed(data: bytes, opener: CountingOpener, piece: int = 256 * 1024) -> object:
    inspection = UploadInspection(ArchiveLimits(), opener)
    for start in range(0, len(data), piece):
        await inspection.feed(data[start : start + piece])
    try:
        return await inspection.finish(ArchiveLimits())
    except ArchiveRejected as refusal:
        return refusal


async def test_a_zip_whose_directory_is_in_the_kept_tail_reads_nothing_back() -> None:
    data = zip_bytes({"Dockerfile": DOCKERFILE, "big.bin": os.urandom(6 * MiB)})
    opener = CountingOpener(data)
    report = await inspect_streamed(data, opener)
    assert getattr(report, "dockerfile", None) == "Dockerfile"
    assert (opener.opened, opener.read) == (0, 0)


async def test_a_zip_directory_larger_than_the_tail_is_read_back_but_not_the_data() -> None:
    # 12,000 names of ~200 bytes: a central directory of ~3 MiB, more than the kept tail.
    files = {f"src/{'d' * 150}/{number:06}.txt": b"x" for number in range(12_000)}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("Dockerfile", DOCKERFILE)
        archive.writestr("big.bin", os.urandom(8 * MiB))
        for name, body in files.items():
            archive.writestr(name, body)
    data = buffer.getvalue()
    opener = CountingOpener(data)
    report = await inspect_streamed(data, opener)
    # More entries than allowed: the refusal comes from the end record, read from the tail.
    assert isinstance(report, ArchiveRejected) and report.reason == "too-many-entries"
    assert opener.read == 0
    limits = ArchiveLimits(max_entries=20_000)
    inspection = UploadInspection(limits, opener)
    for start in range(0, len(data), 256 * 1024):
        await inspection.feed(data[start : start + 256 * 1024])
    accepted = await inspection.finish(limits)
    assert accepted.entries == 12_002
    # Read back: the part of the directory before the kept tail (and a read buffer's worth
    # around it), none of the 8 MiB of file data before it.
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        directory = len(data) - archive.start_dir  # type: ignore[attr-defined]
    assert directory > KEEP_TAIL
    assert 0 < inspection.read_back_bytes <= directory - KEEP_TAIL + 2 * KEPT_READ_BUFFER


async def test_the_pipe_holds_at_most_its_high_water_mark() -> None:
    pipe = _Pipe(asyncio.get_running_loop(), high_water=1 * MiB, wake_at=64 * 1024)
    for _ in range(4):
        await pipe.put(bytes(256 * 1024))  # 1 MiB waiting: not above the mark yet
    blocked = asyncio.create_task(pipe.put(bytes(256 * 1024)))
    for _ in range(20):
        await asyncio.sleep(0)
    assert not blocked.done(), "put returned with more than the high-water mark waiting"
    taken = 0
    while not blocked.done():
        taken += len(await asyncio.to_thread(pipe.read, 64 * 1024))
        await asyncio.sleep(0)
    # It went on once the reader took the waiting bytes down to half the mark.
    assert 1.25 * MiB - taken <= 0.5 * MiB
    pipe.close()
    while data := await asyncio.to_thread(pipe.read):
        taken += len(data)
    assert taken == 1.25 * MiB


async def test_a_dropped_upload_stops_its_checking_thread() -> None:
    data = tar_bytes([tar_file("Dockerfile", DOCKERFILE), tar_file("big.bin", bytes(4 * MiB))])
    before = {thread.ident for thread in threading.enumerate()}
    inspection = UploadInspection(ArchiveLimits(), CountingOpener(data))
    await inspection.feed(data[: 2 * MiB])
    checking = [
        thread
        for thread in threading.enumerate()
        if thread.name == "ghst-archive-check" and thread.ident not in before
    ]
    assert len(checking) == 1
    inspection.abort()
    inspection.abort()  # twice is harmless
    await asyncio.to_thread(checking[0].join)
    assert not checking[0].is_alive()


async def test_a_tar_cut_short_is_refused_as_before() -> None:
    data = tar_bytes([tar_file("Dockerfile", DOCKERFILE), tar_file("big.bin", bytes(3 * MiB))])
    report = await inspect_streamed(data[: 2 * MiB], CountingOpener(data))
    assert isinstance(report, ArchiveRejected) and report.reason == "corrupt"
    assert "cut short" in report.message
