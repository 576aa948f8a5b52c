"""One-line descriptions of the CLI's flags, for `berth COMMAND --help`.

Strategy: one table of flag -> description shared by every command, and a table of
(command, flag) -> description for the flags whose meaning depends on the command
(`-f` is `--force` for rm and `--filter` for ps). `describe` looks up the command's
own entry first, then the shared one. A flag is keyed by its long spelling (its short
one if it has none), a command by its Parser's name ("ps", "image prune"; `container ls`
parses as "ps"). The container flags of run/create/update/exec live in flaghelp_run.
tests/unit/cli/test_flaghelp.py fails for any flag of any verb left without a line.
"""

from __future__ import annotations

from berth.cli.flaghelp_run import CONTAINER

_GENERAL: dict[str, str] = {
    "--format": "Output format: table, json, or a Go template",
    "--filter": "Keep only what matches name=value (repeatable)",
    "--force": "Go ahead without asking for confirmation",
    "--no-trunc": "Print values in full, untruncated",
    "--since": "Only after this time: RFC 3339, Unix seconds, or an age like 10m",
    "--until": "Only before this time: RFC 3339, Unix seconds, or an age like 10m",
    "--output": "Write the archive to this file, not standard output",
    "--change": "Add a Dockerfile instruction (CMD, ENV, ...) to the image's config",
    "--message": "Comment to record with the new image",
    "--opt": "Option for the driver (key=value, repeatable)",
    "--human": "Human-friendly sizes and ages (default true)",
    "--time": "Seconds to wait before killing it (default: its stop timeout or 10)",
}

SHARED: dict[str, str] = {**CONTAINER, **_GENERAL}

_INSPECT_FORMAT = "Print each object through a Go template, or json"

