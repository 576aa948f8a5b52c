/*
 * berth-vm-monitor: the long-running half of a VM-isolated container's monitor.
 *
 * What it is: berth.vm.shim (Python) boots or clones the utility VM, mounts the
 * container's root and shares in it, joins the cgroups and writes the bundle's
 * `pid`; then it execs this program in the same process (so `shim.pid` stays
 * true and QEMU stays our child), handing over open descriptors: the agent
 * channel, the attach and control listeners, the `ctl` fifo, `container.log`
 * and the sync pipe. Its argv is built by berth.vm.shim.Handover.argv().
 *
 * Strategy: one single-threaded poll(2) loop, as in the guest agent. Frames from
 * the agent (berth/wire/agentproto.py) are routed by id: the container's main
 * process, the OOM probe, or the control connection of one `docker exec`, whose
 * frames travel with id 0 on its side and get their own id on the agent's. The
 * EXEC frames are built in Python (the main one and the probe's arrive as files
 * in the work directory; an exec's comes from its client), so nothing here
 * parses JSON or builds an EXEC payload.
 *
 *   main output  -> container.log (k8s-file lines; --log-size-max rotates it) and every attach client
 *                   (SOCK_SEQPACKET packets: 2 stdout / 3 stderr, then data)
 *   attach input -> main's stdin (with --stdin; EOF closes it with --stdin-once)
 *   ctl fifo     -> "1 ROWS COLS" resize lines (a size before start goes into EXEC)
 *   control      -> one line per connection: start | kill SIG | pause | resume |
 *                   exec (then agent frames both ways); answers "ok" / "error MSG"
 *
 * When the main process exits: after a SIGKILL (137) ask the guest for its
 * oom_kill count, write `oom`, `exit`; then stop QEMU, unmount the staged host
 * files, remove the cgroups, the work directory and the sockets, and exit.
 * QEMU exiting (or the agent channel closing) first is a guest panic: code 255,
 * `error` with the reason from the console log, and a line on stderr in the log.
 * SIGTERM stops the VM and cleans up the same way (VmRuntime.delete).
 *
 * Every buffer is drained without blocking the loop. Output for an exec client
 * that falls more than EXEC_HIGH_WATER behind pauses reading the agent channel
 * (backpressure, as a pipe would); a client that accepts nothing for
 * STUCK_SECONDS while that far behind is dropped and its process killed. An
 * attach client more than ATTACH_CAP behind is dropped (the log keeps all).
 *
 * Build: gcc -O2 -Wall -Wextra -o berth-vm-monitor monitor.c
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define HEADER_LEN 9
#define MAX_PAYLOAD (64 * 1024)
#define ATTACH_DATA 32767          /* data bytes per attach packet (after the stream byte) */
#define MAX_CONNS 128
#define OP_LINE_MAX 256
#define ATTACH_CAP (4u << 20)
#define EXEC_HIGH_WATER (1u << 20)
#define STUCK_SECONDS 30
#define STDIN_CAP (16u << 20)
#define PROBE_SECONDS 10
#define PROBE_CAP (256u << 10)
#define MAIN_ID 0x40000000u
#define PROBE_ID (MAIN_ID + 1)

enum {
    T_EXEC = 0x02, T_STDIN = 0x03, T_STDIN_EOF = 0x04, T_SIGNAL = 0x05, T_RESIZE = 0x06,
    T_STARTED = 0x82, T_STDOUT = 0x83, T_STDERR = 0x84, T_EXIT = 0x85, T_ERROR = 0x86,
};

/* ---- growable byte buffer ----------------------------------------------------- */

struct buf {
    uint8_t *data;
    size_t len, cap, off; /* live bytes are data[off .. len) */
};

static void buf_append(struct buf *b, const void *p, size_t n) {
    if (b->off && b->off == b->len) b->off = b->len = 0;
    if (b->len + n > b->cap) {
        if (b->off) {
            memmove(b->data, b->data + b->off, b->len - b->off);
            b->len -= b->off;
            b->off = 0;
        }
        if (b->len + n > b->cap) {
            size_t cap = b->cap ? b->cap : 4096;
            while (cap < b->len + n) cap *= 2;
            uint8_t *d = realloc(b->data, cap);
            if (!d) { fputs("berth-vm-monitor: out of memory\n", stderr); abort(); }
            b->data = d;
            b->cap = cap;
        }
    }
    if (n) memcpy(b->data + b->len, p, n);
    b->len += n;
}

static size_t buf_size(const struct buf *b) { return b->len - b->off; }
static uint8_t *buf_head(const struct buf *b) { return b->data + b->off; }

static void buf_consume(struct buf *b, size_t n) {
    b->off += n;
    if (b->off == b->len) b->off = b->len = 0;
}

static void buf_free(struct buf *b) {
    free(b->data);
    memset(b, 0, sizeof *b);
}

static void put_u32(uint8_t *p, uint32_t v) { p[0] = v >> 24; p[1] = v >> 16; p[2] = v >> 8; p[3] = v; }
static uint32_t get_u32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* ---- state ------------------------------------------------------------------------ */

enum conn_kind { C_FREE, C_ATTACH, C_OP, C_START, C_EXEC, C_ORPHAN };

struct conn {
    enum conn_kind kind;
    int fd;               /* -1 for C_ORPHAN (its process lives on until its EXIT) */
    struct buf in, out;   /* out holds u16-length-prefixed packets for C_ATTACH */
    uint32_t id;          /* C_EXEC / C_ORPHAN: the agent-side id of the process, 0 before EXEC */
    int started;          /* its process said STARTED */
    int eof;              /* the peer will send no more (attach: shut down its write side) */
    int closing;          /* close once out is flushed */
    int64_t progress_ms;  /* when the peer last accepted bytes */
};

enum main_state { M_IDLE, M_STARTING, M_RUNNING, M_EXITED };
enum phase { P_RUN, P_PROBE, P_STOP };

