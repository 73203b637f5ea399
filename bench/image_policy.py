"""What the image policy adds to a build, against the real dockerd; prints a markdown table.

    .venv/bin/python bench/image_policy.py [--runs 20] [--foreign 10,100]

It `docker import`s a busybox base image (nothing is pulled), then for each count N makes N
images labelled as other projects' (`ghst.*` labels of a bench instance; a COPY step each, no
RUN), and measures, each as the median of `--runs`:

- pin: `ImagePolicy.pin_build` of a two-stage Dockerfile (read it, resolve and check two FROMs
  and a COPY --from, write the pinned copy), i.e. what runs before `engine.build`;
- verify, first: `verify_built` of an image of the project's own, with an empty cache of other
  images' layers (a fresh worker's first build);
- verify: the same again (the layers of images already seen are cached; ids never change);
- beside them, in the same run, the peer: a plain `docker build` of the same Dockerfile (no
  cache), as a panel without these checks (Dokku, CapRover) runs it, and the ratio of a checked
  build (pin + build + first verify) to that plain one.

Everything it made (labelled with its own instance, and the base image) is removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import platform
import shutil
import statistics
import sys
import tarfile
import tempfile
import time
import uuid
from pathlib import Path

import docker

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.runtime.engine import DockerEngine  # noqa: E402
from core.runtime.image_policy import ImagePolicy, Owner  # noqa: E402
from tests.fixtures_docker import busybox_rootfs  # noqa: E402

DOCKERFILE = "FROM {base} AS one\nCOPY page /page\nFROM {base}\nCOPY --from=one /page /www/page\n"


def build(client: docker.DockerClient, base: str, labels: dict[str, str], tag: str) -> str:
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        for name, data in (
            ("Dockerfile", f"FROM {base}\nCOPY page /page\n".encode()),
            ("page", uuid.uuid4().hex.encode()),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    context.seek(0)
    image, _ = client.images.build(
        fileobj=context, custom_context=True, tag=tag, labels=labels, rm=True
    )
    return str(image.id)


def plain_build(client: docker.DockerClient, app: Path, tag: str) -> None:
    """The same Dockerfile built as a panel without an image policy builds it."""
    client.images.build(
        path=str(app), tag=tag, labels={"ghst.instance": tag.split("/")[0]}, rm=True, nocache=True
    )


async def measure(runs: int, count: int, client: docker.DockerClient, base: str) -> list[str]:
    instance = f"bench{uuid.uuid4().hex[:8]}"
    engine = DockerEngine(instance=instance)
    owner = Owner(instance, "mine", "1")
    try:
        for number in range(count):
            labels = {"ghst.instance": instance, "ghst.project": f"p{number}", "ghst.user": "2"}
            await asyncio.to_thread(build, client, base, labels, f"{instance}/p{number}:1")
        own = {"ghst.instance": instance, "ghst.project": "mine", "ghst.user": "1"}
        mine = f"{instance}/mine:1"
        await asyncio.to_thread(build, client, base, own, mine)
        pins, firsts, agains, plains = [], [], [], []
        with tempfile.TemporaryDirectory() as folder:
            app = Path(folder)
            (app / "Dockerfile").write_text(DOCKERFILE.format(base=base))
            (app / "page").write_text("page")
            for _ in range(runs):
                policy = ImagePolicy(engine)
                started = time.perf_counter()
                pinned = await policy.pin_build(app, app, "Dockerfile", owner)
                pins.append(time.perf_counter() - started)
                (app / pinned.dockerfile).unlink()
                started = time.perf_counter()
                await policy.verify_built(mine, owner, pinned)
                firsts.append(time.perf_counter() - started)
                started = time.perf_counter()
                await policy.verify_built(mine, owner, pinned)
                agains.append(time.perf_counter() - started)
                started = time.perf_counter()
                await asyncio.to_thread(plain_build, client, app, f"{instance}/plain:1")
                plains.append(time.perf_counter() - started)
        plain = statistics.median(plains)
        return [
            f"| pin (before the build), {count} other projects' images | "
            f"{statistics.median(pins) * 1000:.1f} ms |",
            f"| verify (after the build), first, {count} other images | "
            f"{statistics.median(firsts) * 1000:.1f} ms |",
            f"| verify (after the build), cached, {count} other images | "
            f"{statistics.median(agains) * 1000:.1f} ms |",
            f"| peer: plain `docker build`, no checks, {count} other images | "
            f"{plain * 1000:.1f} ms |",
            f"| checked build / plain build, {count} other images | "
            f"{(plain + statistics.median(pins) + statistics.median(firsts)) / plain:.2f}x |",
        ]
    finally:
        await engine.remove_labelled({})
        await engine.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--foreign", default="10,100")
    options = parser.parse_args()
    client = docker.from_env(timeout=120)
    base = f"bench-policy/busybox:{uuid.uuid4().hex[:8]}"
    repository, tag = base.split(":")
    client.api.import_image_from_data(busybox_rootfs(), repository=repository, tag=tag)
    rows: list[str] = []
    try:
        for count in (int(part) for part in options.foreign.split(",")):
            rows += await measure(options.runs, count, client, base)
    finally:
        client.images.remove(base, force=True)
        client.close()
    print(f"ghst image policy, {platform.machine()}, median of {options.runs}\n")
    print("| Measure | Result |\n|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    if shutil.which("busybox") is None and not Path("/bin/busybox").exists():
        sys.exit("busybox-static is needed for the base image: apt-get install busybox-static")
    asyncio.run(main())
