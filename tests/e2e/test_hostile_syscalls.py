"""Hostile syscalls against berth's seccomp policy and the security options (issue 10).

Theory of operation
-------------------
The default policy is an allow-list with the facts of Docker's default profile:
anything not allowed answers EPERM, clone3 answers ENOSYS (so the C library
falls back to clone, whose namespace flags the filter can read), clone and
personality are allowed only with harmless arguments, and the mount, namespace,
module, clock, tracing and BPF families open only with the capability Docker
ties them to.

The probe is a small static C program built here with ``gcc -static`` and
bind-mounted read-only into a busybox container. It runs each named check in a
forked child (so a check that kills its process does not take the others with
it) and prints one line per check: ``name ok``, ``name EPERM`` (the errno's
name), or ``name signal N``. The checks call the syscalls by number, never
through a libc wrapper that might emulate or refuse them itself.

Modes: runc with the default policy, runsc (gVisor, started with
--oci-seccomp so it applies the same OCI section inside the sandbox), runc
with seccomp=unconfined, a custom Docker-format profile sent by the docker CLI
from a file, --cap-add SYS_ADMIN, and docker exec into a running container
(runc applies the container's filter to exec'd processes). VM isolation has no
host seccomp on the guest's syscalls (the guest has its own kernel; QEMU gets
its own -sandbox), so it is not exercised here.

The host is untouched: its hostname and its key list are checked before and
after, and every test ends with assert_responsive.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from berth_e2e_conftest import assert_responsive, docker, is_dockerd

pytestmark = pytest.mark.timeout(300)

PROBE_C = r"""/* Seccomp probe. usage: probe CHECK... ; prints "CHECK RESULT" per check:
 * ok, an errno name, errno=N, or signal N. Each check runs in a forked child. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define NR_io_uring_setup 425
#define NR_io_uring_enter 426
#define NR_io_uring_register 427
#define NR_clone3 435
#define KEY_SPEC_PROCESS_KEYRING -2
#define KEY_SPEC_SESSION_KEYRING -3
#define UFFD_USER_MODE_ONLY 1
#define READ_IMPLIES_EXEC 0x0400000
#define ADDR_NO_RANDOMIZE 0x0040000
#define AF_VSOCK_ 40
#define AF_ALG_ 38

static long child_result(long pid) {  /* for calls that create a process: reap it */
    int status;
    if (pid == 0) _exit(0);
    if (pid < 0) return pid;
    waitpid((pid_t)pid, &status, __WALL);
    return 0;
}

static void *thread_fn(void *arg) { return arg; }