static struct {
    const char *cid, *bundle, *workdir, *attach_path, *control_path, *main_exec, *probe_exec;
    int agent, attach_l, control_l, ctl, log, sync;
    pid_t qemu;
    int want_stdin, stdin_once;
    const char *cgroups[16], *unmounts[64];
    int ncgroups, nunmounts;
} cfg = {.agent = -1, .attach_l = -1, .control_l = -1, .ctl = -1, .log = -1, .sync = -1};

static struct conn conns[MAX_CONNS];
static struct buf agent_in, agent_out, main_frame, probe_frame, pending_stdin, probe_out;
static int agent_dead, qemu_dead, pidfd = -1, sigfd = -1;
static enum main_state main_state = M_IDLE;
static int vm_paused; /* the VM's CPUs are stopped (pause), until resume */
static enum phase phase = P_RUN;
static int main_code = 255, pending_eof, oom, start_conn = -1;
static uint16_t size_rows, size_cols;
static int have_size;
static uint32_t next_id = MAIN_ID + 2;
static int64_t probe_deadline;
static char ctl_line[OP_LINE_MAX];
static size_t ctl_len;

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void logmsg(const char *fmt, ...) {
    char stamp[32];
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(stamp, sizeof stamp, "%Y-%m-%d %H:%M:%S", &tm);
    fprintf(stderr, "%s monitor %.12s: ", stamp, cfg.cid ? cfg.cid : "?");
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fflush(stderr);
}

/* Write all of *p* to a blocking fd (files, the sync pipe). */
static int write_all(int fd, const void *p, size_t n) {
    const uint8_t *c = p;
    while (n) {
        ssize_t put = write(fd, c, n);
        if (put < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        c += put;
        n -= (size_t)put;
    }
    return 0;
}

/* bundle/NAME holds TEXT, published by renaming NAME.tmp. */
static void write_bundle_file(const char *name, const char *text) {
    char path[4096], tmp[4096 + 8];
    snprintf(path, sizeof path, "%s/%s", cfg.bundle, name);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 || write_all(fd, text, strlen(text)) < 0 || close(fd) < 0 || rename(tmp, path) < 0)
        logmsg("writing %s: %s", path, strerror(errno));
}

/* ---- frames to the agent -------------------------------------------------------- */

static void frame_header(uint8_t *h, uint32_t len, uint8_t type, uint32_t id) {
    put_u32(h, len);
    h[4] = type;
    put_u32(h + 5, id);
}

static void agent_send(uint8_t type, uint32_t id, const void *payload, size_t n) {
    if (agent_dead) return;
    uint8_t h[HEADER_LEN];
    frame_header(h, (uint32_t)n, type, id);
    buf_append(&agent_out, h, sizeof h);
    buf_append(&agent_out, payload, n);
}

static void agent_signal(uint32_t id, uint32_t signo) {
    uint8_t p[4];
    put_u32(p, signo);
    agent_send(T_SIGNAL, id, p, 4);
}

static void agent_stdin(uint32_t id, const uint8_t *data, size_t n) {
    for (size_t i = 0; i < n; i += MAX_PAYLOAD)
        agent_send(T_STDIN, id, data + i, n - i < MAX_PAYLOAD ? n - i : MAX_PAYLOAD);
}

/* A pre-encoded EXEC frame (from Python) sent under *id*. */
static void agent_send_exec(const struct buf *f, uint32_t id) {
    if (agent_dead) return;
    size_t at = agent_out.len;
    buf_append(&agent_out, buf_head(f), buf_size(f));
    put_u32(agent_out.data + at + 5, id);
}

/* ---- connections ---------------------------------------------------------------- */

static int conn_new(int fd, enum conn_kind kind) {
    for (int i = 0; i < MAX_CONNS; i++) {
        if (conns[i].kind != C_FREE) continue;
        memset(&conns[i], 0, sizeof conns[i]);
        conns[i].kind = kind;
        conns[i].fd = fd;
        conns[i].progress_ms = now_ms();
        return i;
    }
    logmsg("too many connections: refusing one");
    close(fd);
    return -1;
}

static void conn_free(int i) {
    struct conn *c = &conns[i];
    if (c->fd >= 0) close(c->fd);
    buf_free(&c->in);
    buf_free(&c->out);
    memset(c, 0, sizeof *c);
    c->kind = C_FREE;
    c->fd = -1;
    if (start_conn == i) start_conn = -1;
}

/* The peer of *i* is gone (or dropped): an exec's process is killed, and its slot
 * lingers without an fd until the agent reports the process's end. */
static void conn_gone(int i) {
    struct conn *c = &conns[i];
    if (c->kind == C_EXEC && c->id) {
        if (c->started) agent_signal(c->id, SIGKILL);
        close(c->fd);
        c->fd = -1;
        buf_free(&c->in);
        buf_free(&c->out);
        c->kind = C_ORPHAN;
        return;
    }
    conn_free(i);
}

static void conn_reply(int i, const char *fmt, ...) {
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line - 1, fmt, ap);
    va_end(ap);
    if (n < 0) n = 0;
    if ((size_t)n > sizeof line - 2) n = sizeof line - 2;
    for (int k = 0; k < n; k++)
        if (line[k] == '\n') line[k] = ' ';
    line[n++] = '\n';
    buf_append(&conns[i].out, line, (size_t)n);
    conns[i].kind = C_OP;
    conns[i].closing = 1;
    if (start_conn == i) start_conn = -1;
}

/* Write what *i* has queued; returns -1 when the peer is gone. */
static int conn_flush(int i) {
    struct conn *c = &conns[i];
    while (buf_size(&c->out)) {
        ssize_t put;
        if (c->kind == C_ATTACH) {
            uint8_t *p = buf_head(&c->out);
            size_t len = (size_t)p[0] << 8 | p[1];
            put = send(c->fd, p + 2, len, MSG_DONTWAIT | MSG_NOSIGNAL);
            if (put >= 0) put = (ssize_t)len + 2;
        } else {
            put = send(c->fd, buf_head(&c->out), buf_size(&c->out), MSG_DONTWAIT | MSG_NOSIGNAL);
        }
        if (put < 0) {
            if (errno == EAGAIN || errno == EINTR) return 0;
            return -1;
        }
        buf_consume(&c->out, (size_t)put);
        c->progress_ms = now_ms();
    }
    return 0;
}