BY_COMMAND: dict[tuple[str, str], str] = {
    # containers
    ("ps", "--all"): "Include stopped containers (default: running ones only)",
    ("ps", "--quiet"): "Print container IDs only",
    ("ps", "--last"): "Show the N containers created last, in any state",
    ("ps", "--latest"): "Show the container created last, in any state",
    ("ps", "--size"): "Add a SIZE column: what each container has written",
    ("ps", "--filter"): "Show only matching containers, e.g. status=exited",
    ("run", "--quiet"): "Print nothing while pulling the image",
    ("create", "--quiet"): "Print nothing while pulling the image",
    ("exec", "--detach"): "Start the command and return without waiting for it",
    ("exec", "--privileged"): "Run the command with every capability",
    ("start", "--attach"): "Stay attached to its output and exit with its code",
    ("start", "--interactive"): "Also attach standard input",
    ("attach", "--no-stdin"): "Do not pass standard input to the container",
    ("logs", "--follow"): "Keep printing new output as it comes",
    ("logs", "--tail"): "Show only the last N lines (default all)",
    ("logs", "--timestamps"): "Start each line with its timestamp",
    ("logs", "--details"): "Add the extra attributes the log driver kept",
    ("stop", "--signal"): "Signal to send first (default: the container's stop signal)",
    ("restart", "--signal"): "Signal that stops it (default: the container's stop signal)",
    ("kill", "--signal"): "Signal to send (default KILL)",
    ("rm", "--force"): "Kill a running container first; a missing one is no failure",
    ("rm", "--volumes"): "Also remove the container's anonymous volumes",
    ("rm", "--link"): "Remove the named link, not the container",
    ("stats", "--all"): "Include stopped containers (default: running ones only)",
    ("stats", "--no-stream"): "Print one sample and exit",
    ("container prune", "--filter"): "Prune only what matches, e.g. until=24h or label=k=v",
    ("cp", "--archive"): "Keep the files' owners (UID and GID) when copying in",
    ("cp", "--follow-link"): "If the source path is a symbolic link, copy its target",
    ("cp", "--quiet"): "Do not report how much was copied",
    ("commit", "--author"): "Author to record, e.g. \"Name <email>\"",
    ("commit", "--pause"): "Hold the container still while committing (default true)",
    ("inspect", "--format"): _INSPECT_FORMAT,
    ("inspect", "--type"): "Look only for this kind of object: container or image",
    ("inspect", "--size"): "Add the container's sizes (SizeRw, SizeRootFs)",
    # images
    ("images", "--all"): "Include intermediate images (untagged parents)",
    ("images", "--quiet"): "Print image IDs only",
    ("images", "--digests"): "Add a DIGEST column",
    ("images", "--filter"): "Show only matching images, e.g. dangling=true",
    ("images", "--tree"): "List multi-platform images as a tree (EXPERIMENTAL)",
    ("image inspect", "--format"): _INSPECT_FORMAT,
    ("history", "--quiet"): "Print layer IDs only",
    ("image history", "--quiet"): "Print layer IDs only",
    ("rmi", "--force"): "Remove it even if a container uses it or it has other tags",
    ("rmi", "--no-prune"): "Keep the untagged parent images",
    ("image prune", "--all"): "Remove every image no container uses, not only dangling ones",
    ("image prune", "--filter"): "Prune only what matches, e.g. until=24h or label=k=v",
    ("image bootstrap", "--name"): "Name of the busybox image made (default busybox:latest)",
    ("import", "--platform"): "Platform to record in the image, as os/arch[/variant]",
    ("push", "--platform"): "Push only this platform's image of a multi-platform one (API 1.46)",
    ("save", "--platform"): "Save only this platform's image of a multi-platform one (API 1.48)",
    ("load", "--platform"): "Load only this platform's image from the archive (API 1.48)",
    ("rmi", "--platform"): "Remove only these platforms of a multi-platform image (API 1.50)",
    ("pull", "--quiet"): "Print only the image's name, no progress",
    ("pull", "--all-tags"): "Fetch the images of all the repository's tags",
    ("push", "--all-tags"): "Upload every tagged image of the repository",
    ("push", "--quiet"): "Print no progress",
    ("load", "--input"): "Read the archive from this file, not standard input",
    ("load", "--quiet"): "Print no progress",
    ("login", "--username"): "User name at the registry",
    ("login", "--password"): "Password (--password-stdin keeps it out of the process list)",
    ("login", "--password-stdin"): "Read the password from standard input",
    # build
    ("build", "--tag"): "Name the image NAME[:TAG] (repeatable)",
    ("build", "--file"): "Dockerfile path from here, or - for stdin (default PATH/Dockerfile)",
    ("build", "--cache-from"): "Take cached steps only from these images' histories",
    ("build", "--compress"): "Accepted; the context is sent uncompressed to a local daemon",
    ("build", "--iidfile"): "Write the new image's ID to this file",
    ("build", "--squash"): "Refused: needs a daemon with experimental features",
    ("build", "--build-arg"): "Set a build argument: KEY=VALUE, or KEY from this shell",
    ("build", "--target"): "Build up to this stage of a multi-stage Dockerfile",
    ("build", "--no-cache"): "Run every step afresh, reusing nothing from the cache",
    ("build", "--pull"): "Pull the base images even if they are here already",
    ("build", "--rm"): "Delete the step containers once the build succeeds (default true)",
    ("build", "--force-rm"): "Remove the steps' containers even when the build fails",
    ("build", "--quiet"): "Print only the new image's ID",
    ("build", "--platform"): "Platform to build for, as os/arch[/variant]",
    ("build", "--network"): "Network for the RUN steps: bridge, host, none or NAME",
    ("build", "--isolation"): "How to isolate the RUN steps: process (default) or vm",
    ("builder prune", "--all"): "Take the whole build cache, dangling or not",
    ("builder prune", "--filter"): "Prune only what matches, e.g. until=24h",
    ("builder prune", "--keep-storage"): "Keep this much cache, e.g. 10GB",
    # networks
    ("network create", "--driver"): "Network driver (default bridge)",
    ("network create", "--subnet"): "Subnet in CIDR form, e.g. 172.30.0.0/16",
    ("network create", "--gateway"): "Gateway address of the subnet",
    ("network create", "--ip-range"): "Give containers addresses from this part of the subnet",
    ("network create", "--internal"): "No route out: containers reach only each other",
    ("network create", "--attachable"): "Mark it attachable (recorded; berth has no swarm)",
    ("network create", "--ipv6"): "Enable IPv6 on the network",
    ("network create", "--ipv4"): "Whether the network has IPv4: true (default) or false",
    ("network create", "--ipam-driver"): "Which address allocator to use (default \"default\")",
    ("network create", "--ipam-opt"): "Option for the IP address manager (key=value)",
    ("network create", "--aux-address"): "Keep an address from containers: NAME=IP",
    ("network connect", "--alias"): "Another DNS name for the container on this network",
    ("network connect", "--driver-opt"): "Option for the network driver (key=value)",
    ("network disconnect", "--force"): "Disconnect the container forcibly",
    ("network inspect", "--format"): _INSPECT_FORMAT,
    ("network inspect", "--verbose"): "Ask the daemon for more detail",
    ("system df", "--verbose"): "List the space of each image, container, volume and cache record",
    ("network ls", "--quiet"): "Print network IDs only",
    ("network ls", "--filter"): "Show only matching networks, e.g. driver=bridge",
    ("network rm", "--force"): "A network that does not exist is no failure",
    ("network prune", "--filter"): "Prune only what matches, e.g. until=24h or label=k=v",
    # volumes
    ("volume create", "--driver"): "Driver that provides the volume (default local)",
    ("volume create", "--name"): "Name of the volume (or give it as the argument)",
    ("volume inspect", "--format"): _INSPECT_FORMAT,
    ("volume ls", "--quiet"): "Print volume names only",
    ("volume ls", "--filter"): "Show only matching volumes, e.g. dangling=true",
    ("volume rm", "--force"): "A volume that does not exist is no failure",
    ("volume prune", "--all"): "Also remove named volumes no container uses",
    ("volume prune", "--filter"): "Prune only what matches, e.g. label=k=v",
    # system
    ("events", "--filter"): "Show only matching events, e.g. type=container",
    ("events", "--format"): "Print each event through a Go template, or json",
    ("info", "--format"): "Print the information through a Go template, or json",
    ("version", "--format"): "Print the versions through a Go template, or json",
    ("system prune", "--all"): "Also remove unused images (not only dangling) and all build cache",
    ("system prune", "--volumes"): "Also remove anonymous volumes no container uses",
    ("system prune", "--filter"): "Prune only what matches, e.g. until=24h or label=k=v",
    # manifest lists (berth.cli.commands_manifest)
    ("manifest inspect", "--insecure"): "Allow a registry over plain HTTP or unverified TLS",
    ("manifest inspect", "--verbose"): "Also show each manifest's reference, platform and layers",
    ("manifest create", "--amend"): "Add to (or refresh in) an existing local list",
    ("manifest create", "--insecure"): "Allow a registry over plain HTTP or unverified TLS",
    ("manifest annotate", "--arch"): "Set the manifest's architecture",
    ("manifest annotate", "--os"): "Set the manifest's operating system",
    ("manifest annotate", "--os-features"): "Add operating system features (comma-separated)",
    ("manifest annotate", "--os-version"): "Set the operating system version",
    ("manifest annotate", "--variant"): "Set the architecture variant (v7, v8, ...)",
    ("manifest push", "--insecure"): "Allow a registry over plain HTTP or unverified TLS",
    ("manifest push", "--purge"): "Remove the local list once pushed",
    # contexts
    ("context create", "--description"): "Description of the context",
    ("context create", "--docker"): "Endpoint k=v,...: host, ca, cert, key, skip-tls-verify, from",
    ("context create", "--from"): "Copy this context's endpoint (and TLS files) into the new one",
    ("context update", "--description"): "New description of the context",
    ("context update", "--docker"): "New endpoint k=v,...: host, ca, cert, key, skip-tls-verify, from",
    ("context ls", "--format"): "Output format: table, json, or a Go template",
    ("context ls", "--quiet"): "Print context names only",
    ("context inspect", "--format"): _INSPECT_FORMAT,
    ("context rm", "--force"): "Remove it even when it is the context in use",
}


def describe(command: str, flag: str) -> str:
    """The description of *flag* (its long spelling, or short if it has none) for *command*, or ""."""
    return BY_COMMAND.get((command, flag)) or SHARED.get(flag, "")
