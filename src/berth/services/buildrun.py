"""A RUN step: the command in a real container of the step's image, whose changes become the step's layer.

Strategy: the container is created and started through the same services as
`docker run` (so isolation modes, emulation and networks apply to builds);
its log is read back in a thread, a bounded piece at a time, and sent as the
build's output (stderr in bright red, as Docker's classic builder writes it);
its overlay upper directory is the layer. The container is removed after
the step unless the build keeps it (rm=false, or a failure without forcerm).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

from berth.builder import dockerfile as dfp
from berth.errors import BerthError
from berth.host import crashpoint
from berth.oci.imageconfig import HistoryEntry
from berth.services.buildcache import BuildCache
from berth.services.buildtypes import (
    BuildError,
    BuildOptions,
    Emit,
    StageState,
    say,
    short,
)
from berth.services.containerconfig import CreateRequest
from berth.services.containers import Containers
from berth.services.imageio import ImageIO
from berth.services.lifecycle import Lifecycle
from berth.wire.containerspec import ContainerConfig, replace
from berth.wire.k8slog import Parser


class RunSteps:
    def __init__(self, containers: Containers, lifecycle: Lifecycle, imageio: ImageIO, cache: BuildCache) -> None:
        self._containers, self._lifecycle, self._imageio, self._cache = containers, lifecycle, imageio, cache

    async def run(self, ins: dfp.Instruction, state: StageState, opts: BuildOptions,
                        emit: Emit, env: dict[str, str]) -> None:
        if ins.heredocs and not ins.json:
            script = "\n".join(h.content for h in ins.heredocs)
            argv = [*state.shell, script]
        else:
            argv = list(ins.args) if ins.json else [*state.shell, ins.args[0]]
        run_env = [f"{k}={v}" for k, v in state.args.items()]  # ARGs: in the step's env, not in the image
        key = self._cache.key(state, json.dumps(argv), {"args": state.args})
        if self._cache.take(key, state, opts, emit):
            return
        if state.image is None:
            raise BuildError(f"The command '{' '.join(argv)}' cannot run: the stage is FROM scratch and has no "
                             "files yet (there is no shell to run it)", 127)
        request = CreateRequest(
            ContainerConfig(image=state.image, cmd=argv, entrypoint=[""], env=[*(state.config.env or ()), *run_env],
                            user=state.config.user, working_dir=state.config.working_dir),
            replace(opts.step_limits, network_mode=opts.networkmode or "default",
                    extra_hosts=list(opts.extrahosts or ()) or None, isolation=opts.isolation or ""))
        cid, _ = self._containers.create("", request, opts.platform, build_step=opts.rm)
        say(opts, emit, f" ---> Running in {cid[:12]}")
        failed = True
        try:
            code = await self._run_container(cid, opts, emit)
            if code != 0:
                raise BuildError(f"The command '{' '.join(argv)}' returned a non-zero code: {code}", code)
            layer, _ = await asyncio.to_thread(self._imageio.layer_from_chunks,
                                               _upper_layer(Path(self._containers.upper_dir(cid))))
            image = await asyncio.to_thread(self._imageio.derive, state.image, state.config, layer=layer,
                                            step=HistoryEntry(created_by=" ".join(argv)), platform=state.platform)
            failed = False
        finally:
            if opts.rm and (not failed or opts.forcerm):
                with contextlib.suppress(BerthError):
                    await self._lifecycle.remove(cid, force=True, volumes=True)
                if not opts.quiet:
                    emit({"stream": f"Removing intermediate container {cid[:12]}\n"})
            elif opts.rm:  # a failed step's container stays for the user to look at: no longer the build's
                self._containers.keep(cid)
        self._cache.remember(key, image)
        state.image = image
        say(opts, emit, f" ---> {short(image)}")

    async def _run_container(self, cid: str, opts: BuildOptions, emit: Emit) -> int:
        c = self._containers.get(cid)
        await self._lifecycle.start(cid)
        crashpoint.reached("build:step-started")
        log_path = os.path.join(c.dir, "container.log")
        parser = Parser()
        offset = 0
        waiter = asyncio.ensure_future(self._lifecycle.wait(cid, "not-running"))

        async def pump() -> None:  # the log is read in a thread, a bounded piece at a time
            nonlocal offset
            while data := await asyncio.to_thread(_read_at, log_path, offset, LOG_READ):
                offset += len(data)
                if not opts.quiet:
                    for entry in parser.feed(data):
                        emit({"stream": stream_text(entry.stream, entry.data)})
                if len(data) < LOG_READ:
                    return
        while not waiter.done():
            await pump()
            await asyncio.sleep(0.05)
        await pump()
        result = waiter.result()
        if result.error:
            raise BuildError(result.error, result.status_code or 1)
        return result.status_code


LOG_READ = 1 << 20  # bytes of a RUN step's log read at once (in a thread)


def _read_at(path: str, offset: int, limit: int) -> bytes:
    """At most *limit* bytes of *path* from *offset*; b"" when there are none or the file is gone."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read(limit)
    except OSError:
        return b""


def _upper_layer(upper: Path) -> Iterator[bytes]:
    from berth.image import layerdiff
    return layerdiff.iter_layer_from_upper(upper)


STDERR_START, STDERR_END = "\x1b[91m", "\x1b[0m"


def stream_text(stream: str, data: bytes) -> str:
    """A RUN step's output as a `stream` message: stderr in bright red, as Docker's classic builder writes it."""
    text = data.decode(errors="replace")
    return f"{STDERR_START}{text}{STDERR_END}" if stream == "stderr" else text