static void attach_packet(int i, uint8_t stream, const uint8_t *data, size_t n) {
    struct conn *c = &conns[i];
    if (buf_size(&c->out) + n > ATTACH_CAP) {
        logmsg("an attach client fell %u bytes behind: dropped", ATTACH_CAP);
        conn_free(i);
        return;
    }
    uint8_t h[3] = {(uint8_t)((n + 1) >> 8), (uint8_t)(n + 1), stream};
    buf_append(&c->out, h, 3);
    buf_append(&c->out, data, n);
}

/* An agent frame for exec connection *i*, passed on with id 0. */
static void exec_forward(int i, uint8_t type, const uint8_t *payload, size_t n) {
    uint8_t h[HEADER_LEN];
    frame_header(h, (uint32_t)n, type, 0);
    buf_append(&conns[i].out, h, sizeof h);
    buf_append(&conns[i].out, payload, n);
}

/* ---- the container's output ------------------------------------------------------- */

/* container.log, as conmon --log-size-max keeps it: when the next record would take the
 * file past the limit, a fresh file replaces it (written beside it, renamed over it; a
 * reader following the old file finishes it, then opens the new one). One record longer
 * than the limit still goes in whole, alone. */
static long long log_size_max, log_written;

static void log_rotate(void) {
    char path[PATH_MAX], tmp[PATH_MAX];
    snprintf(path, sizeof path, "%s/container.log", cfg.bundle);
    snprintf(tmp, sizeof tmp, "%s/.container.log.new", cfg.bundle);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) { logmsg("rotating container.log: %s", strerror(errno)); return; }
    if (rename(tmp, path) < 0) {
        logmsg("rotating container.log: %s", strerror(errno));
        close(fd);
        unlink(tmp);
        return;
    }
    dup2(fd, cfg.log); /* keep the descriptor number; dup2 clears FD_CLOEXEC on it */
    fcntl(cfg.log, F_SETFD, FD_CLOEXEC);
    close(fd);
    log_written = 0;
}

static void log_write(const uint8_t *p, size_t n) {
    if (log_size_max > 0 && log_written > 0 && log_written + (long long)n > log_size_max) log_rotate();
    if (write_all(cfg.log, p, n) < 0) logmsg("writing container.log: %s", strerror(errno));
    else log_written += (long long)n;
}

/* One chunk of main's output: k8s-file lines, identical to what the Python shim wrote,
 * and packets for every attach client. */
static void record(uint8_t type, const uint8_t *data, size_t n) {
    static struct buf line;
    struct timespec ts;
    struct tm tm;
    char stamp[64];
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t sl = strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(stamp + sl, sizeof stamp - sl, ".%09ld+00:00", ts.tv_nsec);
    const char *stream = type == T_STDERR ? "stderr" : "stdout";
    line.off = line.len = 0;
    size_t start = 0;
    for (;;) {
        const uint8_t *nl = memchr(data + start, '\n', n - start);
        size_t end = nl ? (size_t)(nl - data) : n;
        if (!nl && end == start) break; /* nothing after the last newline */
        char prefix[96];
        int pl = snprintf(prefix, sizeof prefix, "%s %s %c ", stamp, stream, nl ? 'F' : 'P');
        buf_append(&line, prefix, (size_t)pl);
        buf_append(&line, data + start, end - start);
        buf_append(&line, "\n", 1);
        if (log_size_max > 0) { /* record by record, so that rotation falls between records */
            log_write(buf_head(&line), buf_size(&line));
            line.off = line.len = 0;
        }
        if (!nl) break;
        start = end + 1;
    }
    if (buf_size(&line)) log_write(buf_head(&line), buf_size(&line));
    uint8_t stream_byte = type == T_STDERR ? 3 : 2;
    for (int i = 0; i < MAX_CONNS; i++) {
        if (conns[i].kind != C_ATTACH) continue;
        for (size_t k = 0; k < n && conns[i].kind == C_ATTACH; k += ATTACH_DATA)
            attach_packet(i, stream_byte, data + k, n - k < ATTACH_DATA ? n - k : ATTACH_DATA);
    }
}

/* ---- the VM ------------------------------------------------------------------------- */

/* One QMP command over a fresh connection to QEMU's socket; 0, or -1 with *err* set. */
static int qmp(const char *command, char *err, size_t errlen) {
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s/qmp.sock", cfg.workdir);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct timeval tv = {.tv_sec = 10};
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) < 0 ||
        connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        snprintf(err, errlen, "QEMU's QMP socket %s: %s", sa.sun_path, strerror(errno));
        if (fd >= 0) close(fd);
        return -1;
    }
    char in[8192];
    size_t have = 0;
    int rc = -1, lines = 0;
    const char *cmds[2] = {"qmp_capabilities", command};
    int sent = -1; /* the greeting comes first */
    for (;;) {
        char *nl = memchr(in, '\n', have);
        if (!nl) {
            if (have == sizeof in) have = 0; /* an over-long event: skip it */
            ssize_t got = read(fd, in + have, sizeof in - have);
            if (got <= 0) {
                snprintf(err, errlen, "QEMU's QMP socket: %s", got < 0 ? strerror(errno) : "closed");
                break;
            }
            have += (size_t)got;
            continue;
        }
        *nl = 0;
        int answer = strncmp(in, "{\"return\"", 9) == 0, error = strncmp(in, "{\"error\"", 8) == 0;
        if (error) snprintf(err, errlen, "QMP %s: %.900s", cmds[sent < 0 ? 0 : sent], in);
        size_t used = (size_t)(nl - in) + 1;
        memmove(in, in + used, have - used);
        have -= used;
        if (error) break;
        if (lines++ == 0 || answer) {
            if (sent == 1) { rc = 0; break; }
            char req[128];
            int n = snprintf(req, sizeof req, "{\"execute\": \"%s\"}\n", cmds[++sent]);
            if (write_all(fd, req, (size_t)n) < 0) {
                snprintf(err, errlen, "QEMU's QMP socket: %s", strerror(errno));
                break;
            }
        }
    }
    close(fd);
    return rc;
}

