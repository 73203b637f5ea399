"""Uploaded archives: what inspection accepts and refuses (each refusal with its own reason and
message), and how extraction writes only safe things and cleans up after itself."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import gzip
import io
import os
import stat
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from core.archives.checks import (
    ArchiveLimits,
    ArchiveRejected,
    ArchiveReport,
    extract_archive,
    inspect_archive,
)
from core.archives.inspection import UploadInspection
from core.errors import ValidationError
from tests.unit.archives import (
    DOCKERFILE,
    CountingReader,
    patch_zip,
    tar_bytes,
    tar_dir,
    tar_file,
    tar_link,
    tar_of_zeros,
    tar_special,
    zip_bytes,
    zip_info,
    zip_of_zeros,
    zip_symlink,
)

MiB = 1 << 20


def inspect(data: bytes, **limits: int) -> ArchiveReport:
    """`inspect_archive` on the whole file, after checking that the same archive checked while
    it uploads (fed in pieces of two sizes) gets the same verdict, message for message."""
    whole = _outcome(lambda: inspect_archive(io.BytesIO(data), ArchiveLimits(**limits)))
    for piece in (64 * 1024, 1000):
        fed = _outcome(
            functools.partial(asyncio.run, streamed(data, ArchiveLimits(**limits), piece))
        )
        assert _verdict(fed) == _verdict(whole), f"fed in pieces of {piece} bytes"
    if isinstance(whole, ArchiveRejected):
        raise whole
    return whole


async def streamed(data: bytes, limits: ArchiveLimits, piece: int) -> ArchiveReport:
    """What an upload's inspection says when `data` arrives `piece` bytes at a time (the quota
    known only at the end, as in an upload)."""
    inspection = UploadInspection(
        dataclasses.replace(limits, quota_remaining=None), lambda: io.BytesIO(data)
    )
    for start in range(0, len(data), piece):
        await inspection.feed(data[start : start + piece])
    return await inspection.finish(limits)


def _outcome(check: Callable[[], ArchiveReport]) -> ArchiveReport | ArchiveRejected:
    try:
        return check()
    except ArchiveRejected as refusal:
        return refusal


def _verdict(outcome: ArchiveReport | ArchiveRejected) -> object:
    if isinstance(outcome, ArchiveRejected):
        return (outcome.reason, outcome.message, outcome.path)
    return outcome


def refused(data: bytes, reason: str, match: str, **limits: int) -> ArchiveRejected:
    with pytest.raises(ArchiveRejected, match=match) as caught:
        inspect(data, **limits)
    assert caught.value.reason == reason, caught.value.message
    assert isinstance(caught.value, ValidationError)
    return caught.value


# --- accepted ---------------------------------------------------------------------------------


def test_zip_with_dockerfile_at_the_top() -> None:
    data = zip_bytes({"Dockerfile": DOCKERFILE, "app/main.py": b"print('hi')\n", "app/": b""})
    report = inspect(data)
    assert report == ArchiveReport(
        kind="zip",
        entries=3,
        total_size=len(DOCKERFILE) + 12,
        root="",
        dockerfile="Dockerfile",
        compose_file=None,
    )


def test_tar_gz_with_a_single_top_folder_and_compose_yaml() -> None:
    members = [
        tar_dir("myapp"),
        tar_file("myapp/compose.yaml", b"services: {}\n"),
        tar_file("myapp/docker-compose.yml", b"services: {}\n"),
        tar_file("myapp/web/index.html", b"<h1>hi</h1>"),
    ]
    report = inspect(tar_bytes(members, "gz"))
    assert report.kind == "tar.gz"
    assert report.root == "myapp/"
    assert report.compose_file == "myapp/compose.yaml"  # compose's own order of preference
    assert report.dockerfile is None
    assert report.entries == 4
    assert report.total_size == 13 + 13 + 11


def test_plain_tar_with_dot_slash_names() -> None:
    members = [
        tar_dir("."),
        tar_file("./Dockerfile", DOCKERFILE),
        tar_file("./run.sh", b"x", 0o755),
    ]
    report = inspect(tar_bytes(members))
    assert (report.kind, report.root, report.dockerfile, report.entries) == (
        "tar",
        "",
        "Dockerfile",
        3,
    )


def test_type_comes_from_content_not_name(tmp_path: Path) -> None:
    path = tmp_path / "app.txt"
    path.write_bytes(tar_bytes([tar_file("Dockerfile", DOCKERFILE)], "gz"))
    with path.open("rb") as file:
        assert inspect_archive(file).kind == "tar.gz"


def test_macos_litter_does_not_count_as_a_second_top_folder() -> None:
    data = zip_bytes(
        {"myapp/Dockerfile": DOCKERFILE, "__MACOSX/myapp/._Dockerfile": b"x", ".DS_Store": b"x"}
    )
    report = inspect(data)
    assert (report.root, report.dockerfile) == ("myapp/", "myapp/Dockerfile")


def test_windows_separators_are_normalised() -> None:
    report = inspect(zip_bytes({"myapp\\Dockerfile": DOCKERFILE, "myapp\\src\\a.py": b""}))
    assert (report.root, report.dockerfile) == ("myapp/", "myapp/Dockerfile")


def test_in_tree_links_are_fine() -> None:
    members = [
        tar_dir("app"),
        tar_file("app/Dockerfile", DOCKERFILE),
        tar_dir("app/static"),
        tar_file("app/static/site.css", b"body{}"),
        tar_link("app/current", "static"),
        tar_link("app/static/again", "../static/site.css"),
        tar_link("app/copy.css", "app/static/site.css", tarfile.LNKTYPE),
    ]
    report = inspect(tar_bytes(members, "gz"))
    assert report.root == "app/"
    assert report.total_size == len(DOCKERFILE) + 6 + 6  # the hard link becomes a copy


def test_zip_inspection_reads_only_the_end_of_the_archive() -> None:
    data = zip_bytes({"Dockerfile": DOCKERFILE, "big.bin": os.urandom(4 * MiB)})
    reader = CountingReader(data)
    inspect_archive(reader)
    assert reader.bytes_read < 70_000 + 512  # the first block, the tail and the directory


# --- refused: what it is ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"\x89PNG\r\n\x1a\n" + bytes(100), r"not a zip or tar archive \(it is a PNG image\)"),
        (bytes(range(256)) * 8, "not a zip or tar archive. Upload a .zip, .tar or .tar.gz"),
        (b"", "not a zip or tar archive"),
        (b"\xfd7zXZ\x00" + bytes(50), "xz-compressed; ghst reads gzip only"),
        (gzip.compress(b"just some text\n" * 100), "This gzip file does not hold a tar archive"),
    ],
)
def test_not_an_archive(data: bytes, match: str) -> None:
    refused(data, "not-an-archive", match)


def test_a_text_file_named_zip_is_not_an_archive(tmp_path: Path) -> None:
    path = tmp_path / "app.zip"
    path.write_text("FROM python:3.12\n")
    with path.open("rb") as file, pytest.raises(ArchiveRejected) as caught:
        inspect_archive(file)
    assert caught.value.reason == "not-an-archive"


def test_truncated_zip_is_corrupt() -> None:
    data = zip_bytes({"Dockerfile": DOCKERFILE, "a.bin": os.urandom(5000)})
    refused(data[: len(data) // 2], "corrupt", "end record is missing, as if the upload was cut")


def test_zip_with_junk_after_its_end_is_corrupt() -> None:
    data = zip_bytes({"Dockerfile": DOCKERFILE})
    refused(data + b"trailing", "corrupt", "data after the end of the zip")


def test_zip_with_a_damaged_directory_is_corrupt() -> None:
    data = bytearray(zip_bytes({"Dockerfile": DOCKERFILE}))
    start = zipfile.ZipFile(io.BytesIO(bytes(data))).start_dir
    data[start : start + 4] = b"XXXX"
    refused(bytes(data), "corrupt", "zip directory is broken")


def test_truncated_gzip_is_corrupt() -> None:
    data = tar_bytes([tar_file("Dockerfile", DOCKERFILE), tar_file("a", os.urandom(20_000))], "gz")
    refused(data[: len(data) // 2], "corrupt", "ends too early")


def test_gzip_losing_only_its_trailer_is_corrupt() -> None:
    data = tar_bytes([tar_file("Dockerfile", DOCKERFILE)], "gz")
    refused(data[:-4], "corrupt", "ends too early")


def test_garbage_after_a_gzip_header_is_corrupt() -> None:
    data = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03" + bytes(range(7, 256)) * 4
    refused(data, "corrupt", "gzip data is invalid")


@pytest.mark.parametrize("cut", [700, 1024])  # in a file's data; at a member boundary
def test_truncated_tar_is_corrupt(cut: int) -> None:
    data = tar_bytes([tar_file("Dockerfile", b"x" * 500), tar_file("b", b"y" * 500)])
    # pax format: no extra headers for plain ASCII names, so members are 512 + 512 bytes each
    refused(data[: 1024 + cut], "corrupt", "ends too early")


def test_tar_with_a_bad_header_checksum_is_corrupt() -> None:
    data = bytearray(tar_bytes([tar_file("Dockerfile", DOCKERFILE), tar_file("b", b"y")]))
    data[1024 + 100] ^= 0x01  # the mode field of the second header
    refused(bytes(data), "corrupt", "fails its checksum")


def test_an_oversized_pax_header_is_never_read_into_memory() -> None:
    info, data = tar_file("Dockerfile", DOCKERFILE)
    info.pax_headers = {"comment": "x" * (2 * MiB)}
    refused(tar_bytes([(info, data)], "gz"), "corrupt", "tar headers are too large")


def test_tar_headers_count_against_a_budget() -> None:
    members = []
    for index in range(6):  # 1.8 MB of headers, beyond 100 KB + 50 x 4 KiB + 1 MiB
        info, data = tar_file(f"f{index}", b"x")
        info.pax_headers = {"comment": "x" * 300_000}  # each under the 1 MiB for one entry
        members.append((info, data))
    data = tar_bytes([tar_file("Dockerfile", DOCKERFILE), *members], "gz")
    refused(data, "corrupt", "tar headers are too large", max_total_size=100_000, max_entries=50)
    assert inspect(data).entries == 7


# --- refused: paths and entry types -----------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["../evil", "app/../../evil", "..\\evil", "app/./../../etc/cron.d/x", ".."]
)
def test_zip_slip_is_refused(name: str) -> None:
    error = refused(zip_bytes({"Dockerfile": DOCKERFILE, name: b"x"}), "path-traversal", "'..'")
    assert error.path == name


def test_tar_slip_is_refused() -> None:
    refused(
        tar_bytes([tar_file("Dockerfile", DOCKERFILE), tar_file("../../evil", b"x")], "gz"),
        "path-traversal",
        r"'\.\./\.\./evil' contains '\.\.' and would land outside",
    )


@pytest.mark.parametrize("name", ["/etc/passwd", "C:\\Windows\\x", "\\\\server\\share\\x", "c:x"])
def test_absolute_paths_are_refused(name: str) -> None:
    refused(zip_bytes({"Dockerfile": DOCKERFILE, name: b"x"}), "absolute-path", "absolute path")


def test_absolute_path_in_tar_is_refused() -> None:
    refused(tar_bytes([tar_file("/etc/passwd", b"x")]), "absolute-path", "absolute path")


@pytest.mark.parametrize(
    ("target", "match"),
    [
        ("../../etc/passwd", r"points to '\.\./\.\./etc/passwd', outside the archive"),
        ("/etc/passwd", "points to the absolute path '/etc/passwd'"),
        ("C:\\Windows", "absolute path"),
        ("sub/../..", "outside the archive"),
    ],
)
def test_symlinks_leaving_the_archive_are_refused(target: str, match: str) -> None:
    members = [tar_file("Dockerfile", DOCKERFILE), tar_link("evil", target)]
    refused(tar_bytes(members), "link-escape", match)


def test_symlink_escaping_through_another_link_is_refused() -> None:
    # "up" points to the top (fine); "up/.." is lexically the top too, but really its parent.
    members = [
        tar_file("Dockerfile", DOCKERFILE),
        tar_dir("d"),
        tar_link("esc", "up/.."),
        tar_link("up", "d/.."),
    ]
    refused(tar_bytes(members), "link-escape", r"'esc' points to 'up/\.\.', outside the archive")


def test_symlink_leaving_the_app_folder_is_refused() -> None:
    # Fine inside the archive, but the top folder is stripped on extraction.
    members = [tar_file("app/Dockerfile", DOCKERFILE), tar_link("app/up", "../app/Dockerfile")]
    refused(tar_bytes(members), "link-escape", "outside the app folder 'app'")


def test_symlink_loops_are_refused() -> None:
    members = [tar_file("Dockerfile", DOCKERFILE), tar_link("a", "b"), tar_link("b", "a")]
    refused(tar_bytes(members), "link-escape", "'a' points to 'b', which leads into a loop")


def test_zip_symlink_escape_is_refused() -> None:
    data = zip_bytes([(zip_info("Dockerfile"), DOCKERFILE), zip_symlink("x", "../../etc/passwd")])
    refused(data, "link-escape", "outside the archive")


def test_writing_through_an_archive_link_is_refused() -> None:
    members = [
        tar_file("Dockerfile", DOCKERFILE),
        tar_dir("sub"),
        tar_link("link", "sub"),
        tar_file("link/x", b"x"),
    ]
    refused(tar_bytes(members), "link-escape", "would be written through the link 'link'")


@pytest.mark.parametrize(
    ("target", "match"),
    [
        ("../../etc/passwd", "outside the archive"),
        ("/etc/passwd", "outside the archive"),
        ("later", "not a file earlier in the archive"),
    ],
)
def test_hardlinks_leaving_the_archive_are_refused(target: str, match: str) -> None:
    members = [
        tar_file("Dockerfile", DOCKERFILE),
        tar_link("evil", target, tarfile.LNKTYPE),
        tar_file("later", b"x"),
    ]
    refused(tar_bytes(members), "link-escape", f"hard link 'evil' points to .*{match}")


@pytest.mark.parametrize(
    ("kind", "what"),
    [
        (tarfile.CHRTYPE, "a character device"),
        (tarfile.BLKTYPE, "a block device"),
        (tarfile.FIFOTYPE, r"a named pipe \(FIFO\)"),
    ],
)
def test_special_files_are_refused(kind: bytes, what: str) -> None:
    members = [tar_file("Dockerfile", DOCKERFILE), tar_special("dev/x", kind)]
    refused(tar_bytes(members), "special-file", f"'dev/x' is {what}; an archive may hold only")


def test_zip_device_entry_is_refused() -> None:
    data = zip_bytes(
        [(zip_info("Dockerfile"), DOCKERFILE), (zip_info("p", mode=stat.S_IFIFO), b"")]
    )
    refused(data, "special-file", "named pipe")


@pytest.mark.parametrize(
    ("name", "match"), [("a\x1b[2Jb", "control character"), ("x" * 256, "too long")]
)
def test_bad_names_are_refused(name: str, match: str) -> None:
    refused(zip_bytes({"Dockerfile": DOCKERFILE, name: b""}), "bad-name", match)


def test_deep_nesting_is_refused() -> None:
    deep = "/".join(["d"] * 65) + "/x"
    refused(zip_bytes({"Dockerfile": DOCKERFILE, deep: b""}), "bad-name", "more than 64 folders")
    assert inspect(zip_bytes({"Dockerfile": DOCKERFILE, "/".join(["d"] * 64): b""})).entries == 2


def test_a_long_chain_of_links_is_refused() -> None:
    members = [tar_file("Dockerfile", DOCKERFILE), tar_dir("d"), tar_link("l0", "d")]
    members += [tar_link(f"l{i}", f"l{i - 1}/../l{i - 1}") for i in range(1, 12)]
    refused(tar_bytes(members), "link-escape", "loop or too long a chain of links")


def test_names_that_are_not_utf8_are_refused() -> None:
    members = [tar_file("Dockerfile", DOCKERFILE), tar_file("caf\udce9", b"")]
    refused(tar_bytes(members, format=tarfile.GNU_FORMAT), "bad-name", "is not valid UTF-8")


def test_an_entry_twice_is_refused() -> None:
    data = tar_bytes([tar_file("Dockerfile", DOCKERFILE), tar_file("./Dockerfile", b"FROM x")])
    refused(data, "path-conflict", "appears twice")
    data = zip_bytes([(zip_info("Dockerfile"), DOCKERFILE), (zip_info("Dockerfile"), b"FROM x")])
    refused(data, "path-conflict", "'Dockerfile' appears twice")


def test_entries_inside_a_file_are_refused() -> None:
    data = zip_bytes({"Dockerfile": DOCKERFILE, "a": b"x", "a/b": b"y"})
    refused(data, "path-conflict", "'a' is a file, but the archive also puts entries inside it")


def test_encrypted_zip_entry_is_refused() -> None:
    data = zip_bytes({"Dockerfile": DOCKERFILE, "secret.txt": b"x"})
    refused(patch_zip(data, "secret.txt", set_flags=0x1), "encrypted", "'secret.txt' is password")


def test_zip_methods_other_than_deflate_are_refused() -> None:
    data = zip_bytes({"Dockerfile": DOCKERFILE}, compression=zipfile.ZIP_BZIP2)
    refused(data, "unsupported-compression", "'Dockerfile' is compressed with bzip2; ghst reads")


# --- refused: sizes ---------------------------------------------------------------------------


def test_zip_bomb_is_refused() -> None:
    data = zip_of_zeros("zeros.bin", 50 * MiB, {"Dockerfile": DOCKERFILE})
    assert len(data) < 100_000
    refused(data, "compression-bomb", "more than 100 times its packed size", max_ratio=100)


def test_zip_bomb_entry_is_refused_even_when_the_whole_is_reasonable() -> None:
    data = zip_of_zeros("zeros.bin", 2 * MiB, {"Dockerfile": DOCKERFILE, "r": os.urandom(MiB)})
    refused(data, "compression-bomb", "'zeros.bin' unpacks to 2 MiB from")


def test_tar_gz_bomb_is_refused() -> None:
    data = tar_of_zeros("zeros.bin", 50 * MiB)
    refused(data, "compression-bomb", "The archive unpacks to 50 MiB or more from", max_ratio=100)


def test_too_many_entries() -> None:
    files = {"Dockerfile": DOCKERFILE} | {f"f{i}": b"" for i in range(50)}
    refused(zip_bytes(files), "too-many-entries", "has 51 entries; at most 50", max_entries=50)
    members = [tar_file(name, data) for name, data in files.items()]
    refused(tar_bytes(members, "gz"), "too-many-entries", "more than 50 entries", max_entries=50)
    assert inspect(zip_bytes(dict(list(files.items())[:50])), max_entries=50).entries == 50


def test_default_entry_limit_is_10000() -> None:
    files = {"Dockerfile": DOCKERFILE} | {f"f/{i}": b"" for i in range(9_999)}
    assert inspect(zip_bytes(files, zipfile.ZIP_STORED)).entries == 10_000
    files["one-more"] = b""
    refused(
        zip_bytes(files, zipfile.ZIP_STORED), "too-many-entries", "10,001 entries; at most 10,000"
    )


def test_zip64_end_records_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(zipfile, "ZIP_FILECOUNT_LIMIT", 1)  # zipfile then writes zip64 records
    data = zip_bytes({"Dockerfile": DOCKERFILE, "a": b"", "b": b""})
    assert b"PK\x06\x06" in data
    assert inspect(data).entries == 3
    refused(data, "too-many-entries", "has 3 entries; at most 2", max_entries=2)


def test_too_large() -> None:
    data = zip_bytes({"Dockerfile": DOCKERFILE, "big": os.urandom(300_000)})
    refused(data, "too-large", "larger than the 200 KiB limit", max_total_size=200 * 1024)


def test_over_quota() -> None:
    data = tar_bytes([tar_file("Dockerfile", DOCKERFILE), tar_file("big", bytes(300_000))], "gz")
    refused(data, "over-quota", "more than the 100 KiB of storage left", quota_remaining=100 * 1024)
    assert inspect(data, quota_remaining=MiB).total_size == 300_000 + len(DOCKERFILE)


def test_hard_link_copies_count_towards_the_size() -> None:
    members = [tar_file("Dockerfile", DOCKERFILE), tar_file("big", os.urandom(60_000))]
    members += [tar_link(f"copy{i}", "big", tarfile.LNKTYPE) for i in range(5)]
    refused(tar_bytes(members, "gz"), "too-large", "limit", max_total_size=200_000)


# --- refused: no app --------------------------------------------------------------------------


def test_no_dockerfile_or_compose_file() -> None:
    error = refused(zip_bytes({"README.md": b"hi"}), "no-dockerfile", "No Dockerfile or compose")
    for name in ("compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml"):
        assert name in error.message


def test_nested_dockerfile_under_two_top_folders_is_refused() -> None:
    data = zip_bytes({"api/Dockerfile": DOCKERFILE, "web/index.html": b""})
    refused(data, "no-dockerfile", r"Found 'api/Dockerfile', but the archive has 2 top-level")


def test_dockerfile_too_deep_is_refused() -> None:
    data = zip_bytes({"a/b/Dockerfile": DOCKERFILE})
    refused(data, "no-dockerfile", "Found 'a/b/Dockerfile', too deep: it must be at the top")


def test_a_dockerfile_that_is_a_link_does_not_count() -> None:
    data = tar_bytes([tar_file("real", DOCKERFILE), tar_link("Dockerfile", "real")])
    refused(data, "no-dockerfile", "No Dockerfile")


def test_empty_zip() -> None:
    refused(zip_bytes({}), "no-dockerfile", "No Dockerfile")


# --- extraction -------------------------------------------------------------------------------


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_extraction_strips_the_top_folder_with_safe_modes(tmp_path: Path) -> None:
    data = zip_bytes(
        [
            (zip_info("myapp/", mode=stat.S_IFDIR | 0o777), b""),
            (zip_info("myapp/Dockerfile", mode=stat.S_IFREG | 0o666), DOCKERFILE),
            (zip_info("myapp/run.sh", mode=stat.S_IFREG | 0o4777), b"#!/bin/sh\n"),
            (zip_info("myapp/secret", mode=stat.S_IFREG | 0o600), b"s"),
            (zip_info("myapp/deep/er/x.txt"), b"x"),
            zip_symlink("myapp/latest", "deep/er/x.txt"),
            (zip_info("__MACOSX/._junk"), b"junk"),
        ]
    )
    destination = tmp_path / "out"
    report = extract_archive(io.BytesIO(data), destination)
    assert report.root == "myapp/"
    assert report == inspect(data)
    assert sorted(os.listdir(destination)) == ["Dockerfile", "deep", "latest", "run.sh", "secret"]
    assert (destination / "Dockerfile").read_bytes() == DOCKERFILE
    assert mode(destination / "Dockerfile") == 0o644
    assert mode(destination / "run.sh") == 0o755  # no setuid, no world write
    assert mode(destination / "secret") == 0o644
    assert mode(destination / "deep") == mode(destination / "deep/er") == 0o755
    assert mode(destination) == 0o755
    assert os.readlink(destination / "latest") == "deep/er/x.txt"
    assert (destination / "latest").read_bytes() == b"x"


def test_extraction_keeps_unicode_names(tmp_path: Path) -> None:
    data = zip_bytes({"café/Dockerfile": DOCKERFILE, "café/données/été.txt": b"x"})
    report = extract_archive(io.BytesIO(data), tmp_path / "out")
    assert report.root == "café/"
    assert (tmp_path / "out/données/été.txt").read_bytes() == b"x"


def test_extraction_of_a_tar_gz_copies_hard_links(tmp_path: Path) -> None:
    members = [
        tar_dir("app"),
        tar_file("app/compose.yaml", b"services: {}\n"),
        tar_file("app/bin/tool", b"#!/bin/sh\n", 0o775),
        tar_link("app/bin/tool2", "app/bin/tool", tarfile.LNKTYPE),
    ]
    members[3][0].mode = 0o775
    destination = tmp_path / "out"
    report = extract_archive(io.BytesIO(tar_bytes(members, "gz")), destination)
    assert report.compose_file == "app/compose.yaml"
    tool, copy = destination / "bin/tool", destination / "bin/tool2"
    assert copy.read_bytes() == b"#!/bin/sh\n"
    assert tool.stat().st_ino != copy.stat().st_ino
    assert mode(tool) == mode(copy) == 0o755
    assert sorted(os.listdir(destination)) == ["bin", "compose.yaml"]


def test_extraction_stops_a_zip_that_understates_its_sizes(tmp_path: Path) -> None:
    data = patch_zip(
        zip_of_zeros("zeros.bin", 5 * MiB, {"Dockerfile": DOCKERFILE}), "zeros.bin", file_size=1000
    )
    assert inspect(data).total_size == 1000 + len(DOCKERFILE)  # the directory alone cannot tell
    destination = tmp_path / "out"
    with pytest.raises(ArchiveRejected, match="more than the 1000 bytes its zip header") as caught:
        extract_archive(io.BytesIO(data), destination)
    assert caught.value.reason == "too-large"
    assert not destination.exists()


def test_extraction_checks_crc(tmp_path: Path) -> None:
    data = bytearray(zip_bytes({"Dockerfile": DOCKERFILE}, zipfile.ZIP_STORED))
    data[data.index(b"FROM")] = ord("G")
    with pytest.raises(ArchiveRejected, match="fails its checksum"):
        extract_archive(io.BytesIO(bytes(data)), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_failure_leaves_nothing_in_a_new_destination(tmp_path: Path) -> None:
    members = [tar_file("Dockerfile", DOCKERFILE), tar_file("a/b/c", b"x" * 1000)]
    data = tar_bytes([*members, tar_special("zz", tarfile.FIFOTYPE)], "gz")
    destination = tmp_path / "new"
    with pytest.raises(ArchiveRejected, match="named pipe"):
        extract_archive(io.BytesIO(data), destination)
    assert not destination.exists()


def test_failure_leaves_an_existing_destination_as_it_was(tmp_path: Path) -> None:
    destination = tmp_path / "existing"
    destination.mkdir()
    (destination / "keep.txt").write_text("mine")
    data = tar_bytes(
        [
            tar_file("app/Dockerfile", DOCKERFILE),
            tar_file("app/x", b"x"),
            tar_link("app/l", "../.."),
        ]
    )
    with pytest.raises(ArchiveRejected) as caught:
        extract_archive(io.BytesIO(data), destination)
    assert caught.value.reason == "link-escape"
    assert os.listdir(destination) == ["keep.txt"]


def test_existing_symlink_in_destination_is_never_written_through(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "target").write_text("precious")
    destination = tmp_path / "dest"
    destination.mkdir()
    (destination / "Dockerfile").symlink_to(outside / "target")
    (destination / "static").symlink_to(outside)
    data = zip_bytes({"Dockerfile": DOCKERFILE, "static/target": b"overwritten"})
    with pytest.raises(
        ArchiveRejected, match="'Dockerfile' is already in the destination as a link"
    ) as caught:
        extract_archive(io.BytesIO(data), destination)
    assert caught.value.reason == "link-escape"
    assert (outside / "target").read_text() == "precious"
    assert sorted(os.listdir(outside)) == ["target"]
    assert sorted(os.listdir(destination)) == ["Dockerfile", "static"]
    assert (destination / "Dockerfile").is_symlink()


@pytest.mark.parametrize(
    ("members", "reason", "match"),
    [
        (
            [tar_dir("sub"), tar_link("link", "sub"), tar_file("link/x", b"x")],
            "link-escape",
            "'link/x' would be written through the link 'link'",
        ),
        (
            [tar_file("a", b"x"), tar_file("a/b", b"y")],
            "path-conflict",
            "'a/b' would be written inside 'a', a file",
        ),
        (
            [tar_file("a/b", b"y"), tar_link("a", "a/b")],
            "link-escape",
            "'a' is a link, but the archive also puts entries inside it",
        ),
        (
            [tar_file("a/b", b"y"), tar_file("a", b"x")],
            "path-conflict",
            "'a' is a file, but the archive also puts entries inside it",
        ),
    ],
)
def test_extraction_refuses_conflicts_as_it_meets_them(
    tmp_path: Path, members: list[tuple[tarfile.TarInfo, bytes]], reason: str, match: str
) -> None:
    data = tar_bytes([tar_file("Dockerfile", DOCKERFILE), *members])
    with pytest.raises(ArchiveRejected, match=match) as caught:
        extract_archive(io.BytesIO(data), tmp_path / "out")
    assert caught.value.reason == reason
    assert not (tmp_path / "out").exists()
    with pytest.raises(ArchiveRejected) as inspected:
        inspect(data)
    assert inspected.value.reason == reason


def test_extraction_checks_again_without_an_inspection(tmp_path: Path) -> None:
    good = zip_bytes({"Dockerfile": DOCKERFILE})
    inspect(good)
    bad = zip_bytes({"Dockerfile": DOCKERFILE, "../evil": b"x"})
    with pytest.raises(ArchiveRejected, match=r"'\.\.'"):
        extract_archive(io.BytesIO(bad), tmp_path / "out")
    assert not (tmp_path / "evil").exists()
    assert not (tmp_path / "out").exists()


def test_extraction_refuses_bombs_before_writing_them(tmp_path: Path) -> None:
    with pytest.raises(ArchiveRejected) as caught:
        extract_archive(io.BytesIO(tar_of_zeros("z", 50 * MiB)), tmp_path / "out")
    assert caught.value.reason == "compression-bomb"
    assert not (tmp_path / "out").exists()
