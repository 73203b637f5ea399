"""Which images a tenant's build or compose service may use, enforced on what dockerd really uses.

dockerd resolves `FROM`, `COPY --from` and a compose `image:` against every local image, so
without a check a tenant builds on (and serves the files of) another tenant's image. The rule:
a build or a service may use

- its own project's images: the panel's labels say this instance, this project and this user
  (images of the same user's other projects are refused too: a project's images are its own);
- base images the operator allows: named local images the panel did not make (no `ghst.*`
  label, whatever the instance), restricted to the `base_images` patterns when they are set.

How it is enforced, in three steps:

1. `pin_build` reads the Dockerfile as the classic builder does (core/runtime/dockerfile.py), expands
   `ARG`s with the build args the panel passes, resolves every `FROM` and `COPY --from` that is
   not a stage to a local image id and checks it, checks the `ONBUILD` triggers of those images
   and of the file, and refuses `RUN --mount` (BuildKit only) and, unless allowed, remote `ADD`.
2. It writes a pinned copy of the Dockerfile, each image reference replaced by the id it checked,
   as a new file in the build context: dockerd builds exactly what was checked. The build cache
   is limited to the project's own images (`cache_from`), so a step never reuses another
   project's layers.
3. `verify_built` checks what the build produced: no image in its parent chain and no layer of
   it (RootFS diff_ids) may come only from other projects' images.

    ValidationError
    └── ImageRefused   a build or a service names an image it may not use, or used one anyway
"""

from __future__ import annotations

import asyncio
import fnmatch
import json
import logging
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from core.confined import open_dir_beneath, read_beneath, resolve_dir_beneath
from core.errors import PanelError, ValidationError
from core.installation import Installation
from core.runtime import dockerfile as df
from core.runtime.build_context import PINNED_PREFIX

log = logging.getLogger(__name__)

PANEL_LABEL_PREFIX = "ghst."
IDENTITY_LABELS = frozenset({"ghst.instance", "ghst.project", "ghst.user"})
PINNED_NAME = f"{PINNED_PREFIX}.Dockerfile"
# The layer of a step that changed no file: every image may have it.
EMPTY_LAYER = "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef"
# Build args dockerd accepts without an ARG line (proxies).
BUILTIN_ARGS = frozenset(
    f"{name}_PROXY" if upper else f"{name.lower()}_proxy"
    for name in ("HTTP", "HTTPS", "FTP", "NO", "ALL")
    for upper in (True, False)
)
_NAME_PATTERN = re.compile(r"[\s,]+")
_STAGE_INDEX = re.compile(r"^[0-9]+$")


class ImageRefused(ValidationError):
    title = "Image refused"


class ImageSource(Protocol):
    """What the policy asks of dockerd (core.runtime.engine.DockerEngine provides it)."""

    async def inspect_image(self, reference: str) -> dict[str, Any] | None: ...

    async def all_images(self) -> list[dict[str, Any]]: ...

    async def pull_image(self, reference: str) -> None: ...


@dataclass(frozen=True)
class Owner:
    """Whose build this is: the labels the panel puts on the project's images."""

    instance: str
    project: str
    user: str
    # This panel's identity: user ids and project names repeat across installations sharing a
    # dockerd, so the instance, project and user labels alone do not make an image this one's.
    installation: Installation | None = None

    def owns(self, labels: Mapping[str, str]) -> bool:
        return (
            labels.get("ghst.instance") == self.instance
            and labels.get("ghst.project") == self.project
            and labels.get("ghst.user") == self.user
            and (self.installation is None or self.installation.made(labels))
        )


@dataclass(frozen=True)
class PinnedBuild:
    dockerfile: str  # the pinned file's name, relative to the build context
    cache_from: tuple[str, ...]  # image ids the build cache may reuse steps of
    used: tuple[str, ...]  # ids of the images the build starts from or copies from


@dataclass
class _Stage:
    name: str
    env: dict[str, str]  # the image's ENV, then the stage's ENV
    args: dict[str, str] = field(default_factory=dict)  # ARGs declared in the stage

    def expansion(self) -> dict[str, str]:
        return {**self.args, **self.env}  # ENV wins over ARG, as in the builder