/* Why the VM stopped under the container: a panic's last words on the console, if any. */
static void stop_reason(char *out, size_t outlen, const char *otherwise) {
    static const char key[] = "Kernel panic - not syncing:";
    char path[4096], text[65536];
    snprintf(path, sizeof path, "%s/console.log", cfg.workdir);
    ssize_t n = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        off_t size = lseek(fd, 0, SEEK_END);
        off_t from = size > (off_t)sizeof text - 1 ? size - (off_t)sizeof text + 1 : 0;
        n = pread(fd, text, sizeof text - 1, from);
        close(fd);
    }
    text[n > 0 ? n : 0] = 0;
    const char *found = NULL;
    for (const char *p = text; (p = memmem(p, (size_t)(text + (n > 0 ? n : 0) - p), key, sizeof key - 1)); p++)
        found = p;
    if (!found) {
        snprintf(out, outlen, "the utility VM stopped unexpectedly (%s)", otherwise);
        return;
    }
    const char *r = found + sizeof key - 1;
    size_t len = strcspn(r, "\r\n");
    while (len && (*r == ' ' || *r == '\t')) { r++; len--; }
    while (len && (r[len - 1] == ' ' || r[len - 1] == '\t')) len--;
    if (!len) { r = "no reason given"; len = strlen(r); }
    snprintf(out, outlen, "the utility VM stopped: guest kernel panic: %.*s", (int)len, r);
}

/* Wait up to *ms* for QEMU to exit; reap it if it is our child. */
static void wait_qemu(int ms) {
    if (qemu_dead) return;
    if (pidfd >= 0) {
        struct pollfd p = {.fd = pidfd, .events = POLLIN};
        int64_t deadline = now_ms() + ms;
        while (poll(&p, 1, (int)(deadline - now_ms() > 0 ? deadline - now_ms() : 0)) < 0 && errno == EINTR) {}
        if (!(p.revents & POLLIN)) return;
    }
    waitpid(cfg.qemu, NULL, WNOHANG);
    qemu_dead = 1;
}

/* The VM went away (QEMU exited, or the agent channel closed) while the container lived. */
static void vm_gone(const char *why) {
    agent_dead = 1;
    if (phase == P_PROBE) { /* after main's exit: no OOM count to be had */
        phase = P_STOP;
        return;
    }
    if (phase != P_RUN) return;
    wait_qemu(2000); /* let a panicking QEMU finish writing its console */
    char reason[1200], line[1300];
    stop_reason(reason, sizeof reason, why);
    logmsg("%s", reason);
    main_code = 255;
    write_bundle_file("error", reason);
    int n = snprintf(line, sizeof line, "berth: %s\n", reason);
    record(T_STDERR, (const uint8_t *)line, (size_t)n);
    if (start_conn >= 0) conn_reply(start_conn, "error %s", reason);
    phase = P_STOP;
}

static void main_exited(int code) {
    main_state = M_EXITED;
    main_code = code;
    /* Only a SIGKILL can be an OOM kill: ask the guest then, not on every exit.
     * The VM is this container's alone, so any OOM kill in it is its own. */
    if (code == 128 + SIGKILL && !agent_dead && buf_size(&probe_frame)) {
        agent_send_exec(&probe_frame, PROBE_ID);
        agent_send(T_STDIN_EOF, PROBE_ID, NULL, 0);
        probe_deadline = now_ms() + PROBE_SECONDS * 1000;
        phase = P_PROBE;
        return;
    }
    phase = P_STOP;
}

static void probe_done(void) {
    buf_append(&probe_out, "", 1);
    const char *text = (const char *)buf_head(&probe_out);
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
        if (strncmp(p, "oom_kill ", 9) == 0) {
            oom = strtol(p + 9, NULL, 10) > 0;
            break;
        }
    }
    phase = P_STOP;
}

/* ---- frames from the agent ------------------------------------------------------------ */

static int exec_conn(uint32_t id) {
    if (!id) return -1; /* id 0 is the agent's own (READY, a refused frame), never an exec's */
    for (int i = 0; i < MAX_CONNS; i++)
        if ((conns[i].kind == C_EXEC || conns[i].kind == C_ORPHAN) && conns[i].id == id) return i;
    return -1;
}

static void error_text(const uint8_t *p, size_t n, char *out, size_t outlen) {
    size_t len = n >= 4 ? get_u32(p) : 0;
    if (len > n - 4) len = n >= 4 ? n - 4 : 0;
    snprintf(out, outlen, "%.*s", (int)len, (const char *)p + 4);
}

static void on_main_frame(uint8_t type, const uint8_t *p, size_t n) {
    char msg[1024];
    switch (type) {
    case T_STARTED:
        main_state = M_RUNNING;
        if (start_conn >= 0) conn_reply(start_conn, "ok");
        start_conn = -1;
        break;
    case T_STDOUT:
    case T_STDERR:
        record(type, p, n);
        break;
    case T_EXIT:
        main_exited(n == 4 ? (int32_t)get_u32(p) : 255);
        break;
    case T_ERROR:
        error_text(p, n, msg, sizeof msg);
        if (main_state == M_STARTING) { /* it did not start: the caller may try again */
            main_state = M_IDLE;
            if (start_conn >= 0) conn_reply(start_conn, "error %s", msg);
            start_conn = -1;
        } else {
            logmsg("agent error for the container's process: %s", msg);
        }
        break;
    }
}

