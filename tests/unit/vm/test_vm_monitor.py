"""The pure Python around the C VM monitor: the hand-over argv, the EXEC frames, the control answers."""

from __future__ import annotations

import dataclasses

import pytest

from berth.errors import CommandFailed, Conflict, InvalidArgument
from berth.runtime.vm import container_ps, parse_answer
from berth.vm.execclient import GUEST_ROOT, process_frame
from berth.vm.shim import PROBE_ARGV, Handover, main_frame, probe_frame
from berth.wire import agentproto as ap

HANDOVER = Handover(cid="c" * 64, bundle="/b", workdir="/s/c.d", attach="/s/c.attach", control="/s/c.vm",
                    qemu_pid=42, agent_fd=7, attach_fd=8, control_fd=9, ctl_fd=10, log_fd=11,
                    main_exec="/s/c.d/main.exec", probe_exec="/s/c.d/probe.exec")


def _decode(frame: bytes) -> tuple[ap.Frame, ap.Exec]:
    (f,) = ap.Decoder().feed(frame)
    return f, ap.decode_exec(f.payload)


def test_handover_argv_minimal() -> None:
    assert HANDOVER.argv("/vm/berth-vm-monitor") == [
        "/vm/berth-vm-monitor", "--cid", "c" * 64, "--bundle", "/b", "--workdir", "/s/c.d",
        "--attach", "/s/c.attach", "--control", "/s/c.vm", "--qemu-pid", "42", "--agent-fd", "7",
        "--attach-fd", "8", "--control-fd", "9", "--ctl-fd", "10", "--log-fd", "11",
        "--main-exec", "/s/c.d/main.exec", "--probe-exec", "/s/c.d/probe.exec"]
    assert HANDOVER.fds() == (7, 8, 9, 10, 11)


@pytest.mark.parametrize(("stdin", "once", "flags"), [
    (False, True, []), (True, False, ["--stdin"]), (True, True, ["--stdin", "--stdin-once"])])
def test_handover_argv_options(stdin: bool, once: bool, flags: list[str]) -> None:
    h = dataclasses.replace(HANDOVER, sync_fd=12, stdin=stdin, stdin_once=once,
                            cgroups=("/cg/memory/berth/c", "/cg/pids/berth/c"), unmounts=("/s/c.d/stage-s1/f",))
    tail = h.argv("m")[len(HANDOVER.argv("m")):]
    assert tail == ["--sync-fd", "12", *flags, "--cgroup", "/cg/memory/berth/c", "--cgroup", "/cg/pids/berth/c",
                    "--unmount", "/s/c.d/stage-s1/f"]
    assert h.fds() == (7, 8, 9, 10, 11, 12)


def test_main_frame_from_config() -> None:
    config = {"process": {"args": ["sh", "-c", "echo hi"], "env": ["A=1"], "cwd": "/tmp", "terminal": True,
                          "user": {"uid": 1000, "gid": 100}, "consoleSize": {"height": 30, "width": 100}}}
    f, e = _decode(main_frame(config))
    assert (f.type, f.id) == (ap.T.EXEC, 0)
    assert e == ap.Exec(("sh", "-c", "echo hi"), ("A=1",), "/tmp", 1000, 100, True, GUEST_ROOT, 30, 100)


def test_main_frame_without_console_size_leaves_it_to_the_monitor() -> None:
    raw = main_frame({"process": {"args": ["true"]}})
    _, e = _decode(raw)
    assert (e.rows, e.cols, e.cwd, e.uid, e.tty) == (0, 0, "/", 0, False)
    # the monitor patches rows and cols at these offsets: header, flags, uid, gid
    assert raw[ap.HEADER_LEN + 12:ap.HEADER_LEN + 16] == b"\0\0\0\0"


def test_process_frame_refuses_bad_processes() -> None:
    with pytest.raises(InvalidArgument):
        process_frame({"args": []})
    with pytest.raises(InvalidArgument):
        process_frame({"args": ["true"], "env": ["NOEQUALS"]})


def test_probe_runs_in_the_guests_own_root() -> None:
    _, e = _decode(probe_frame())
    assert e.argv == PROBE_ARGV and e.chroot == ""


@pytest.mark.parametrize(("answer", "result"), [(b"ok\n", ""), (b"ok 123\n", "123"), (b"ok", "")])
def test_parse_answer_ok(answer: bytes, result: str) -> None:
    assert parse_answer("c" * 64, "start", answer) == result


def test_parse_answer_errors() -> None:
    with pytest.raises(Conflict):
        parse_answer("c" * 64, "kill 9", b"error not running\n")
    with pytest.raises(Conflict):
        parse_answer("c" * 64, "start", b"")  # the monitor went away without answering
    with pytest.raises(CommandFailed) as info:
        parse_answer("c" * 64, "start", b"error exec /nope: No such file or directory\n")
    assert info.value.stderr == "exec /nope: No such file or directory"
    assert info.value.argv == ["vm-monitor", "start"]


def test_container_ps_hides_the_guests_own_processes() -> None:
    text = ("PID   USER     TIME  COMMAND\n"
            "    1 0         0:00 /init\n"
            "    2 0         0:00 [kthreadd]\n"
            "   79 0         0:00 sleep 1000\n"
            "   95 0         0:00 /bin/busybox ps\n")
    assert container_ps(text) == "PID   USER     TIME  COMMAND\n   79 0         0:00 sleep 1000"