def parse_patterns(text: str) -> tuple[str, ...]:
    return tuple(part for part in _NAME_PATTERN.split(text.strip()) if part)


def _labels(attrs: Mapping[str, Any]) -> dict[str, str]:
    return dict((attrs.get("Config") or {}).get("Labels") or {})


def _panel_made(labels: Mapping[str, str]) -> bool:
    return any(key.startswith(PANEL_LABEL_PREFIX) for key in labels)


def _names(attrs: Mapping[str, Any]) -> list[str]:
    tags = list(attrs.get("RepoTags") or []) + list(attrs.get("RepoDigests") or [])
    return [name for name in tags if name and not name.startswith("<none>")]


def _env_list(entries: Iterable[str]) -> dict[str, str]:
    env: dict[str, str] = {}
    for entry in entries:
        key, _, value = entry.partition("=")
        env.setdefault(key, value)
    return env


class ImagePolicy:
    def __init__(
        self,
        source: ImageSource,
        *,
        base_patterns: Sequence[str] = (),
        allow_remote_add: bool = False,
        allow_pull: bool = False,
        instance: str = "",
    ) -> None:
        self.source = source
        # The panel's own image names are never looked for in a registry.
        # Any installation's names under this instance (`<instance>/…`, `<instance>-<id>/…`).
        self._own_namespace = instance or None
        self._patterns = tuple(base_patterns)
        self._allow_remote_add = allow_remote_add
        self._allow_pull = allow_pull
        self._layers: dict[str, tuple[str, ...]] = {}  # image id -> diff_ids (ids never change)

    def _is_panel_name(self, reference: str) -> bool:
        """Named like a panel's image under this instance (`<instance>[-<id>]/<project>:<n>`)."""
        repository, slash, _ = reference.partition("/")
        own = self._own_namespace
        return bool(slash and own) and (repository == own or repository.startswith(f"{own}-"))

    # --- one image ------------------------------------------------------------------------

    async def check_reference(self, reference: str, owner: Owner, where: str) -> str:
        """The id of the local image `reference` names, if `owner` may use it; else
        ImageRefused saying why. `where` tells the user which line or service named it."""
        attrs = await self.attrs_of(reference, where)
        self.check_attrs(reference, attrs, owner, where)
        return str(attrs["Id"])

    async def attrs_of(self, reference: str, where: str) -> dict[str, Any]:
        attrs = await self.source.inspect_image(reference) if reference else None
        ours = self._is_panel_name(reference)
        if attrs is None and self._allow_pull and _pullable(reference) and not ours:
            try:
                await self.source.pull_image(reference)
            except PanelError as error:  # not in a registry, say: the message below says so
                log.info("could not pull %s: %s", reference, error)
            attrs = await self.source.inspect_image(reference)
        if attrs is None:
            fetched = (
                "could not be downloaded" if self._allow_pull else "this panel does not download it"
            )
            raise ImageRefused(
                f"{where}: the image {reference!r} is not on this server, and {fetched}. "
                "Build FROM one of the server's base images."
            )
        return attrs

    def check_attrs(
        self, reference: str, attrs: Mapping[str, Any], owner: Owner, where: str
    ) -> None:
        labels = _labels(attrs)
        if _panel_made(labels):
            if owner.owns(labels):
                return
            raise ImageRefused(
                f"{where}: {reference!r} is another project's image, and a project may only "
                "use its own images. Build FROM a base image instead."
            )
        names = _names(attrs)
        if not names:
            raise ImageRefused(
                f"{where}: {reference!r} is an image without a name on this server (a step of "
                "some build); only named base images can be used. Build FROM a base image."
            )
        if self._patterns and not any(
            fnmatch.fnmatchcase(name, pattern) for name in names for pattern in self._patterns
        ):
            raise ImageRefused(
                f"{where}: {reference!r} is not one of the base images this server allows "
                f"({', '.join(self._patterns)})."
            )

    # --- before a build -------------------------------------------------------------------

    async def pin_build(
        self,
        app_dir: Path,
        context: Path,
        dockerfile: str,
        owner: Owner,
        *,
        build_args: Mapping[str, str] | None = None,
        target: str | None = None,
    ) -> PinnedBuild:
        """Check the Dockerfile `dockerfile` (relative to `context`, inside `app_dir`) and
        write its pinned copy into `context`; see the module docstring."""
        text = await asyncio.to_thread(_read_dockerfile, app_dir, context, dockerfile)
        parsed = df.parse(text)
        checker = _Checker(self, owner, parsed, dict(build_args or {}), target)
        replaced = await checker.run()
        pinned = df.Dockerfile(parsed.escape, parsed.instructions[: checker.end])
        name = await asyncio.to_thread(_write_pinned, app_dir, context, df.render(pinned, replaced))
        own = await self._own_images(owner)
        used = tuple(dict.fromkeys(checker.used))
        return PinnedBuild(name, tuple(dict.fromkeys([*own, *used])), used)

    async def _own_images(self, owner: Owner) -> list[str]:
        return [
            str(row["Id"])
            for row in await self.source.all_images()
            if owner.owns(row.get("Labels") or {})
        ]

    def check_add(
        self, instruction: df.Instruction, env: Mapping[str, str], escape: str
    ) -> df.Instruction | None:
        """ImageRefused for an ADD of a URL (unless allowed); else the ADD with its sources
        written as the literal paths that were checked (None: leave it as it is)."""
        if self._allow_remote_add:
            return None
        words = df.json_or_words(instruction.args)
        if len(words) < 2:
            return None  # dockerd explains
        sources: list[str] = []
        for source in words[:-1]:
            expanded = df.expand(source, env, escape)
            for text in (source, expanded):
                if "://" in text or text.lower().startswith("git@"):
                    raise ImageRefused(
                        f"Line {instruction.line} (ADD {source}): ADD from a URL is not allowed "
                        "here, because dockerd would fetch it from the server's own network. "
                        "Download the file into your app folder and COPY it instead."
                    )
            sources.append(df.literal(expanded, escape))
        args = json.dumps([*sources, words[-1]], ensure_ascii=False)
        return df.Instruction("ADD", instruction.flags, args, instruction.line)

    # --- after a build --------------------------------------------------------------------

    async def verify_built(self, image: str, owner: Owner, pinned: PinnedBuild) -> None:
        """ImageRefused if `image` (just built for `owner`) holds a step or a layer that only
        other projects' images have."""
        built = await self.source.inspect_image(image)
        if built is None:
            raise ImageRefused(f"The built image {image} is gone.")
        rows = await self.source.all_images()
        parents = {str(row["Id"]): str(row.get("ParentId") or "") for row in rows}
        # Classified again from the labels, whatever the first check decided: the images the
        # build started from count as allowed only if no other project made them.
        foreign: list[str] = []
        allowed: list[str] = []
        labelled = {str(row["Id"]): row.get("Labels") or {} for row in rows}
        for image_id in pinned.used:
            if not _panel_made(labelled.get(image_id, {})):
                allowed.append(image_id)
        for image_id, labels in labelled.items():
            # Steps that add the panel's labels one at a time carry only some of them: such a
            # step is judged by the complete image above it, whoever's it is.
            if image_id == built["Id"] or not labels.keys() >= IDENTITY_LABELS:
                continue
            (allowed if owner.owns(labels) else foreign).append(image_id)
        foreign_chain = _chains(foreign, parents)
        allowed_chain = _chains(allowed, parents)
        ancestor = parents.get(str(built["Id"]), "") or str(built.get("Parent") or "")
        seen: set[str] = set()
        while ancestor and ancestor not in seen:
            seen.add(ancestor)
            if ancestor in foreign_chain and ancestor not in allowed_chain:
                raise ImageRefused(
                    "The build reused a step of another project's image, which is not allowed: "
                    "build FROM a base image instead."
                )
            ancestor = parents.get(ancestor, "")
        layers = set((built.get("RootFS") or {}).get("Layers") or ()) - {EMPTY_LAYER}
        if not layers:
            return
        allowed_layers: set[str] = set()
        for image_id in allowed:
            allowed_layers.update(await self._layers_of(image_id))
        suspicious = layers - allowed_layers
        for image_id in foreign:
            if suspicious & set(await self._layers_of(image_id)):
                raise ImageRefused(
                    "The built image contains files of another project's image, which is not "
                    "allowed: build FROM a base image instead."
                )

    async def _layers_of(self, image_id: str) -> tuple[str, ...]:
        if image_id not in self._layers:
            attrs = await self.source.inspect_image(image_id)
            layers = tuple((attrs or {}).get("RootFS", {}).get("Layers") or ())
            if attrs is None:
                return layers
            if len(self._layers) > 50_000:
                self._layers.clear()
            self._layers[image_id] = layers
        return self._layers[image_id]