static void on_frame(uint8_t type, uint32_t id, const uint8_t *p, size_t n) {
    char msg[1024];
    if (id == MAIN_ID) { on_main_frame(type, p, n); return; }
    if (id == PROBE_ID) {
        if ((type == T_STDOUT) && buf_size(&probe_out) + n <= PROBE_CAP) buf_append(&probe_out, p, n);
        else if ((type == T_EXIT || type == T_ERROR) && phase == P_PROBE) probe_done();
        return;
    }
    int i = exec_conn(id);
    if (i < 0) {
        if (type == T_ERROR) {
            error_text(p, n, msg, sizeof msg);
            logmsg("agent error (id %u): %s", id, msg);
        }
        return;
    }
    struct conn *c = &conns[i];
    int ends = type == T_EXIT || (type == T_ERROR && !c->started);
    if (type == T_STARTED) {
        c->started = 1;
        if (c->kind == C_ORPHAN) agent_signal(id, SIGKILL); /* its client left before it started */
    }
    if (type == T_ERROR && c->started) {
        error_text(p, n, msg, sizeof msg);
        logmsg("agent error for an exec'd process: %s", msg);
        return;
    }
    if (c->kind == C_ORPHAN) {
        if (ends) conn_free(i);
        return;
    }
    exec_forward(i, type, p, n);
    if (ends) {
        c->id = 0;
        c->closing = 1;
    }
}

/* Read what the agent sent and act on each whole frame; 0 when there was nothing to read. */
static int agent_read(void) {
    uint8_t chunk[MAX_PAYLOAD + HEADER_LEN];
    ssize_t got = read(cfg.agent, chunk, sizeof chunk);
    if (got < 0 && (errno == EAGAIN || errno == EINTR)) return 0;
    if (got <= 0) {
        vm_gone(got == 0 ? "the agent channel closed" : strerror(errno));
        return 0;
    }
    buf_append(&agent_in, chunk, (size_t)got);
    while (buf_size(&agent_in) >= HEADER_LEN && !agent_dead) {
        const uint8_t *h = buf_head(&agent_in);
        uint32_t len = get_u32(h);
        if (len > MAX_PAYLOAD) {
            vm_gone("the agent sent an oversized frame");
            return 0;
        }
        if (buf_size(&agent_in) < HEADER_LEN + (size_t)len) break;
        on_frame(h[4], get_u32(h + 5), h + HEADER_LEN, len);
        buf_consume(&agent_in, HEADER_LEN + len);
    }
    return 1;
}

/* ---- control connections ------------------------------------------------------------------ */

static void op_start(int i) {
    if (main_state != M_IDLE) { conn_reply(i, "error the container's process was already started"); return; }
    if (phase != P_RUN || agent_dead) { conn_reply(i, "error not running"); return; }
    struct buf f = {0};
    buf_append(&f, buf_head(&main_frame), buf_size(&main_frame));
    uint8_t *size = f.data + HEADER_LEN + 12; /* flags, uid, gid, then u16 rows, u16 cols */
    if (have_size && buf_size(&f) >= HEADER_LEN + 16 && !(size[0] | size[1] | size[2] | size[3])) {
        size[0] = size_rows >> 8; size[1] = (uint8_t)size_rows;
        size[2] = size_cols >> 8; size[3] = (uint8_t)size_cols;
    }
    agent_send_exec(&f, MAIN_ID);
    buf_free(&f);
    agent_stdin(MAIN_ID, buf_head(&pending_stdin), buf_size(&pending_stdin));
    buf_free(&pending_stdin);
    if (!cfg.want_stdin || pending_eof) agent_send(T_STDIN_EOF, MAIN_ID, NULL, 0);
    main_state = M_STARTING;
    conns[i].kind = C_START;
    start_conn = i;
}

static void op_line(int i, char *line) {
    char err[1200];
    if (strcmp(line, "start") == 0) {
        op_start(i);
    } else if (strncmp(line, "kill ", 5) == 0) {
        long signo = strtol(line + 5, NULL, 10);
        if (signo < 1 || signo > 64) conn_reply(i, "error invalid signal number %s", line + 5);
        else if ((main_state != M_RUNNING && main_state != M_STARTING) || phase != P_RUN || agent_dead)
            conn_reply(i, "error not running");
        else {
            agent_signal(MAIN_ID, (uint32_t)signo);
            conn_reply(i, "ok");
        }
    } else if (strcmp(line, "pause") == 0 || strcmp(line, "resume") == 0) {
        if (qmp(line[0] == 'p' ? "stop" : "cont", err, sizeof err) < 0) conn_reply(i, "error %s", err);
        else {
            vm_paused = line[0] == 'p';
            conn_reply(i, "ok");
        }
    } else if (strcmp(line, "state") == 0) { /* for a daemon that restarted: what to believe */
        conn_reply(i, "ok %s", main_state == M_IDLE ? "created" : main_state == M_EXITED ? "stopped"
                   : vm_paused ? "paused" : "running");
    } else if (strcmp(line, "exec") == 0) {
        conns[i].kind = C_EXEC;
    } else {
        conn_reply(i, "error unknown operation %.64s", line);
    }
}

/* Frames from an exec client: the first is its EXEC, the rest go to that process. */
static void exec_input(int i) {
    struct conn *c = &conns[i];
    while (c->kind == C_EXEC && buf_size(&c->in) >= HEADER_LEN) {
        uint8_t *h = buf_head(&c->in);
        uint32_t len = get_u32(h);
        if (len > MAX_PAYLOAD) {
            logmsg("an exec client sent an oversized frame: dropped");
            conn_gone(i);
            return;
        }
        if (buf_size(&c->in) < HEADER_LEN + (size_t)len) return;
        uint8_t type = h[4];
        if (type == T_EXEC && !c->id && !c->started) {
            if (phase != P_RUN || agent_dead) {
                static const char gone[] = "the container is not running";
                uint8_t p[4 + sizeof gone - 1];
                put_u32(p, sizeof gone - 1);
                memcpy(p + 4, gone, sizeof gone - 1);
                exec_forward(i, T_ERROR, p, sizeof p);
                c->closing = 1;
                return;
            }
            c->id = next_id++;
            if (next_id < MAIN_ID + 2) next_id = MAIN_ID + 2;
            put_u32(h + 5, c->id);
            buf_append(&agent_out, h, HEADER_LEN + len);
        } else if (c->id && (type == T_STDIN || type == T_STDIN_EOF || type == T_SIGNAL || type == T_RESIZE)) {
            put_u32(h + 5, c->id);
            buf_append(&agent_out, h, HEADER_LEN + len);
        }
        buf_consume(&c->in, HEADER_LEN + len);
    }
}

