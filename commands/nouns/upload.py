"""`upload NAME < app.zip`: stdin becomes the project's next version, through the same upload
path and checks as SFTP and scp (core/archives/service.py), streamed: never all in memory."""

from __future__ import annotations

import argparse

from commands import shapes
from commands.base import Context, Noun, Verb, command
from commands.parser import CommandParser
from commands.streams import checkpoint
from core.errors import ValidationError

NOTHING = "Nothing arrived on stdin: upload NAME < app.zip"


def guess_filename(first: bytes) -> str:
    """A name for an archive that came without one, from its first bytes (the checks look at
    the content anyway; the name only says how it unpacks)."""
    if first.startswith(b"PK"):
        return "app.zip"
    if first.startswith(b"\x1f\x8b"):
        return "app.tar.gz"
    return "app.tar"


def arguments(parser: CommandParser) -> None:
    parser.add_argument(
        "--filename", help="the archive's name (default: app.zip, app.tar.gz or app.tar)"
    )


async def upload(ctx: Context, args: argparse.Namespace) -> None:
    chunk = await ctx.stdin.read()
    if not chunk:
        raise ValidationError(NOTHING)
    filename = args.filename or guess_filename(chunk)
    transfer = await ctx.services.archives.begin_upload(ctx.actor, args.project, filename)
    try:
        while chunk:
            checkpoint()
            await transfer.write(chunk)
            chunk = await ctx.stdin.read()
        stored = await transfer.finish()
    except BaseException:
        await transfer.abort()  # nothing half-stored: a refused or cut upload leaves no trace
        raise
    ctx.out.result(shapes.archive(stored, transfer.project.name), stored.name)
    ctx.out.notice(f"{transfer.project.name}: stored {transfer.filename} as {stored.name}")


NOUNS: tuple[Noun, ...] = (
    command(
        "upload",
        Verb(
            "",
            "upload an archive from stdin as the project's next version",
            "deploy",
            upload,
            arguments,
            description="Upload the archive on stdin: upload NAME < app.zip",
        ),
    ),
)