static long run(const char *name) {
    char params[120];
    memset(params, 0, sizeof params);
    if (!strcmp(name, "io_uring_setup")) return syscall(NR_io_uring_setup, 1, params);
    if (!strcmp(name, "io_uring_enter")) return syscall(NR_io_uring_enter, -1, 0, 0, 0, NULL, 0);
    if (!strcmp(name, "io_uring_register")) return syscall(NR_io_uring_register, -1, 0, NULL, 0);
    if (!strcmp(name, "keyctl")) return syscall(SYS_keyctl, 0 /* GET_KEYRING_ID */, KEY_SPEC_SESSION_KEYRING, 0);
    if (!strcmp(name, "add_key"))
        return syscall(SYS_add_key, "user", "berth-seccomp-probe", "x", 1, KEY_SPEC_PROCESS_KEYRING);
    if (!strcmp(name, "request_key")) return syscall(SYS_request_key, "user", "berth-seccomp-none", NULL, 0);
    if (!strcmp(name, "unshare_user")) return syscall(SYS_unshare, CLONE_NEWUSER);
    if (!strcmp(name, "unshare_ns")) return syscall(SYS_unshare, CLONE_NEWNS);
    if (!strcmp(name, "clone_newuser")) return child_result(syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0));
    if (!strcmp(name, "clone_newnet")) return child_result(syscall(SYS_clone, CLONE_NEWNET | SIGCHLD, 0, 0, 0, 0));
    if (!strcmp(name, "clone_plain")) return child_result(syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0));
    if (!strcmp(name, "clone3")) return syscall(NR_clone3, NULL, 0);
    if (!strcmp(name, "fork")) return child_result(fork());
    if (!strcmp(name, "pthread")) {
        pthread_t t;
        int rc = pthread_create(&t, NULL, thread_fn, NULL);
        if (rc) { errno = rc; return -1; }
        return pthread_join(t, NULL) ? -1 : 0;
    }
    if (!strcmp(name, "personality_query")) return syscall(SYS_personality, 0xffffffffUL) < 0 ? -1 : 0;
    if (!strcmp(name, "personality_linux")) return syscall(SYS_personality, 0UL) < 0 ? -1 : 0;
    if (!strcmp(name, "personality_exec")) return syscall(SYS_personality, (unsigned long)READ_IMPLIES_EXEC) < 0 ? -1 : 0;
    if (!strcmp(name, "personality_norandom")) return syscall(SYS_personality, (unsigned long)ADDR_NO_RANDOMIZE) < 0 ? -1 : 0;
    if (!strcmp(name, "kexec_load")) return syscall(SYS_kexec_load, 0, 0, NULL, 0);
    if (!strcmp(name, "kexec_file_load")) return syscall(SYS_kexec_file_load, -1, -1, 0, "", 0);
    if (!strcmp(name, "bpf")) return syscall(SYS_bpf, 0 /* MAP_CREATE */, params, 0);
    if (!strcmp(name, "userfaultfd")) return syscall(SYS_userfaultfd, UFFD_USER_MODE_ONLY);
    if (!strcmp(name, "mount")) {
        mkdir("/tmp/probe-mnt", 0700);
        return syscall(SYS_mount, "none", "/tmp/probe-mnt", "tmpfs", 0, NULL);
    }
    if (!strcmp(name, "setns")) return syscall(SYS_setns, -1, 0);
    if (!strcmp(name, "init_module")) return syscall(SYS_init_module, NULL, 0, "");
    if (!strcmp(name, "perf_event_open")) return syscall(SYS_perf_event_open, params, 0, -1, -1, 0);
    if (!strcmp(name, "socket_vsock")) return syscall(SYS_socket, AF_VSOCK_, SOCK_STREAM, 0);
    if (!strcmp(name, "socket_alg")) return syscall(SYS_socket, AF_ALG_, SOCK_SEQPACKET, 0);
    if (!strcmp(name, "socket_inet")) return syscall(SYS_socket, AF_INET, SOCK_DGRAM, 0);
    if (!strcmp(name, "socket_unix")) return syscall(SYS_socket, AF_UNIX, SOCK_STREAM, 0);
    if (!strcmp(name, "ptrace_traceme")) return syscall(SYS_ptrace, 0 /* TRACEME */, 0, 0, 0);
    if (!strcmp(name, "getpid")) return syscall(SYS_getpid);
    if (!strcmp(name, "uname")) { char buf[6 * 65]; return syscall(SYS_uname, buf); }
    if (!strcmp(name, "memfd_create")) return syscall(SYS_memfd_create, "probe", 0);
    if (!strcmp(name, "io_setup")) { unsigned long ctx = 0; return syscall(SYS_io_setup, 1, &ctx); }
    if (!strcmp(name, "mkdir")) return syscall(SYS_mkdir, "/tmp/probe-dir", 0700);
    if (!strcmp(name, "fchmodat2")) return syscall(452, AT_FDCWD, "/tmp", 01777, 0);
    fprintf(stderr, "unknown check %s\n", name);
    errno = EDOM;
    return -1;
}

