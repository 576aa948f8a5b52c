"""The VM's exec as conmon runs an OCI runtime's: a detached exec session in a VM-isolated container.

    python -m berth.vm.execruntime --control SOCKET exec --pid-file F --process process.json --detach ID

Strategy: conmon (runtime.execmon) runs `<runtime> exec ... --detach` and then
watches the pid the runtime leaves in the pid file. Here that process is the
VM's exec client (berth.vm.execclient), forked into a session of its own with
conmon's stdio, and this program exits at once: the client becomes conmon's
child (conmon is a subreaper), conmon relays its stdio and records its exit
code, which is the process's in the guest (126 when it did not start). So a
VM exec outlives berthd as a runc one does. Sessions without a terminal only:
with one, conmon forces ONLCR on the pty it is handed, which the guest's own
terminal already applies (those run in the foreground, services.execs).
"""

from __future__ import annotations

import argparse
import os
import sys


def parse(argv: list[str]) -> argparse.Namespace:
    """The command line conmon builds (pure)."""
    p = argparse.ArgumentParser(prog="berth-vm-execruntime")
    p.add_argument("--control", required=True)
    p.add_argument("command", choices=["exec"])
    p.add_argument("--pid-file", required=True)
    p.add_argument("--process", required=True)
    p.add_argument("--detach", action="store_true")
    p.add_argument("--tty", action="store_true")
    p.add_argument("--console-socket")
    p.add_argument("id")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse(sys.argv[1:] if argv is None else argv)
    if args.tty or args.console_socket or not args.detach:
        sys.exit("berth-vm-execruntime: only detached sessions without a terminal")
    client = [sys.executable, "-m", "berth.vm.execclient", "--control", args.control, "--process", args.process]
    pid = os.fork()
    if pid == 0:
        try:
            os.setsid()
            os.execv(sys.executable, client)
        finally:
            os._exit(127)
    tmp = f"{args.pid_file}.tmp"
    with open(tmp, "w") as f:
        f.write(f"{pid}\n")
    os.rename(tmp, args.pid_file)


if __name__ == "__main__":
    main()