static void conn_read(int i) {
    struct conn *c = &conns[i];
    uint8_t chunk[MAX_PAYLOAD];
    ssize_t got = recv(c->fd, chunk, sizeof chunk, MSG_DONTWAIT);
    if (got < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (c->kind == C_ATTACH) {
        if (got > 0) {
            if (!cfg.want_stdin) return;
            if (main_state == M_IDLE) {
                if (buf_size(&pending_stdin) + (size_t)got <= STDIN_CAP) buf_append(&pending_stdin, chunk, (size_t)got);
                else logmsg("input before the start exceeds %u bytes: dropped", STDIN_CAP);
            } else if (main_state != M_EXITED) {
                agent_stdin(MAIN_ID, chunk, (size_t)got);
            }
            return;
        }
        if (got < 0) { conn_free(i); return; }
        c->eof = 1; /* it keeps receiving output until it closes */
        if (cfg.want_stdin && cfg.stdin_once) {
            if (main_state == M_IDLE) pending_eof = 1;
            else if (main_state != M_EXITED) agent_send(T_STDIN_EOF, MAIN_ID, NULL, 0);
        }
        return;
    }
    if (got <= 0) { conn_gone(i); return; }
    if (c->kind == C_START || (c->kind == C_OP && c->closing)) return; /* nothing more is expected */
    buf_append(&c->in, chunk, (size_t)got);
    if (c->kind == C_OP) {
        uint8_t *nl = memchr(buf_head(&c->in), '\n', buf_size(&c->in));
        if (!nl) {
            if (buf_size(&c->in) > OP_LINE_MAX) conn_reply(i, "error the request line is too long");
            return;
        }
        char line[OP_LINE_MAX + 1];
        size_t len = (size_t)(nl - buf_head(&c->in));
        if (len > OP_LINE_MAX) { conn_reply(i, "error the request line is too long"); return; }
        memcpy(line, buf_head(&c->in), len);
        line[len] = 0;
        buf_consume(&c->in, len + 1);
        op_line(i, line);
    }
    if (c->kind == C_EXEC) exec_input(i);
}

/* ---- ctl fifo ---------------------------------------------------------------------------- */

static void ctl_read(void) {
    char chunk[512];
    ssize_t got = read(cfg.ctl, chunk, sizeof chunk);
    for (ssize_t k = 0; k < got; k++) {
        if (chunk[k] != '\n') {
            if (ctl_len < sizeof ctl_line - 1) ctl_line[ctl_len++] = chunk[k];
            continue;
        }
        ctl_line[ctl_len] = 0;
        ctl_len = 0;
        unsigned kind, rows, cols;
        char extra;
        if (sscanf(ctl_line, "%u %u %u %c", &kind, &rows, &cols, &extra) != 3 || kind != 1 ||
            rows > 0xffff || cols > 0xffff)
            continue;
        if (main_state == M_IDLE) { /* the process gets this size when it starts */
            size_rows = (uint16_t)rows;
            size_cols = (uint16_t)cols;
            have_size = 1;
        } else if (main_state != M_EXITED) {
            uint8_t p[4] = {(uint8_t)(rows >> 8), (uint8_t)rows, (uint8_t)(cols >> 8), (uint8_t)cols};
            agent_send(T_RESIZE, MAIN_ID, p, 4);
        }
    }
}

/* ---- teardown ------------------------------------------------------------------------------ */

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st; (void)ftw;
    if ((flag == FTW_DP ? rmdir(path) : unlink(path)) < 0 && errno != ENOENT)
        logmsg("removing %s: %s", path, strerror(errno));
    return 0;
}

static void teardown(void) {
    char text[32];
    if (main_state == M_EXITED && oom) write_bundle_file("oom", "1");
    snprintf(text, sizeof text, "%d", main_code);
    write_bundle_file("exit", text);
    if (start_conn >= 0) conn_reply(start_conn, "error the container stopped");
    /* What attach clients are owed goes out first (for a second at most). */
    int64_t deadline = now_ms() + 1000;
    for (;;) {
        struct pollfd p[MAX_CONNS];
        int n = 0;
        for (int i = 0; i < MAX_CONNS; i++) {
            if (conns[i].fd < 0 || conns[i].kind == C_FREE || !buf_size(&conns[i].out)) continue;
            if (conn_flush(i) < 0) { conn_free(i); continue; }
            if (buf_size(&conns[i].out)) p[n++] = (struct pollfd){.fd = conns[i].fd, .events = POLLOUT};
        }
        int64_t left = deadline - now_ms();
        if (!n || left <= 0) break;
        poll(p, (nfds_t)n, (int)left);
    }
    for (int i = 0; i < MAX_CONNS; i++)
        if (conns[i].kind != C_FREE) conn_free(i);
    if (!qemu_dead) {
        kill(cfg.qemu, SIGKILL);
        wait_qemu(10000);
    }
    for (int i = 0; i < cfg.nunmounts; i++)
        if (umount2(cfg.unmounts[i], MNT_DETACH) < 0 && errno != EINVAL && errno != ENOENT)
            logmsg("unmounting %s: %s", cfg.unmounts[i], strerror(errno));
    for (int i = 0; i < cfg.ncgroups; i++) { /* QEMU's tasks take a moment to leave */
        int64_t until = now_ms() + 2000;
        while (rmdir(cfg.cgroups[i]) < 0 && errno != ENOENT && now_ms() < until) usleep(20000);
    }
    if (nftw(cfg.workdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT) < 0 && errno != ENOENT)
        logmsg("removing %s: %s", cfg.workdir, strerror(errno));
    unlink(cfg.control_path);
    unlink(cfg.attach_path);
}

/* ---- start-up ------------------------------------------------------------------------------ */