static const char *errname(int e) {
    static char buf[32];
    switch (e) {
    case EPERM: return "EPERM"; case ENOSYS: return "ENOSYS"; case EINVAL: return "EINVAL";
    case EBADF: return "EBADF"; case ENOENT: return "ENOENT"; case EACCES: return "EACCES";
    case EFAULT: return "EFAULT"; case EAFNOSUPPORT: return "EAFNOSUPPORT"; case ENOKEY: return "ENOKEY";
    case EDOM: return "EDOM"; case ENOMEM: return "ENOMEM"; case EOPNOTSUPP: return "EOPNOTSUPP";
    case EEXIST: return "EEXIST"; case E2BIG: return "E2BIG"; case ENODEV: return "ENODEV";
    }
    snprintf(buf, sizeof buf, "errno=%d", e);
    return buf;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IONBF, 0);
    for (int i = 1; i < argc; i++) {
        int fds[2], status;
        char out[64] = "";
        if (pipe(fds)) return 2;
        pid_t pid = fork();
        if (pid == 0) {
            close(fds[0]);
            errno = 0;
            long rc = run(argv[i]);
            const char *r = rc < 0 ? errname(errno) : "ok";
            if (write(fds[1], r, strlen(r)) < 0) _exit(3);
            _exit(0);
        }
        close(fds[1]);
        ssize_t n = read(fds[0], out, sizeof out - 1);
        close(fds[0]);
        waitpid(pid, &status, 0);
        if (WIFSIGNALED(status)) printf("%s signal %d\n", argv[i], WTERMSIG(status));
        else printf("%s %s\n", argv[i], n > 0 ? out : "nothing");
    }
    return 0;
}
"""

#: Refused by the default policy with EPERM (clone3: ENOSYS).
REFUSED = ("io_uring_setup", "io_uring_enter", "io_uring_register", "keyctl", "add_key", "request_key",
           "unshare_user", "unshare_ns", "clone_newuser", "clone_newnet", "personality_exec",
           "personality_norandom", "kexec_load", "kexec_file_load", "bpf", "userfaultfd", "mount", "setns",
           "init_module", "perf_event_open", "socket_vsock", "socket_alg")
#: Allowed by the default policy (and by the kernel for a default container).
ALLOWED = ("getpid", "uname", "fork", "pthread", "clone_plain", "personality_query", "personality_linux",
           "socket_inet", "socket_unix", "ptrace_traceme", "memfd_create", "io_setup", "mkdir")
#: What the kernel itself answers a default-capability container with no filter (seccomp=unconfined):
#: each differs from EPERM, so seeing it proves the filter is gone (io_uring_register checks its
#: arguments before the descriptor on this kernel). The rest of REFUSED the kernel
#: refuses on its own (capabilities), so they prove nothing here.
UNCONFINED = {"io_uring_setup": "ok", "io_uring_enter": "EBADF", "io_uring_register": "EINVAL", "keyctl": "ok",
              "add_key": "ok", "request_key": "ENOKEY", "personality_exec": "ok", "personality_norandom": "ok",
              "userfaultfd": "ok", "setns": "EBADF", "clone3": "EINVAL", "unshare_user": "ok",
              "clone_newuser": "ok"}

CUSTOM_PROFILE = {
    "defaultAction": "SCMP_ACT_ALLOW",
    "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]}],
    "syscalls": [
        {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
        {"names": ["getpid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38, "excludes": {"caps": ["CAP_SYS_ADMIN"]}},
    ],
}


@pytest.fixture(scope="module")
def probe_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("gcc") is None:
        pytest.skip("gcc is needed to build the probe")
    d = tmp_path_factory.mktemp("seccomp-probe")
    (d / "probe.c").write_text(PROBE_C)
    subprocess.run(["gcc", "-static", "-O1", "-pthread", "-o", str(d / "probe"), str(d / "probe.c")],
                   check=True, capture_output=True, timeout=120)
    (d / "probe.c").unlink()
    d.chmod(0o755)
    return d


@pytest.fixture
def host_state() -> Iterator[None]:
    """The host's hostname and key list are the same after the test as before."""
    hostname = socket.gethostname()
    yield
    assert socket.gethostname() == hostname
    assert "berth-seccomp-probe" not in Path("/proc/keys").read_text()


def _probe(d, image: str, probe_dir: Path, checks: tuple[str, ...], *opts: str) -> dict[str, str]:
    cp = docker(d, "run", "--rm", "-v", f"{probe_dir}:/probe:ro", *opts, image, "/probe/probe", *checks,
                timeout=180)
    return _parse(cp.stdout)


def _parse(out: str) -> dict[str, str]:
    return dict(line.split(" ", 1) for line in out.splitlines() if " " in line)


def _has_runsc(d) -> bool:
    info = json.loads(docker(d, "info", "--format", "{{json .Runtimes}}").stdout)
    return "runsc" in (info or {})


def test_default_policy_refuses_and_allows(berthd, image, probe_dir, host_state) -> None:
    got = _probe(berthd, image, probe_dir, (*REFUSED, "clone3", *ALLOWED))
    assert {k: got[k] for k in REFUSED} == {k: "EPERM" for k in REFUSED}
    assert got["clone3"] == "ENOSYS"
    assert {k: got[k] for k in ALLOWED} == {k: "ok" for k in ALLOWED}
    assert_responsive(berthd)


def test_syscalls_newer_than_libseccomp_are_not_eperm(berthd, image, probe_dir) -> None:
    # fchmodat2 (Linux 6.6) is on the allow-list; a libseccomp that does not know it makes runc
    # skip the name, and runc then answers syscalls newer than any it knows with ENOSYS, so the
    # C library falls back to fchmodat instead of failing with EPERM.
    got = _probe(berthd, image, probe_dir, ("fchmodat2",))
    assert got["fchmodat2"] in ("ok", "ENOSYS")
    assert_responsive(berthd)