def _chains(roots: Iterable[str], parents: Mapping[str, str]) -> set[str]:
    """The images and all their ancestors."""
    found: set[str] = set()
    for root in roots:
        current = root
        while current and current not in found:
            found.add(current)
            current = parents.get(current, "")
    return found


def _pullable(reference: str) -> bool:
    """A name a registry could serve (not an image id)."""
    bare = reference.removeprefix("sha256:")
    return not re.fullmatch(r"[0-9a-f]{6,64}", bare) and not reference.startswith("sha256:")


class _Checker:
    """One walk through a parsed Dockerfile, as the classic builder dispatches it."""

    def __init__(
        self,
        policy: ImagePolicy,
        owner: Owner,
        parsed: df.Dockerfile,
        build_args: dict[str, str],
        target: str | None,
    ) -> None:
        self.policy = policy
        self.owner = owner
        self.parsed = parsed
        self.build_args = build_args
        self.target = target.lower() if target else None
        self.used: list[str] = []
        self.end = len(parsed.instructions)
        self.stages: list[_Stage] = []
        self.meta: dict[str, str] = {}  # ARGs before the first FROM, with their values

    def _where(self, instruction: df.Instruction) -> str:
        shown = instruction.shown
        if len(shown) > 80:
            shown = shown[:79] + "…"
        return f"Line {instruction.line} ({shown})"

    async def run(self) -> dict[int, df.Instruction]:
        replaced: dict[int, df.Instruction] = {}
        stage: _Stage | None = None
        for number, instruction in enumerate(self.parsed.instructions):
            keyword = instruction.keyword
            if keyword == "FROM":
                if stage is not None and self.target is not None and stage.name == self.target:
                    self.end = number  # later stages are never built
                    return replaced
                stage, replaced[number] = await self._from(instruction)
                continue
            if stage is None:
                if keyword == "ARG":
                    self._meta_arg(instruction)
                    continue
                raise ImageRefused(
                    f"{self._where(instruction)}: a Dockerfile starts with FROM "
                    "(only ARG lines may come before it)."
                )
            pinned_line = await self._in_stage(instruction, stage, trigger=False)
            if pinned_line is not None:
                replaced[number] = pinned_line
        if stage is None:
            raise ImageRefused("The Dockerfile has no FROM line.")
        if self.target is not None and not any(s.name == self.target for s in self.stages):
            raise ImageRefused(f"The Dockerfile has no stage named {self.target!r} to build.")
        return replaced

    def _arg_pairs(self, instruction: df.Instruction) -> list[tuple[str, str | None]]:
        pairs: list[tuple[str, str | None]] = []
        for word in df.split_words(instruction.args):
            name, equals, default = word.partition("=")
            pairs.append((name, default if equals else None))
        if not pairs:
            raise ImageRefused(f"{self._where(instruction)}: ARG needs a name.")
        return pairs

    def _meta_arg(self, instruction: df.Instruction) -> None:
        for name, default in self._arg_pairs(instruction):
            if name in self.build_args:
                self.meta[name] = self.build_args[name]
            elif default is not None:
                self.meta[name] = self._expand(default, self._meta_env(), instruction)
            else:
                self.meta.pop(name, None)

    def _meta_env(self) -> dict[str, str]:
        builtin = {k: v for k, v in self.build_args.items() if k in BUILTIN_ARGS}
        return {**builtin, **self.meta}

    def _expand(self, word: str, env: Mapping[str, str], instruction: df.Instruction) -> str:
        try:
            return df.expand(word, env, self.parsed.escape)
        except df.DockerfileError as error:
            raise ImageRefused(f"{self._where(instruction)}: {error}") from None

    def _stage_named(self, name: str) -> _Stage | None:
        lowered = name.lower()
        for stage in self.stages:
            if stage.name and stage.name == lowered:
                return stage
        if _STAGE_INDEX.match(name) and int(name) < len(self.stages):
            return self.stages[int(name)]
        return None

    async def _from(self, instruction: df.Instruction) -> tuple[_Stage, df.Instruction]:
        words = df.split_words(instruction.args)
        if len(words) == 3 and words[1].lower() == "as":
            name = words[2].lower()
        elif len(words) == 1:
            name = ""
        else:
            raise ImageRefused(
                f"{self._where(instruction)}: FROM takes an image and optionally AS <name>."
            )
        for flag, _ in instruction.flags:
            if flag.lower() != "platform":
                raise ImageRefused(f"{self._where(instruction)}: FROM has no --{flag} option.")
        base = self._expand(words[0], self._meta_env(), instruction).strip()
        where = self._where(instruction)
        earlier = None if _STAGE_INDEX.match(base) else self._stage_named(base)
        # Every FROM is written back literal (an image id, a stage name, scratch): how dockerd
        # would have expanded the original no longer matters.
        literal = base.lower() if earlier is not None else base
        if base == "scratch":
            stage = _Stage(name, {})
        elif earlier is not None:
            stage = _Stage(name, dict(earlier.env))
        else:
            if not base:
                raise ImageRefused(f"{where}: FROM names no image.")
            attrs = await self.policy.attrs_of(base, where)
            self.policy.check_attrs(base, attrs, self.owner, where)
            literal = str(attrs["Id"])
            self.used.append(literal)
            config = attrs.get("Config") or {}
            stage = _Stage(name, _env_list(config.get("Env") or ()))
            for trigger in config.get("OnBuild") or ():
                await self._trigger(str(trigger), stage, base, instruction)
        # Proxy build args need no ARG line, in a stage as before the first FROM.
        stage.args.update((k, v) for k, v in self.build_args.items() if k in BUILTIN_ARGS)
        self.stages.append(stage)
        rest = f"{literal} AS {name}" if name else literal
        return stage, df.Instruction("FROM", instruction.flags, rest, instruction.line)

    async def _trigger(
        self, text: str, stage: _Stage, base: str, instruction: df.Instruction
    ) -> None:
        try:
            inner = df.parse_line(text, instruction.line)
            await self._in_stage(inner, stage, trigger=True)
        except ImageRefused as error:
            raise ImageRefused(
                f"{self._where(instruction)}: the image {base!r} has an ONBUILD trigger "
                f"({text}) that is not allowed: {error}"
            ) from None

    async def _in_stage(
        self, instruction: df.Instruction, stage: _Stage, trigger: bool
    ) -> df.Instruction | None:
        keyword = instruction.keyword
        where = self._where(instruction)
        if keyword == "ARG":
            for name, default in self._arg_pairs(instruction):
                if name in self.build_args:
                    stage.args[name] = self.build_args[name]
                elif default is not None:
                    stage.args[name] = self._expand(default, stage.expansion(), instruction)
                elif name in self.meta:
                    stage.args[name] = self.meta[name]
            return None
        if keyword == "ENV":
            stage.env.update(self._env_pairs(instruction, stage))
            return None
        if keyword == "RUN":
            for flag, _ in instruction.flags:
                raise ImageRefused(
                    f"{where}: RUN --{flag} needs BuildKit, which this panel does not use"
                    + (
                        "; and a build may not mount another image. COPY what you need from "
                        "a stage of your own Dockerfile instead."
                        if flag.lower() == "mount"
                        else "."
                    )
                )
            return None
        if keyword == "ADD":
            try:
                return self.policy.check_add(instruction, stage.expansion(), self.parsed.escape)
            except df.DockerfileError as error:
                raise ImageRefused(f"{where}: {error}") from None
        if keyword == "COPY":
            source = instruction.flag("from")
            if source is None or self._stage_named(source) is not None:
                return None
            image_id = await self.policy.check_reference(source, self.owner, where)
            self.used.append(image_id)
            flags = tuple(
                (key, image_id if key.lower() == "from" else value)
                for key, value in instruction.flags
            )
            return df.Instruction("COPY", flags, instruction.args, instruction.line)
        if keyword == "ONBUILD":
            if trigger:
                raise ImageRefused(f"{where}: ONBUILD cannot hold another ONBUILD.")
            await self._own_trigger(instruction, stage)
            return None
        return None

    async def _own_trigger(self, instruction: df.Instruction, stage: _Stage) -> None:
        """An ONBUILD line of this file: it runs when some build starts FROM this image, and
        is checked then; here only what is plainly refused anyway."""
        inner = df.parse_line(instruction.args, instruction.line)
        if inner.keyword == "ONBUILD":
            raise ImageRefused(f"{self._where(instruction)}: ONBUILD cannot hold another ONBUILD.")
        source = inner.flag("from") if inner.keyword == "COPY" else None
        if source:
            # Possibly a stage of the Dockerfile that will build on this image: only an image
            # that exists now is checked here.
            attrs = await self.policy.source.inspect_image(source)
            if attrs is not None and self._stage_named(source) is None:
                self.policy.check_attrs(source, attrs, self.owner, self._where(instruction))
            return
        scratch = _Stage(stage.name, dict(stage.env), dict(stage.args))
        await self._in_stage(inner, scratch, trigger=True)

    def _env_pairs(self, instruction: df.Instruction, stage: _Stage) -> dict[str, str]:
        words = _quoted_words(instruction.args)
        env = stage.expansion()
        if words and "=" not in words[0]:  # the old form: ENV NAME the value
            parts = re.split(r"[\t\v\f\r ]+", instruction.args.strip(), maxsplit=1)
            value = parts[1] if len(parts) == 2 else ""
            return {parts[0]: self._expand(value, env, instruction)}
        found: dict[str, str] = {}
        for word in words:
            key, _, value = word.partition("=")
            found[key] = self._expand(value, {**env, **found}, instruction)
        return found