static void fail(const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    logmsg("%s", msg);
    if (cfg.sync >= 0) {
        char doc[1200];
        for (char *p = msg; *p; p++)
            if (*p == '"' || *p == '\\' || (unsigned char)*p < 0x20) *p = ' ';
        int n = snprintf(doc, sizeof doc, "{\"pid\": -1, \"message\": \"the VM monitor failed: %s\"}\n", msg);
        (void)!write(cfg.sync, doc, (size_t)n);
    }
    exit(1);
}

static void read_frame_file(const char *path, struct buf *b) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) fail("%s: %s", path, strerror(errno));
    uint8_t chunk[8192];
    ssize_t got;
    while ((got = read(fd, chunk, sizeof chunk)) > 0) buf_append(b, chunk, (size_t)got);
    close(fd);
    unlink(path);
    if (buf_size(b) < HEADER_LEN + 16 || buf_head(b)[4] != T_EXEC ||
        get_u32(buf_head(b)) != buf_size(b) - HEADER_LEN)
        fail("%s is not one EXEC frame", path);
}

static int fd_arg(const char *s, const char *what) {
    char *end;
    long v = strtol(s, &end, 10);
    if (*end || v < 0 || v > 65535 || fcntl((int)v, F_GETFD) < 0) fail("--%s %s: not an open descriptor", what, s);
    fcntl((int)v, F_SETFD, FD_CLOEXEC);
    return (int)v;
}

static void parse_args(int argc, char **argv) {
    static const struct option opts[] = {
        {"cid", 1, 0, 'i'}, {"bundle", 1, 0, 'b'}, {"workdir", 1, 0, 'w'}, {"attach", 1, 0, 'a'},
        {"control", 1, 0, 'c'}, {"qemu-pid", 1, 0, 'q'}, {"agent-fd", 1, 0, 'A'}, {"attach-fd", 1, 0, 'T'},
        {"control-fd", 1, 0, 'C'}, {"ctl-fd", 1, 0, 'R'}, {"log-fd", 1, 0, 'L'}, {"sync-fd", 1, 0, 'S'},
        {"main-exec", 1, 0, 'm'}, {"probe-exec", 1, 0, 'p'}, {"cgroup", 1, 0, 'g'}, {"unmount", 1, 0, 'u'},
        {"stdin", 0, 0, 'I'}, {"stdin-once", 0, 0, 'O'}, {"log-size-max", 1, 0, 'M'}, {0, 0, 0, 0},
    };
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 'i': cfg.cid = optarg; break;
        case 'b': cfg.bundle = optarg; break;
        case 'w': cfg.workdir = optarg; break;
        case 'a': cfg.attach_path = optarg; break;
        case 'c': cfg.control_path = optarg; break;
        case 'q': cfg.qemu = (pid_t)atoi(optarg); break;
        case 'A': cfg.agent = fd_arg(optarg, "agent-fd"); break;
        case 'T': cfg.attach_l = fd_arg(optarg, "attach-fd"); break;
        case 'C': cfg.control_l = fd_arg(optarg, "control-fd"); break;
        case 'R': cfg.ctl = fd_arg(optarg, "ctl-fd"); break;
        case 'L': cfg.log = fd_arg(optarg, "log-fd"); break;
        case 'S': cfg.sync = fd_arg(optarg, "sync-fd"); break;
        case 'm': cfg.main_exec = optarg; break;
        case 'p': cfg.probe_exec = optarg; break;
        case 'g':
            if (cfg.ncgroups == (int)(sizeof cfg.cgroups / sizeof *cfg.cgroups)) fail("too many --cgroup");
            cfg.cgroups[cfg.ncgroups++] = optarg;
            break;
        case 'u':
            if (cfg.nunmounts == (int)(sizeof cfg.unmounts / sizeof *cfg.unmounts)) fail("too many --unmount");
            cfg.unmounts[cfg.nunmounts++] = optarg;
            break;
        case 'I': cfg.want_stdin = 1; break;
        case 'O': cfg.stdin_once = 1; break;
        case 'M': {
            char *end;
            log_size_max = strtoll(optarg, &end, 10);
            if (*end || log_size_max < 0) fail("--log-size-max %s: not a size in bytes", optarg);
            break;
        }
        default: fail("usage: see berth.vm.shim.Handover (unknown option)");
        }
    }
    if (optind != argc) fail("unexpected argument %s", argv[optind]);
    if (!cfg.cid || !cfg.bundle || !cfg.workdir || !cfg.attach_path || !cfg.control_path || cfg.qemu <= 0 ||
        cfg.agent < 0 || cfg.attach_l < 0 || cfg.control_l < 0 || cfg.ctl < 0 || cfg.log < 0 || !cfg.main_exec)
        fail("missing arguments: --cid --bundle --workdir --attach --control --qemu-pid --agent-fd --attach-fd "
             "--control-fd --ctl-fd --log-fd --main-exec are required");
    struct stat st;
    if (log_size_max > 0 && fstat(cfg.log, &st) == 0) log_written = st.st_size;
}

