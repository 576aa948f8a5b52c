"""Build: a Dockerfile and a context into images, the classic builder's way, with a layer cache.

Strategy: the Dockerfile is parsed once (berth.builder.dockerfile); the stages
the target needs are built in order, each step producing an image (as the
classic builder does: every step's result is an image, which is also what
the cache points at). RUN runs the command as a real container through the
same runtime drivers as `docker run` (so `isolation=hyperv` builds in VMs),
then the container's overlay upper directory becomes the step's layer;
COPY/ADD assemble their files in a scratch directory that becomes the layer;
metadata instructions change only the config (no layer). A step's cache key
is its parent image, the instruction after variable expansion, the build
arguments it can see, and for COPY/ADD a checksum of the sources; a hit
reuses the recorded image without running anything. Nothing is tagged until
the whole build succeeded, so a failed build leaves no half image behind a
name, and the cache keeps every step that finished.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

from berth.builder import configedit
from berth.builder import dockerfile as dfp
from berth.builder.context import Context
from berth.builder.copyops import add_into, copy_into
from berth.builder.download import download
from berth.builder.imagetree import ImageTree
from berth.builder.owners import Owner, resolve_owner
from berth.builder.sources import find_sources
from berth.errors import BerthError, InvalidArgument, NotFound
from berth.host import fs, mount, spool
from berth.image import fsexport
from berth.metadata.db import Database
from berth.oci import image as oci_image
from berth.oci import platform as platforms
from berth.oci import reference
from berth.oci.imageconfig import HistoryEntry, RuntimeConfig
from berth.oci.platform import Platform
from berth.services.buildcache import BuildCache
from berth.services.buildrun import RunSteps
from berth.services.buildtypes import (
    BuildOptions,
    Emit,
    Puller,
    StageState,
    say,
    short,
)
from berth.services.containers import Containers
from berth.services.events import Events
from berth.services.imageio import ImageIO
from berth.services.images import Images
from berth.services.lifecycle import Lifecycle

log = logging.getLogger(__name__)

PREDEFINED_ARGS = ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY", "ftp_proxy",
                   "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy")
SCRATCH_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"  # FROM scratch's Env
PLATFORM_ARGS = ("TARGETPLATFORM", "TARGETOS", "TARGETARCH", "TARGETVARIANT", "BUILDPLATFORM", "BUILDOS",
                 "BUILDARCH", "BUILDVARIANT")


# a config instruction's edit: the stage's runtime defaults in, the edited ones and the author (MAINTAINER) out
ConfigEdit = Callable[[RuntimeConfig], tuple[RuntimeConfig, str]]


class Builder:
    def __init__(self, images: Images, imageio: ImageIO, containers: Containers, lifecycle: Lifecycle,
                 db: Database, events: Events, root: str, distribution: Puller | None = None) -> None:
        self._images, self._imageio, self._containers, self._db, self._events = \
            images, imageio, containers, db, events
        self._lifecycle = lifecycle
        self._cache = BuildCache(db, images)
        self._runs = RunSteps(containers, lifecycle, imageio, self._cache)
        self._distribution = distribution  # None: FROM uses local images only
        self._tmp = os.path.join(root, "build")
        os.makedirs(self._tmp, exist_ok=True)
        for stale in os.listdir(self._tmp):  # a crashed build's scratch trees (iterative: any depth)
            fs.rmtree(os.path.join(self._tmp, stale))

    # -- entry ------------------------------------------------------------------------
    async def build(self, body: AsyncIterator[bytes], opts: BuildOptions, emit: Emit) -> str:
        work = Path(await spool.settled(tempfile.mkdtemp, None, "b-", self._tmp))
        if opts.cache_from:
            plat = opts.platform if "," not in opts.platform else ""  # one index per name: any platform's chain
            opts = dataclasses.replace(opts, cache_sources=self._cache.sources(opts.cache_from, plat))
        try:
            context_tar = work / "context.tar"
            await spool.to_file(body, context_tar)  # written in a thread, never on the event loop
            ctx = await asyncio.to_thread(_extract, context_tar, work / "ctx", opts.dockerfile)
            text = ctx.read_dockerfile(opts.dockerfile)
            df = dfp.parse(text)
            wanted = [p.strip() for p in opts.platform.split(",") if p.strip()]
            if len(wanted) > 1:
                image_id = await self._multi(df, ctx, opts, emit, work, wanted)
            else:
                image_id = await self._run(df, ctx, opts, emit, work)
        except RecursionError:  # the walks of a context (prune, checksums, copies) descend by recursion
            raise InvalidArgument(TOO_DEEP) from None
        except OSError as exc:
            if exc.errno == errno.ENAMETOOLONG:
                raise InvalidArgument(TOO_DEEP) from exc
            raise
        finally:
            await _discard(work)
        for tag in opts.tags:
            ref = reference.parse(tag)
            self._images.set_tag(str(ref), image_id)
            self._images.event("tag", image_id, str(ref))
        if opts.quiet:  # as dockerd: a quiet build's whole output is the image ID, as a stream line
            emit({"stream": f"{image_id}\n"})
            return image_id
        emit({"aux": {"ID": image_id}})
        emit({"stream": f"Successfully built {image_id[7:19]}\n"})
        for tag in opts.tags:
            emit({"stream": f"Successfully tagged {reference.parse(tag)}\n"})
        return image_id

    async def _multi(self, df: dfp.Dockerfile, ctx: Context, opts: BuildOptions, emit: Emit, work: Path,
                     wanted: list[str]) -> str:
        """One build per platform (foreign ones under emulation), joined in an image index."""
        built: list[tuple[str, str]] = []
        for plat in wanted:
            if not opts.quiet:
                emit({"stream": f"--- Building for {platforms.parse(plat)}\n"})
            built.append((plat, await self._run(df, ctx, dataclasses.replace(opts, platform=plat), emit, work)))
        manifests = []
        for plat, image in built:
            record = self._images.record(image)
            raw = self._images.manifest_bytes(image)
            manifests.append({"mediaType": oci_image.OCI_MANIFEST,
                              "digest": record.manifest, "size": len(raw),
                              "platform": platforms.to_dict(platforms.parse(plat))})
        index = json.dumps({"schemaVersion": 2, "mediaType": oci_image.OCI_INDEX,
                            "manifests": manifests}, separators=(",", ":")).encode()
        children = {self._images.record(i).manifest: i for _, i in built}
        parsed = oci_image.parse_manifest(index, what="the built index")
        assert isinstance(parsed, oci_image.ImageIndex)
        return await asyncio.to_thread(self._images.register_index, parsed, children)

    async def _run(self, df: dfp.Dockerfile, ctx: Context, opts: BuildOptions, emit: Emit, work: Path) -> str:
        if not df.stages:
            raise InvalidArgument("the Dockerfile has no FROM instruction")
        target = opts.target or None
        if target and df.stage(target) is None:
            raise InvalidArgument(f"failed to reach build target {target} in Dockerfile: no stage named {target}")
        needed = dfp.needed_stages(df, target)
        used_args: set[str] = set()
        meta: dict[str, str] = {}
        for ins in df.meta_args:
            for key, value in dfp.parse_kv(ins.args[0], df.escape, meta):
                used_args.add(key)
                meta[key] = opts.buildargs.get(key, value)
        total = sum(1 + len(df.stages[i].instructions) for i in needed)
        step = [0]
        results: dict[int, str] = {}
        last = ""
        for index in needed:
            stage = df.stages[index]
            last = await self._stage(df, stage, ctx, opts, emit, work, meta, results, used_args, step, total,
                                     index == needed[-1])
            results[index] = last
        unused = sorted(set(opts.buildargs) - used_args - set(PREDEFINED_ARGS))
        if unused and not opts.quiet:
            emit({"stream": f"[Warning] One or more build-args {unused} were not consumed\n"})
        return last

    # -- one stage -----------------------------------------------------------------------
    async def _stage(self, df: dfp.Dockerfile, stage: dfp.Stage, ctx: Context, opts: BuildOptions, emit: Emit,
                     work: Path, meta: dict[str, str], results: dict[int, str], used_args: set[str],
                     step: list[int], total: int, last: bool) -> str:
        base_name = dfp.expand(stage.base, meta, df.escape)
        plat = dfp.expand(stage.platform, meta, df.escape) if stage.platform else opts.platform
        step[0] += 1
        say(opts, emit, f"Step {step[0]}/{total} : FROM {base_name}"
                  + (f" AS {stage.name}" if stage.name else ""))
        state = await self._from(df, base_name, plat, results, opts, emit)
        say(opts, emit, f" ---> {short(state.image) if state.image else 'scratch'}")
        instructions = list(stage.instructions)
        triggers = list(state.config.on_build or ()) if state.image else []
        if triggers:
            state.config = dataclasses.replace(state.config, on_build=None)
            onbuild = dfp.parse("FROM scratch\n" + "\n".join(triggers)).stages[0].instructions
            instructions = onbuild + instructions
            say(opts, emit, f"# Executing {len(onbuild)} build trigger{'s' if len(onbuild) != 1 else ''}")
        own = {id(i) for i in stage.instructions}
        for ins in instructions:
            if id(ins) in own:  # build triggers run first, without a step number of their own
                step[0] += 1
                say(opts, emit, f"Step {step[0]}/{total} : {ins.original}")
            await self._step(df, ins, state, ctx, opts, emit, work, meta, results, used_args)
        if state.image is None:  # FROM scratch and nothing else: an empty image
            state.image = await asyncio.to_thread(self._imageio.derive, None, state.config, layer=None,
                                                  step=HistoryEntry(created_by="FROM scratch"), platform=state.platform)
        if opts.labels and last:
            state.config = dataclasses.replace(state.config, labels={**(state.config.labels or {}), **opts.labels})
            labelled = HistoryEntry(created_by="LABEL " + " ".join(f"{k}={v}" for k, v in opts.labels.items()))
            state.image = await asyncio.to_thread(self._imageio.derive, state.image, state.config, layer=None,
                                                  step=labelled, platform=state.platform)
        return state.image

    async def _from(self, df: dfp.Dockerfile, base: str, plat: str, results: dict[int, str], opts: BuildOptions,
                    emit: Emit) -> StageState:
        wanted = platforms.parse(plat) if plat else None
        if base == "scratch":
            return StageState(None, RuntimeConfig(env=(SCRATCH_PATH,)), wanted or platforms.host())
        found = df.stage(base)
        if found is not None and found.index in results:
            image = results[found.index]
        else:
            if opts.pull and self._distribution is not None:
                try:  # --pull: a newer base if the registry has one
                    await self._pull(base, plat, emit)
                except BerthError as exc:
                    emit({"stream": f"[Warning] --pull: {exc}; using the local {base}\n"})
            try:
                image = self._images.resolve(base, plat)
            except NotFound:
                if self._distribution is None:
                    raise
                image = await self._pull(base, plat, emit)
        config = self._images.config(image)
        state = StageState(image, config.runtime,
                           Platform(config.os or "linux", config.architecture or "amd64", config.variant))
        if state.config.shell:
            state.shell = list(state.config.shell)
        return state

    async def _pull(self, base: str, plat: str, emit: Emit) -> str:
        assert self._distribution is not None
        result = await self._distribution.pull(base, plat, None, lambda m: None)
        return str(result.image_id)

    # -- one step ------------------------------------------------------------------------
    async def _step(self, df: dfp.Dockerfile, ins: dfp.Instruction, state: StageState, ctx: Context,
                    opts: BuildOptions, emit: Emit, work: Path, meta: dict[str, str], results: dict[int, str],
                    used_args: set[str]) -> None:
        env = self._env(state, opts)
        cmd = ins.cmd
        if cmd == "ARG":
            for key, default in dfp.parse_arg(ins.args[0], df.escape, env):
                used_args.add(key)
                if key in opts.buildargs:
                    state.args[key] = opts.buildargs[key]
                elif default is not None:
                    state.args[key] = default
                elif key in meta:  # declared before FROM: its value carries into the stage
                    state.args[key] = meta[key]
                elif key in PLATFORM_ARGS:
                    state.args[key] = _platform_arg(key, state.platform)
            return await self._config_step(ins, state, opts, emit, lambda cfg: (cfg, ""), cache_extra=state.args)
        if cmd in ("RUN",):
            return await self._runs.run(ins, state, opts, emit, env)
        if cmd in ("COPY", "ADD"):
            return await self._copy_step(df, ins, state, ctx, opts, emit, env, results, work)
        edit = self._config_edit(df, ins, state, env)
        await self._config_step(ins, state, opts, emit, edit)

    def _env(self, state: StageState, opts: BuildOptions) -> dict[str, str]:
        """Variables a step sees: the image's ENV, then the stage's ARGs (ENV wins on the same name)."""
        env = dict(state.args)
        for entry in state.config.env or ():
            k, _, v = entry.partition("=")
            env[k] = v
        return env

    def _config_edit(self, df: dfp.Dockerfile, ins: dfp.Instruction, state: StageState,
                     env: dict[str, str]) -> ConfigEdit:
        def edit(cfg: RuntimeConfig) -> tuple[RuntimeConfig, str]:  # the same code as commit --change
            doc = cfg.to_doc()  # berth.builder.configedit edits the config's JSON form
            author = configedit.apply(doc, ins, env=env, escape=df.escape, shell=state.shell)
            if ins.cmd == "SHELL":
                state.shell = list(ins.args)
            return RuntimeConfig.from_doc(doc), author
        return edit

    async def _config_step(self, ins: dfp.Instruction, state: StageState, opts: BuildOptions, emit: Emit,
                           edit: ConfigEdit, cache_extra: Any = None) -> None:
        cfg, author = edit(state.config)
        step = HistoryEntry(created_by=f"/bin/sh -c #(nop) {ins.original}")
        key = self._cache.key(state, ins.original, cache_extra if cache_extra is not None else {})
        image = self._cache.cached(key, opts)
        if image is not None:
            say(opts, emit, " ---> Using cache")
        else:
            image = await asyncio.to_thread(self._imageio.derive, state.image, cfg, layer=None,
                                            step=step, author=author, platform=state.platform)
            self._cache.remember(key, image)
        state.image = image
        state.config = cfg
        say(opts, emit, f" ---> {short(image)}")

    # -- COPY / ADD --------------------------------------------------------------------------
    async def _copy_step(self, df: dfp.Dockerfile, ins: dfp.Instruction, state: StageState, ctx: Context,
                         opts: BuildOptions, emit: Emit, env: dict[str, str], results: dict[int, str],
                         work: Path) -> None:
        words = list(ins.args) if ins.json else ins.words()
        heredoc_words = [w for w in words[:-1] if "<<" in w]
        words = [w if "<<" in w else dfp.expand(w, env, df.escape) for w in words]
        heredocs = {h.name: h for h in ins.heredocs}
        if len(words) < 2:
            raise InvalidArgument(f"Dockerfile line {ins.line}: {ins.cmd} requires at least two arguments")
        dest = words[-1]
        srcs = [w for w in words[:-1] if w not in heredoc_words]
        from_ref = ins.flags.get("from")
        scratch = work / f"layer-{hashlib.sha256(ins.original.encode()).hexdigest()[:8]}"
        await asyncio.to_thread(_fresh_dir, scratch)
        paths: list[Path] = []
        files: list[Path] = []  # daemon-made files (downloads, heredoc bodies): copied by name, never unpacked
        with contextlib.ExitStack() as stack:
            if from_ref:
                source_image = self._from_image(df, dfp.expand(from_ref, env, df.escape), results)
                source_root = stack.enter_context(self._images_view(source_image))
                paths = await asyncio.to_thread(find_sources, source_root, srcs, instruction=ins.cmd,
                                                where=f"stage or image {from_ref}")
                checksum = hashlib.sha256(json.dumps([source_image, srcs]).encode()).hexdigest()
            else:
                source_root = ctx.root
                urls = [s for s in srcs if s.startswith(("http://", "https://"))]
                local = [s for s in srcs if s not in urls]
                if urls and ins.cmd == "COPY":
                    raise InvalidArgument(f"Dockerfile line {ins.line}: COPY cannot fetch URLs: use ADD")
                paths = await asyncio.to_thread(ctx.sources, local, instruction=ins.cmd) if local else []
                checksum = await asyncio.to_thread(ctx.checksum, paths) if paths else ""
                for url in urls:
                    where = work / "downloads" / hashlib.sha256(url.encode()).hexdigest()[:12]
                    await asyncio.to_thread(where.mkdir, parents=True, exist_ok=True)
                    fetched = await download(url, where)
                    files.append(fetched)
                    checksum += await asyncio.to_thread(_file_sha256, fetched)
            for name, doc in heredocs.items():
                hd = work / "heredocs" / hashlib.sha256(ins.original.encode()).hexdigest()[:8] / name
                await asyncio.to_thread(_write_text, hd, doc.content)
                files.append(hd)
                checksum += hashlib.sha256(doc.content.encode()).hexdigest()
            key = self._cache.key(state, ins.original, {"sum": checksum, "flags": ins.flags})
            if self._cache.take(key, state, opts, emit):
                return
            tree = ImageTree(self._images.layer_dirs(state.image)) if state.image else None
            owner = await asyncio.to_thread(self._owner, ins.flags.get("chown"), tree, env, df)  # reads /etc files
            chmod = int(ins.flags["chmod"], 8) if ins.flags.get("chmod") else None
            workdir = state.config.working_dir or "/"

            def dest_is_dir(path: str) -> bool:  # the image's own view: its symlinks never reach the host
                return tree is not None and tree.is_dir(path)
            op = add_into if ins.cmd == "ADD" else copy_into
            await asyncio.to_thread(op, scratch, paths, source_root, dest, workdir=workdir, dest_is_dir=dest_is_dir,
                                    owner=owner, chmod=chmod, image=tree, files=files)
        layer, _ = await asyncio.to_thread(self._imageio.layer_from_chunks, fsexport.iter_tree_tar(scratch))
        await spool.settled(fs.rmtree, str(scratch))
        step = HistoryEntry(created_by=f"/bin/sh -c #(nop) {ins.original}")
        image = await asyncio.to_thread(self._imageio.derive, state.image, state.config, layer=layer,
                                        step=step, platform=state.platform)
        self._cache.remember(key, image)
        state.image = image
        say(opts, emit, f" ---> {short(image)}")

    def _from_image(self, df: dfp.Dockerfile, ref: str, results: dict[int, str]) -> str:
        found = df.stage(ref)
        if found is not None:
            if found.index not in results:
                raise InvalidArgument(f"COPY --from={ref}: that stage is not built before this one")
            return results[found.index]
        return self._images.resolve(ref)

    def _owner(self, chown: str | None, tree: ImageTree | None, env: dict[str, str],
               df: dfp.Dockerfile) -> Owner | None:
        if not chown:
            return None
        chown = dfp.expand(chown, env, df.escape)

        def read(name: str) -> str:
            return (tree.read_text(f"/etc/{name}") if tree is not None else None) or ""
        return resolve_owner(chown, read("passwd"), read("group"))

    @contextlib.contextmanager
    def _images_view(self, image_id: str) -> Iterator[Path]:
        """The image's root file system, read-only: its layers stacked by overlayfs (or the one layer)."""
        lowers = self._images.layer_dirs(image_id)
        if not lowers:
            with tempfile.TemporaryDirectory(dir=self._tmp) as empty:
                yield Path(empty)
            return
        if len(lowers) == 1:
            yield Path(lowers[0])
            return
        target = Path(tempfile.mkdtemp(prefix="view-", dir=self._tmp))
        try:
            mount.mount("overlay", str(target), "overlay", "lowerdir=" + ":".join(lowers))
            try:
                yield target
            finally:
                mount.unmount(str(target))
        finally:
            with contextlib.suppress(OSError):
                target.rmdir()



def _extract(context_tar: Path, dest: Path, dockerfile: str) -> Context:
    with open(context_tar, "rb") as f:
        return Context.extract(f, dest, dockerfile)


TOO_DEEP = ("the build context nests directories too deep for berth's builder (more than about a thousand "
            "levels, or paths longer than 4096 bytes): flatten it, or list that directory in .dockerignore")


async def _discard(path: Path) -> None:
    """Remove a build's scratch tree, to its end even when the build is cancelled, however deep it is."""
    await spool.settled(fs.rmtree, str(path))


def _fresh_dir(path: Path) -> None:
    fs.rmtree(str(path))
    path.mkdir()


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _platform_arg(key: str, platform: Platform) -> str:
    """TARGETPLATFORM and friends, for the platform being built (build and target are the same here)."""
    os_, arch, variant = platform.os or "linux", platform.architecture or "amd64", platform.variant
    return {"PLATFORM": "/".join(p for p in (os_, arch, variant) if p), "OS": os_, "ARCH": arch,
            "VARIANT": variant}[key.removeprefix("TARGET").removeprefix("BUILD")]


__all__ = ["Builder"]
