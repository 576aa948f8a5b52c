"""`berth`: a docker-compatible command line that talks to berthd over the Engine API.

Strategy: `main` reads the global options (-H/--host, -D, --version, --help) up
to the first word, looks the verb up in the command tables of the
`commands_*` modules, runs it, and turns whatever it raises into docker's
messages and exit codes: a bad flag exits 125, an error response from the daemon
prints `Error response from daemon: ...` and exits 1 (125 for create/run,
which translate their own), an unreachable daemon says so and exits 1.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable, Sequence

from berth import __version__
from berth.cli import (
    commands_build,
    commands_builder,
    commands_container,
    commands_containers,
    commands_context,
    commands_imagegroup,
    commands_images,
    commands_logs,
    commands_manifest,
    commands_network,
    commands_registry,
    commands_search,
    commands_stats,
    commands_swarm,
    commands_sysgroup,
    commands_system,
    commands_volumes,
    contextstore,
    groups,
)
from berth.cli.common import Ctx, StatusError, describe
from berth.cli.parser import HelpRequested, UsageError
from berth.client.errors import APIError, DaemonUnreachable
from berth.client.hosts import resolve_host
from berth.client.tls import tls_config
from berth.errors import BerthError

Command = Callable[[Ctx, list[str]], int]

COMMANDS: dict[str, Command] = {
    **commands_containers.COMMANDS,
    **commands_images.COMMANDS,
    **commands_system.COMMANDS,
    **commands_registry.COMMANDS,
    **commands_network.COMMANDS,
    **commands_volumes.COMMANDS,
    **commands_build.COMMANDS,
    **commands_logs.COMMANDS,
    **commands_swarm.COMMANDS,
    # the groups (docker's management commands) and the verbs added for issue 15
    **commands_container.COMMANDS,
    **commands_imagegroup.COMMANDS,
    **commands_stats.COMMANDS,
    **commands_sysgroup.COMMANDS,
    **commands_builder.COMMANDS,
    **commands_search.COMMANDS,
    **commands_context.COMMANDS,
    **commands_manifest.COMMANDS,
}

_SUMMARY = [
    ("run", "Create and run a new container from an image"),
    ("exec", "Execute a command in a running container"),
    ("ps", "List containers"),
    ("pull", "Download an image from a registry"),
    ("push", "Upload an image to a registry"),
    ("search", "Search Docker Hub (or HOST:PORT/TERM: a registry of your own) for images"),
    ("build", "Build an image from a Dockerfile"),
    ("images", "List images"),
    ("login", "Log in to a registry"),
    ("manifest", "Manage manifest lists (inspect, create, annotate, push, rm), as docker's CLI keeps them"),
    ("logout", "Log out from a registry"),
    ("image", "Manage images (docker's sub-verbs, and bootstrap: base images from Debian's packages)"),
    ("import", "Import the contents from a tarball to create a filesystem image"),
    ("save", "Save one or more images to a tar archive"),
    ("load", "Load an image from a tar archive or STDIN"),
    ("commit", "Create a new image from a container's changes"),
    ("container", "Manage containers (docker's sub-verbs: ls, run, inspect, rm, prune, ...)"),
    ("diff", "Inspect changes to files or directories on a container's filesystem"),
    ("history", "Show the history of an image"),
    ("stats", "Display a live stream of container(s) resource usage statistics"),
    ("update", "Update configuration of one or more containers"),
    ("builder", "Manage builds (prune: remove build cache)"),
    ("cp", "Copy files/folders between a container and the local filesystem"),
    ("volume", "Manage volumes"),
    ("export", "Export a container's filesystem as a tar archive"),
    ("network", "Manage networks (create, ls, inspect, rm, connect, disconnect, prune)"),
    ("port", "List port mappings or a specific mapping for the container"),
    ("info", "Display system-wide information"),
    ("system", "Manage berth (df, events, info, prune; reset: remove a data root and all it left)"),
    ("version", "Show the berth version information"),
    ("context", "Manage contexts (docker's: named daemon endpoints, in docker's own store)"),
    ("attach", "Attach local standard input, output, and error streams to a running container"),
    ("create", "Create a new container"),
    ("events", "Get real time events from the server"),
    ("inspect", "Return low-level information on containers or images"),
    ("kill", "Kill one or more running containers"),
    ("logs", "Fetch the logs of a container"),
    ("pause", "Pause all processes within one or more containers"),
    ("rename", "Rename a container"),
    ("restart", "Restart one or more containers"),
    ("rm", "Remove one or more containers"),
    ("rmi", "Remove one or more images"),
    ("start", "Start one or more stopped containers"),
    ("stop", "Stop one or more running containers"),
    ("tag", "Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE"),
    ("top", "Display the running processes of a container"),
    ("unpause", "Unpause all processes within one or more containers"),
    ("wait", "Block until one or more containers stop, then print their exit codes"),
    ("swarm", "Manage Swarm (berthd runs none: the daemon's answer)"),
    ("node", "Manage Swarm nodes (the daemon's answer)"),
    ("service", "Manage Swarm services (the daemon's answer)"),
    ("secret", "Manage Swarm secrets (the daemon's answer)"),
    ("config", "Manage Swarm configs (the daemon's answer)"),
    ("stack", "Manage Swarm stacks (the daemon's answer)"),
    ("plugin", "Manage plugins (berthd serves none: the daemon's answer)"),
    ("checkpoint", "Manage checkpoints (needs an experimental daemon)"),
]


def usage() -> str:
    width = max(len(name) for name, _ in _SUMMARY) + 3
    lines = [
        "Usage:  berth [OPTIONS] COMMAND",
        "",
        "A container engine that speaks the Docker Engine API",
        "",
        "Options:",
        "  -H, --host string   Daemon socket to connect to (default: $BERTH_HOST,",
        "                      $DOCKER_HOST, or unix:///run/berth/berth.sock)",
        "  -c, --context string",
        "                      Context to use (default: $DOCKER_CONTEXT, or \"berth context use\")",
        "  -D, --debug         Enable debug mode",
        "      --tls           Use TLS; implied by --tlsverify",
        "      --tlsverify     Use TLS and verify the daemon (default: $DOCKER_TLS_VERIFY)",
        "      --tlscacert, --tlscert, --tlskey string",
        "                      TLS files (default: $DOCKER_CERT_PATH or ~/.docker:",
        "                      ca.pem, cert.pem, key.pem)",
        "  -v, --version       Print version information and quit",
        "",
        "Commands:",
    ]
    lines += [f"  {name.ljust(width)}{desc}" for name, desc in _SUMMARY]
    lines += ["", "Run 'berth COMMAND --help' for more information on a command."]
    return "\n".join(lines) + "\n"


class GlobalOptions:
    def __init__(self) -> None:
        self.host: str | None = None
        self.context: str | None = None  # -c/--context
        self.tls = False
        self.tlsverify = False
        self.tls_files: dict[str, str] = {}  # --tlscacert/--tlscert/--tlskey -> path
        self.debug = False
        self.version = False
        self.help = False


def parse_globals(argv: Sequence[str]) -> tuple[GlobalOptions, list[str]]:
    """Read options before the verb; return them and the rest (verb first)."""
    opts = GlobalOptions()
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            i += 1
            break
        if not arg.startswith("-") or arg == "-":
            break
        name, eq, value = arg.partition("=")
        if name in ("-H", "--host", "-l", "--log-level", "--config", "-c", "--context",
                    "--tlscacert", "--tlscert", "--tlskey"):
            if not eq:
                if i + 1 >= len(args):
                    raise UsageError(f"flag needs an argument: {name}" if name.startswith("--")
                                     else f"flag needs an argument: {name[1]!r} in {name}")
                value = args[i + 1]
                i += 1
            if name in ("-H", "--host"):
                opts.host = value
            elif name in ("-c", "--context"):
                opts.context = value
            elif name.startswith("--tls"):
                opts.tls_files[name] = value
        elif arg.startswith("-H") and len(arg) > 2:
            opts.host = arg[2:]
        elif arg.startswith("-c") and len(arg) > 2:
            opts.context = arg[2:]
        elif arg in ("-D", "--debug"):
            opts.debug = True
        elif arg in ("-v", "--version"):
            opts.version = True
        elif arg in ("-h", "--help"):
            opts.help = True
        elif name in ("--tls", "--tlsverify"):
            on = value.lower() not in ("false", "0") if eq else True
            setattr(opts, name[2:], on)
        else:
            raise UsageError(f"unknown flag: {arg}" if arg.startswith("--")
                             else f"unknown shorthand flag: {arg[1:2]!r} in {arg}")
        i += 1
    return opts, args[i:]


def run(argv: Sequence[str]) -> int:
    """Run one berth command line; return the exit code."""
    try:
        opts, rest = parse_globals(argv)
    except UsageError as exc:
        sys.stderr.write(f"{exc}\n\nUsage:  berth [OPTIONS] COMMAND [ARG...]\n\n"
                         "Run 'berth --help' for more information\n")
        return 125
    if opts.version:
        sys.stdout.write(f"berth version {__version__}\n")
        return 0
    if not rest or opts.help and not rest:
        sys.stdout.write(usage())
        return 0
    verb, args = rest[0], rest[1:]
    if verb == "help":
        if args and args[0] in COMMANDS:
            verb, args = args[0], ["--help"]
        else:
            sys.stdout.write(usage())
            return 0
    command = COMMANDS.get(verb)
    if command is None:
        sys.stderr.write(f"berth: unknown command: berth {verb}\n\n{groups.did_you_mean(verb, COMMANDS)}"
                         "Run 'berth --help' for more information\n")
        return 1
    if opts.help:
        args = ["--help"]
    ctx = Ctx(host=resolve_host(opts.host), debug=opts.debug)
    try:
        ctx.context = contextstore.chosen_name(opts.host, opts.context)
        chosen = None if verb == "context" or opts.help else contextstore.endpoint_for(ctx.context)
    except BerthError as exc:  # docker: "Failed to initialize" for a context it cannot use
        conflict = str(exc).startswith("conflicting options")
        ctx.error(str(exc) if conflict else f"Failed to initialize: unable to resolve docker endpoint: {exc}")
        return 1
    try:
        if chosen is not None:
            ctx.host, ctx.tls = chosen
        else:
            ctx.tls = tls_config(tls=opts.tls, verify=opts.tlsverify, ca=opts.tls_files.get("--tlscacert"),
                                 cert=opts.tls_files.get("--tlscert"), key=opts.tls_files.get("--tlskey"))
        return command(ctx, args)
    except HelpRequested as exc:
        ctx.out.write(exc.text)
        return 0
    except UsageError as exc:
        ctx.flush()
        prefix = "berth: " if exc.code != 125 and not exc.bare else ""
        ctx.error(f"{prefix}{exc}" if exc.complete else f"{prefix}{exc}\nSee 'berth {verb} --help'.")
        return exc.code
    except StatusError as exc:
        if exc.message:
            ctx.error(exc.message)
        return exc.code
    except (APIError, DaemonUnreachable) as exc:
        ctx.error(describe(exc))
        return 1
    except BerthError as exc:
        ctx.error(f"berth: {exc}" if not str(exc).startswith("Error") else str(exc))
        return 1
    finally:
        try:
            ctx.flush()
        except OSError:
            pass


def main(argv: Sequence[str] | None = None) -> None:
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    try:
        code = run(sys.argv[1:] if argv is None else argv)
    except KeyboardInterrupt:
        code = 130
    try:
        sys.stdout.flush()
    except (BrokenPipeError, OSError):
        pass
    sys.exit(code)


if __name__ == "__main__":
    main()