def test_status_shows_the_filter_and_no_new_privs(berthd, image) -> None:
    def status(*opts: str) -> str:
        return docker(berthd, "run", "--rm", *opts, image, "grep", "-E", "^(Seccomp|NoNewPrivs):",
                      "/proc/self/status").stdout

    assert "Seccomp:\t2" in status() and "NoNewPrivs:\t0" in status()
    assert "Seccomp:\t0" in status("--security-opt", "seccomp=unconfined")
    for spelling in ("no-new-privileges", "no-new-privileges=true", "no-new-privileges:true"):
        assert "NoNewPrivs:\t1" in status("--security-opt", spelling), spelling
    assert "NoNewPrivs:\t0" in status("--security-opt", "no-new-privileges=false")
    assert "Seccomp:\t0" in status("--privileged")
    assert_responsive(berthd)


def test_unconfined_lifts_the_filter(berthd, image, probe_dir) -> None:
    # no host_state: add_key succeeds here, into the probe's own process keyring, which the
    # kernel collects some time after the probe exits
    hostname = socket.gethostname()
    got = _probe(berthd, image, probe_dir, (*UNCONFINED, *ALLOWED), "--security-opt", "seccomp=unconfined")
    assert {k: got[k] for k in UNCONFINED} == UNCONFINED
    assert {k: got[k] for k in ALLOWED} == {k: "ok" for k in ALLOWED}
    assert socket.gethostname() == hostname
    assert_responsive(berthd)


def test_sys_admin_unlocks_its_group(berthd, image, probe_dir, host_state) -> None:
    checks = ("unshare_ns", "mount", "clone_newnet", "setns", "clone3", "keyctl", "io_uring_setup", "kexec_load")
    got = _probe(berthd, image, probe_dir, checks, "--cap-add", "SYS_ADMIN")
    assert got["unshare_ns"] == "ok" and got["mount"] == "ok" and got["clone_newnet"] == "ok"
    assert got["setns"] == "EBADF"       # past the filter: the kernel looks at the descriptor
    assert got["clone3"] == "EINVAL"     # past the filter: the kernel looks at the arguments
    for name in ("keyctl", "io_uring_setup", "kexec_load"):  # no capability opens these
        assert got[name] == "EPERM", name
    assert_responsive(berthd)


def test_custom_profile_from_a_file(berthd, image, probe_dir, host_state, tmp_path: Path) -> None:
    profile = tmp_path / "profile.json"
    profile.write_text(json.dumps(CUSTOM_PROFILE))
    opts = ("--security-opt", f"seccomp={profile}")
    got = _probe(berthd, image, probe_dir, ("mkdir", "getpid", "keyctl", "personality_exec"), *opts)
    assert got == {"mkdir": "EACCES", "getpid": "ENOSYS", "keyctl": "ok", "personality_exec": "ok"}
    got = _probe(berthd, image, probe_dir, ("mkdir", "getpid"), *opts, "--cap-add", "SYS_ADMIN")
    assert got == {"mkdir": "EACCES", "getpid": "ok"}  # excludes.caps
    cp = docker(berthd, "run", "--rm", *opts, image, "mkdir", "/tmp/x", check=False)
    assert cp.returncode != 0 and "Permission denied" in cp.stderr
    assert_responsive(berthd)