int main(int argc, char **argv) {
    for (int i = 0; i < MAX_CONNS; i++) conns[i].fd = -1;
    parse_args(argc, argv);
    read_frame_file(cfg.main_exec, &main_frame);
    if (cfg.probe_exec) read_frame_file(cfg.probe_exec, &probe_frame);
    signal(SIGPIPE, SIG_IGN);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    sigprocmask(SIG_BLOCK, &set, NULL);
    sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (sigfd < 0) fail("signalfd: %s", strerror(errno));
    pidfd = (int)syscall(SYS_pidfd_open, cfg.qemu, 0);
    if (pidfd < 0 && errno != ESRCH) fail("pidfd_open %d: %s", (int)cfg.qemu, strerror(errno));
    if (pidfd < 0) qemu_dead = 1;
    int nb[] = {cfg.agent, cfg.attach_l, cfg.control_l, cfg.ctl};
    for (size_t k = 0; k < sizeof nb / sizeof *nb; k++) fcntl(nb[k], F_SETFL, fcntl(nb[k], F_GETFL) | O_NONBLOCK);
    if (cfg.sync >= 0) {
        char doc[64];
        int n = snprintf(doc, sizeof doc, "{\"pid\": %d}\n", (int)cfg.qemu);
        (void)!write(cfg.sync, doc, (size_t)n);
        close(cfg.sync);
        cfg.sync = -1;
    }
    if (qemu_dead) vm_gone("QEMU had exited before the container was created");

    enum { F_AGENT, F_SIG, F_PID, F_ATTACH, F_CONTROL, F_CTL, F_CONNS };
    struct pollfd pfd[F_CONNS + MAX_CONNS];
    int who[F_CONNS + MAX_CONNS];
    while (phase != P_STOP) {
        int stalled = 0, timeout = -1;
        int64_t now = now_ms();
        for (int i = 0; i < MAX_CONNS; i++) {
            struct conn *c = &conns[i];
            if (c->kind != C_EXEC || buf_size(&c->out) <= EXEC_HIGH_WATER) continue;
            int64_t left = c->progress_ms + STUCK_SECONDS * 1000 - now;
            if (left <= 0) {
                logmsg("an exec client accepted nothing for %ds: dropped, its process killed", STUCK_SECONDS);
                conn_gone(i);
                continue;
            }
            stalled = 1;
            if (timeout < 0 || left < timeout) timeout = (int)left;
        }
        if (phase == P_PROBE) {
            int64_t left = probe_deadline - now;
            if (left <= 0) { logmsg("the guest did not answer the OOM probe"); phase = P_STOP; break; }
            if (timeout < 0 || left < timeout) timeout = (int)left;
        }
        pfd[F_AGENT] = (struct pollfd){.fd = agent_dead ? -1 : cfg.agent,
                                      .events = (stalled ? 0 : POLLIN) | (buf_size(&agent_out) ? POLLOUT : 0)};
        pfd[F_SIG] = (struct pollfd){.fd = sigfd, .events = POLLIN};
        pfd[F_PID] = (struct pollfd){.fd = qemu_dead ? -1 : pidfd, .events = POLLIN};
        pfd[F_ATTACH] = (struct pollfd){.fd = cfg.attach_l, .events = POLLIN};
        pfd[F_CONTROL] = (struct pollfd){.fd = cfg.control_l, .events = POLLIN};
        pfd[F_CTL] = (struct pollfd){.fd = cfg.ctl, .events = POLLIN};
        int n = F_CONNS;
        for (int i = 0; i < MAX_CONNS; i++) {
            struct conn *c = &conns[i];
            if (c->kind == C_FREE || c->fd < 0) continue;
            short ev = buf_size(&c->out) ? POLLOUT : 0;
            if (!c->eof && !c->closing) ev |= POLLIN;
            pfd[n] = (struct pollfd){.fd = c->fd, .events = ev};
            who[n++] = i;
        }
        if (poll(pfd, (nfds_t)n, timeout) < 0) {
            if (errno == EINTR) continue;
            logmsg("poll: %s", strerror(errno));
            break;
        }
        if (pfd[F_SIG].revents & POLLIN) {
            struct signalfd_siginfo si;
            while (read(sigfd, &si, sizeof si) > 0) {}
            logmsg("stopped by a signal; stopping the VM");
            phase = P_STOP;
            break;
        }
        if (pfd[F_AGENT].revents & POLLIN) agent_read();
        else if (pfd[F_AGENT].revents & (POLLHUP | POLLERR)) vm_gone("the agent channel closed");
        if (pfd[F_PID].revents & POLLIN) {
            while (!agent_dead && phase == P_RUN && agent_read()) {} /* what the guest said before it went */
            int st = 0;
            pid_t r = waitpid(cfg.qemu, &st, WNOHANG);
            qemu_dead = 1;
            char why[96];
            if (r == cfg.qemu && WIFSIGNALED(st)) snprintf(why, sizeof why, "QEMU was killed by signal %d", WTERMSIG(st));
            else if (r == cfg.qemu) snprintf(why, sizeof why, "QEMU exited with status %d", WEXITSTATUS(st));
            else snprintf(why, sizeof why, "QEMU exited");
            vm_gone(why);
        }
        if (phase == P_STOP) break;
        if (pfd[F_ATTACH].revents & POLLIN) {
            int fd = accept4(cfg.attach_l, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
            if (fd >= 0) conn_new(fd, C_ATTACH);
        }
        if (pfd[F_CONTROL].revents & POLLIN) {
            int fd = accept4(cfg.control_l, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
            if (fd >= 0) conn_new(fd, C_OP);
        }
        if (pfd[F_CTL].revents & POLLIN) ctl_read();
        for (int k = F_CONNS; k < n; k++) {
            int i = who[k];
            struct conn *c = &conns[i];
            if (!pfd[k].revents || c->kind == C_FREE || c->fd != pfd[k].fd) continue;
            if ((pfd[k].revents & POLLOUT) && conn_flush(i) < 0) { conn_gone(i); continue; }
            if (pfd[k].revents & (POLLIN | POLLHUP | POLLERR)) {
                if (c->eof || c->closing) {
                    if (pfd[k].revents & (POLLHUP | POLLERR)) conn_gone(i);
                } else {
                    conn_read(i);
                }
            }
        }
        /* Send what is queued at once: replies, frames, output. */
        for (int i = 0; i < MAX_CONNS; i++) {
            struct conn *c = &conns[i];
            if (c->kind == C_FREE || c->fd < 0) continue;
            if (buf_size(&c->out) && conn_flush(i) < 0) { conn_gone(i); continue; }
            if (c->closing && !buf_size(&c->out)) conn_free(i);
        }
        if (buf_size(&agent_out) && !agent_dead) {
            ssize_t put = write(cfg.agent, buf_head(&agent_out), buf_size(&agent_out));
            if (put > 0) buf_consume(&agent_out, (size_t)put);
            else if (put < 0 && errno != EAGAIN && errno != EINTR) vm_gone(strerror(errno));
        }
    }
    teardown();
    return 0;
}