def _quoted_words(text: str) -> list[str]:
    """Blank-separated words, quotes kept (the builder's parseWords for ENV and LABEL)."""
    words: list[str] = []
    word = ""
    quote = ""
    escaped = False
    for ch in text:
        if escaped:
            word += ch
            escaped = False
            continue
        if ch == "\\":
            word += ch
            escaped = True
            continue
        if quote:
            if ch == quote:
                quote = ""
            word += ch
            continue
        if ch in ("'", '"'):
            quote = ch
            word += ch
            continue
        if ch.isspace():
            if word:
                words.append(word)
                word = ""
            continue
        word += ch
    if word:
        words.append(word)
    return words


def _context_path(app_dir: Path, context: Path) -> str:
    try:
        return context.relative_to(app_dir).as_posix()
    except ValueError:
        raise ImageRefused("The build folder is outside the app folder.") from None


def _read_dockerfile(app_dir: Path, context: Path, name: str) -> str:
    """The Dockerfile's text: a regular file inside the build context (as the kernel resolves
    its path, never leaving the app folder), at most 1 MiB."""
    folder = resolve_dir_beneath(app_dir, _context_path(app_dir, context), what="The build context")
    data = read_beneath(
        folder,
        name,
        limit=df.MAX_DOCKERFILE_BYTES,
        what="The Dockerfile",
        inside="the build context folder",
    )
    return data.decode("utf-8", "surrogateescape")


def _write_pinned(app_dir: Path, context: Path, text: str) -> str:
    """Write `text` as a new file of the panel's in `context` (inside the app folder); its name."""
    where = open_dir_beneath(app_dir, _context_path(app_dir, context), what="The build context")
    try:
        folder = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=where)
    finally:
        os.close(where)
    try:
        for attempt in range(100):
            name = PINNED_NAME if attempt == 0 else f"{PINNED_PREFIX}-{attempt}.Dockerfile"
            try:
                fd = os.open(
                    name,
                    os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                    0o644,
                    dir_fd=folder,
                )
            except FileExistsError:
                continue
            with os.fdopen(fd, "wb") as file:
                file.write(text.encode("utf-8", "surrogateescape"))
            return name
    finally:
        os.close(folder)
    raise ImageRefused("The app folder holds too many files named like the panel's own.")