@pytest.mark.parametrize(("profile", "words"), [
    ('{"defaultAction": "SCMP_ACT_SOMETIMES"}', "defaultAction"),
    ('{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW", '
     '"args": [{"index": 9, "value": 1, "op": "SCMP_CMP_EQ"}]}]}', "syscalls[0].args[0].index"),
    ("{not json", "Decoding seccomp profile failed"),
])
def test_malformed_profile_refused_at_create(berthd, image, tmp_path: Path, profile: str, words: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(profile)
    cp = docker(berthd, "run", "--rm", "--security-opt", f"seccomp={path}", image, "true", check=False)
    assert cp.returncode == 125, cp.stderr
    # the docker CLI itself refuses a file that is not JSON ("compacting json ... failed")
    assert words in cp.stderr or (words.startswith("Decoding") and "json" in cp.stderr), cp.stderr
    assert_responsive(berthd)


@pytest.mark.parametrize(("opt", "words"), [
    ("apparmor=foo", "AppArmor"),
    ("label=type:container_t", "SELinux"),
    ("bogus=1", "invalid --security-opt"),
    ("no-new-privileges=perhaps", "no-new-privileges"),
])
def test_options_this_host_cannot_honour_are_refused(berthd, image, opt: str, words: str) -> None:
    if is_dockerd(berthd):
        pytest.skip("dockerd's answers depend on the host's LSMs")
    cp = docker(berthd, "run", "--rm", "--security-opt", opt, image, "true", check=False)
    assert cp.returncode == 125, cp.stderr
    assert words in cp.stderr, cp.stderr
    assert_responsive(berthd)


@pytest.mark.parametrize("opt", ["label=disable", "label:disable", "apparmor=unconfined", "seccomp=builtin"])
def test_harmless_options_accepted(berthd, image, opt: str) -> None:
    assert docker(berthd, "run", "--rm", "--security-opt", opt, image, "echo", "fine").stdout == "fine\n"
    assert_responsive(berthd)


def test_info_lists_security_options(berthd) -> None:
    out = docker(berthd, "info", "--format", "{{json .SecurityOptions}}").stdout
    assert json.loads(out) == ["name=seccomp,profile=builtin"]
    assert_responsive(berthd)


def test_exec_inherits_the_filter(berthd, image, names, probe_dir, host_state) -> None:
    name = names()
    docker(berthd, "run", "-d", "--name", name, "--security-opt", "no-new-privileges=true",
           "-v", f"{probe_dir}:/probe:ro", image, "sleep", "300")
    cp = docker(berthd, "exec", name, "/probe/probe", "keyctl", "unshare_user", "clone3", "getpid")
    assert _parse(cp.stdout) == {"keyctl": "EPERM", "unshare_user": "EPERM", "clone3": "ENOSYS", "getpid": "ok"}
    status = docker(berthd, "exec", name, "cat", "/proc/self/status").stdout
    assert "Seccomp:\t2" in status and "NoNewPrivs:\t1" in status
    assert_responsive(berthd)


def test_busybox_still_works(berthd, image) -> None:
    script = ("set -e; ls / >/dev/null; ps >/dev/null; top -b -n 1 >/dev/null; ping -c 1 -W 2 127.0.0.1 >/dev/null;"
              " (nc -l -p 7777 >/tmp/got & sleep 0.3; echo hi | nc 127.0.0.1 7777; wait) ;"
              " grep -q hi /tmp/got; wget -q -T 2 -O /dev/null http://127.0.0.1:1/ 2>/tmp/w || true;"
              " ! grep -q 'not permitted' /tmp/w; date >/dev/null; id >/dev/null; echo all-good")
    cp = docker(berthd, "run", "--rm", image, "sh", "-c", script)
    assert cp.stdout.strip().endswith("all-good"), cp.stdout + cp.stderr
    assert_responsive(berthd)


def test_runsc_applies_the_same_policy(berthd, image, probe_dir, host_state, tmp_path: Path) -> None:
    """gVisor (runsc, started with --oci-seccomp) applies the OCI section inside its sandbox.

    What differs from runc, all from runsc 2022-12 as Debian 12 ships it: every errno rule
    answers EPERM (errnoRet is not honoured), so berth lets clone3 through to gVisor's own
    ENOSYS (glibc then falls back to clone, as under runc); gVisor's own personality(2)
    answers EINVAL to the query 0xffffffff and to 0 (past the filter, which would say EPERM).
    """
    if not _has_runsc(berthd):
        pytest.skip("no runsc runtime")
    runsc = ("--runtime", "runsc")
    got = _probe(berthd, image, probe_dir, (*REFUSED, "clone3", *ALLOWED), *runsc)
    assert {k: got[k] for k in REFUSED} == {k: "EPERM" for k in REFUSED}
    assert got["clone3"] == "ENOSYS"
    gvisor_own = {"personality_query": "EINVAL", "personality_linux": "EINVAL"}
    assert {k: got[k] for k in ALLOWED} == {k: gvisor_own.get(k, "ok") for k in ALLOWED}
    unconfined = _probe(berthd, image, probe_dir, ("keyctl", "personality_exec", "setns"), *runsc,
                        "--security-opt", "seccomp=unconfined")
    assert unconfined == {"keyctl": "EACCES", "personality_exec": "EINVAL", "setns": "EOPNOTSUPP"}  # gVisor's own
    profile = tmp_path / "profile.json"
    profile.write_text(json.dumps(CUSTOM_PROFILE))
    custom = _probe(berthd, image, probe_dir, ("mkdir", "getpid", "keyctl"), *runsc,
                    "--security-opt", f"seccomp={profile}")
    assert custom == {"mkdir": "EPERM", "getpid": "EPERM", "keyctl": "EACCES"}  # errnoRet 13/38 not honoured
    assert_responsive(berthd)
