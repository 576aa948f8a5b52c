/*
 * berth guest agent: /init of berth's utility VMs.
 *
 * Strategy: one single-threaded poll(2) loop. At boot it mounts /proc, /sys,
 * /dev, loads the kernel modules listed in /lib/modules/order (dependencies
 * first, as prepared on the host), opens the virtio-serial port named
 * "berth.agent" and says READY. From then on it serves the framed protocol
 * documented in berth/wire/agentproto.py: a 9-byte header (u32 length, u8 type,
 * u32 id, all big-endian) then at most MAX_PAYLOAD bytes.
 *
 * Nothing ever blocks the loop: the port and every child fd are non-blocking;
 * frames to the host go through one output buffer, and children's output is
 * read (one chunk per fd per round, so no stream starves another) only while
 * that buffer is below a high-water mark; stdin for each child is queued per
 * child and written when its pipe can take it. Children are reaped through a
 * signalfd; EXIT is sent once a child has exited and its output is drained.
 *
 * Build: gcc -static -O2 -o agent agent.c
 * Outside a VM (tests), BERTH_AGENT_FD names an inherited fd to use as the port.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/random.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <net/route.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/reboot.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define PORT_NAME "berth.agent"
#define MAX_PAYLOAD (64 * 1024)
#define HEADER_LEN 9
#define READ_CHUNK (16 * 1024)
#define OUT_HIGH_WATER (512 * 1024)
#define STDIN_CAP (16 * 1024 * 1024)
#define MAX_PROCS 256

enum {
    T_MOUNT = 0x01, T_EXEC = 0x02, T_STDIN = 0x03, T_STDIN_EOF = 0x04, T_SIGNAL = 0x05,
    T_RESIZE = 0x06, T_SETTIME = 0x07, T_RNGSEED = 0x08, T_SHUTDOWN = 0x09, T_NETCONF = 0x0a,
    T_READY = 0x81, T_STARTED = 0x82, T_STDOUT = 0x83, T_STDERR = 0x84, T_EXIT = 0x85,
    T_ERROR = 0x86, T_OK = 0x87,
};

extern char **environ;

/* ---- growable byte buffer ------------------------------------------------ */

struct buf {
    uint8_t *data;
    size_t len, cap, off; /* live bytes are data[off .. len) */
};

static void buf_append(struct buf *b, const void *p, size_t n) {
    if (b->off && b->off == b->len) b->off = b->len = 0;
    if (b->len + n > b->cap) {
        if (b->off) { /* compact first */
            memmove(b->data, b->data + b->off, b->len - b->off);
            b->len -= b->off;
            b->off = 0;
        }
        if (b->len + n > b->cap) {
            size_t cap = b->cap ? b->cap : 4096;
            while (cap < b->len + n) cap *= 2;
            uint8_t *d = realloc(b->data, cap);
            if (!d) { fprintf(stderr, "agent: out of memory\n"); abort(); }
            b->data = d;
            b->cap = cap;
        }
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

static size_t buf_size(const struct buf *b) { return b->len - b->off; }

static void buf_consume(struct buf *b, size_t n) {
    b->off += n;
    if (b->off == b->len) b->off = b->len = 0;
}

static void buf_free(struct buf *b) {
    free(b->data);
    memset(b, 0, sizeof *b);
}

/* ---- state ---------------------------------------------------------------- */

struct proc {
    int used;
    uint32_t id;
    pid_t pid;
    int tty;
    int in_fd, out_fd, err_fd; /* -1 when closed; with a tty in_fd == out_fd == master */
    struct buf stdin_q;
    int stdin_eof;
    int exited;
    int code;
};

static int port = -1;
static struct buf out;  /* frames to the host */
static struct buf in;   /* bytes from the host not yet a whole frame */
static struct proc procs[MAX_PROCS];

static void logmsg(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("berth-agent: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static void put_u32(uint8_t *p, uint32_t v) {
    p[0] = v >> 24; p[1] = v >> 16; p[2] = v >> 8; p[3] = v;
}

static uint32_t get_u32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void send_frame(uint8_t type, uint32_t id, const void *payload, size_t n) {
    uint8_t h[HEADER_LEN];
    if (n > MAX_PAYLOAD) n = MAX_PAYLOAD;
    put_u32(h, (uint32_t)n);
    h[4] = type;
    put_u32(h + 5, id);
    buf_append(&out, h, sizeof h);
    if (n) buf_append(&out, payload, n);
}

static void send_str(uint8_t type, uint32_t id, const char *s) {
    size_t n = strlen(s);
    if (n > MAX_PAYLOAD - 4) n = MAX_PAYLOAD - 4;
    uint8_t *p = malloc(n + 4);
    if (!p) abort();
    put_u32(p, (uint32_t)n);
    memcpy(p + 4, s, n);
    send_frame(type, id, p, n + 4);
    free(p);
}

static void send_error(uint32_t id, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    send_str(T_ERROR, id, msg);
}

static void send_u32(uint8_t type, uint32_t id, uint32_t v) {
    uint8_t p[4];
    put_u32(p, v);
    send_frame(type, id, p, 4);
}

/* ---- payload reader ------------------------------------------------------- */

struct rd {
    const uint8_t *p;
    size_t n, pos;
    int bad;
};

static uint32_t rd_u32(struct rd *r) {
    if (r->bad || r->n - r->pos < 4) { r->bad = 1; return 0; }
    uint32_t v = get_u32(r->p + r->pos);
    r->pos += 4;
    return v;
}

static uint16_t rd_u16(struct rd *r) {
    if (r->bad || r->n - r->pos < 2) { r->bad = 1; return 0; }
    uint16_t v = (uint16_t)(r->p[r->pos] << 8 | r->p[r->pos + 1]);
    r->pos += 2;
    return v;
}

/* Returns a malloc'd NUL-terminated copy (NULL and r->bad on error). */
static char *rd_str(struct rd *r) {
    uint32_t len = rd_u32(r);
    if (r->bad || r->n - r->pos < len) { r->bad = 1; return NULL; }
    char *s = malloc((size_t)len + 1);
    if (!s) abort();
    memcpy(s, r->p + r->pos, len);
    s[len] = 0;
    if (memchr(s, 0, len)) { r->bad = 1; free(s); return NULL; }
    r->pos += len;
    return s;
}

static void free_vec(char **v) {
    if (!v) return;
    for (char **p = v; *p; p++) free(*p);
    free(v);
}

static char **rd_vec(struct rd *r) {
    uint32_t n = rd_u32(r);
    if (r->bad || n > r->n / 4 + 1) { r->bad = 1; return NULL; }
    char **v = calloc((size_t)n + 1, sizeof *v);
    if (!v) abort();
    for (uint32_t i = 0; i < n; i++) {
        v[i] = rd_str(r);
        if (r->bad) { free_vec(v); return NULL; }
    }
    return v;
}

/* ---- boot ------------------------------------------------------------------ */

static void mkdir_p(const char *path, mode_t mode) {
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s", path);
    for (char *p = tmp + 1; *p; p++) {
        if (*p == '/') {
            *p = 0;
            mkdir(tmp, mode);
            *p = '/';
        }
    }
    mkdir(tmp, mode);
}

static int do_mount(const char *src, const char *dst, const char *type, unsigned long flags,
                    const char *opts) {
    mkdir_p(dst, 0755);
    if (mount(src, dst, type, flags, opts) < 0 && errno != EBUSY) {
        int e = errno;
        logmsg("mount %s on %s: %s", type ? type : src, dst, strerror(e));
        errno = e;
        return -1;
    }
    return 0;
}

static void load_modules(void) {
    FILE *f = fopen("/lib/modules/order", "r");
    if (!f) return;
    char line[512], path[600];
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = 0;
        if (!line[0] || line[0] == '#') continue;
        snprintf(path, sizeof path, "/lib/modules/%s", line);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) { logmsg("open %s: %s", path, strerror(errno)); continue; }
        if (syscall(SYS_finit_module, fd, "", 0) < 0 && errno != EEXIST)
            logmsg("load %s: %s", line, strerror(errno));
        close(fd);
    }
    fclose(f);
}

/* Find the virtio-serial port by name in sysfs (no udev here); -1 if not there yet. */
static int open_port(void) {
    DIR *d = opendir("/sys/class/virtio-ports");
    if (!d) return -1;
    struct dirent *e;
    int fd = -1;
    while ((e = readdir(d)) != NULL && fd < 0) {
        if (e->d_name[0] == '.') continue;
        char path[512], name[128] = "";
        snprintf(path, sizeof path, "/sys/class/virtio-ports/%s/name", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f) continue;
        if (fgets(name, sizeof name, f)) name[strcspn(name, "\n")] = 0;
        fclose(f);
        if (strcmp(name, PORT_NAME) != 0) continue;
        snprintf(path, sizeof path, "/dev/%s", e->d_name);
        fd = open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
        if (fd < 0) logmsg("open %s: %s", path, strerror(errno));
    }
    closedir(d);
    return fd;
}

static void die(const char *what) {
    logmsg("fatal: %s: %s", what, strerror(errno));
    sync();
    if (getpid() == 1) reboot(RB_POWER_OFF);
    _exit(1);
}

/* ---- processes -------------------------------------------------------------- */

static struct proc *find_proc(uint32_t id) {
    for (int i = 0; i < MAX_PROCS; i++)
        if (procs[i].used && procs[i].id == id) return &procs[i];
    return NULL;
}

static void close_fd(int *fd) {
    if (*fd >= 0) close(*fd);
    *fd = -1;
}

static void proc_close_in(struct proc *p) {
    if (p->tty) { p->in_fd = -1; return; } /* the master is closed with out_fd */
    close_fd(&p->in_fd);
}

static void proc_free(struct proc *p) {
    proc_close_in(p);
    close_fd(&p->out_fd);
    close_fd(&p->err_fd);
    buf_free(&p->stdin_q);
    memset(p, 0, sizeof *p);
    p->in_fd = p->out_fd = p->err_fd = -1;
}

static void maybe_finish(struct proc *p) {
    if (p->used && p->exited && p->out_fd < 0 && p->err_fd < 0) {
        uint8_t c[4];
        put_u32(c, (uint32_t)p->code);
        send_frame(T_EXIT, p->id, c, 4);
        proc_free(p);
    }
}

static void reap(void) {
    for (;;) {
        int st;
        pid_t pid = waitpid(-1, &st, WNOHANG);
        if (pid <= 0) return;
        for (int i = 0; i < MAX_PROCS; i++) {
            struct proc *p = &procs[i];
            if (!p->used || p->pid != pid) continue;
            p->exited = 1;
            p->code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
            maybe_finish(p);
        }
    }
}

static void set_nonblock(int fd) {
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0) fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

struct child_err {
    int stage;
    int err;
};

static const char *stage_names[] = {"setsid", "open tty", "set tty", "dup2", "chroot", "chdir",
                                    "setgroups", "setgid", "setuid", "exec"};

static void child_fail(int errfd, int stage) {
    struct child_err ce = {stage, errno};
    (void)!write(errfd, &ce, sizeof ce);
    _exit(127);
}

static void do_exec(uint32_t id, const uint8_t *payload, size_t n) {
    struct rd r = {payload, n, 0, 0};
    uint32_t flags = rd_u32(&r), uid = rd_u32(&r), gid = rd_u32(&r);
    uint16_t rows = rd_u16(&r), cols = rd_u16(&r);
    char *root = rd_str(&r), *cwd = rd_str(&r);
    char **argv = rd_vec(&r), **envp = rd_vec(&r);
    int fds[6] = {-1, -1, -1, -1, -1, -1}, master = -1, errp[2] = {-1, -1};
    char slave[128] = "";
    struct proc *p = NULL;

    if (r.bad || r.pos != n || !argv || !argv[0]) { send_error(id, "bad EXEC payload"); goto out; }
    if (find_proc(id)) { send_error(id, "process id %u is in use", id); goto out; }
    for (int i = 0; i < MAX_PROCS && !p; i++)
        if (!procs[i].used) p = &procs[i];
    if (!p) { send_error(id, "too many processes"); goto out; }

    int tty = flags & 1;
    if (tty) {
        master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
        if (master < 0 || grantpt(master) < 0 || unlockpt(master) < 0 ||
            ptsname_r(master, slave, sizeof slave) != 0) {
            send_error(id, "pty: %s", strerror(errno));
            goto out;
        }
        if (rows && cols) {
            struct winsize ws = {.ws_row = rows, .ws_col = cols};
            ioctl(master, TIOCSWINSZ, &ws);
        }
    } else {
        for (int i = 0; i < 3; i++)
            if (pipe2(fds + 2 * i, O_CLOEXEC) < 0) { send_error(id, "pipe: %s", strerror(errno)); goto out; }
    }
    if (pipe2(errp, O_CLOEXEC) < 0) { send_error(id, "pipe: %s", strerror(errno)); goto out; }

    pid_t pid = fork();
    if (pid < 0) { send_error(id, "fork: %s", strerror(errno)); goto out; }
    if (pid == 0) {
        sigset_t all;
        sigemptyset(&all);
        sigprocmask(SIG_SETMASK, &all, NULL);
        signal(SIGPIPE, SIG_DFL);
        if (setsid() < 0) child_fail(errp[1], 0);
        if (tty) {
            int s = open(slave, O_RDWR);
            if (s < 0) child_fail(errp[1], 1);
            if (ioctl(s, TIOCSCTTY, 0) < 0) child_fail(errp[1], 2);
            for (int i = 0; i < 3; i++)
                if (dup2(s, i) < 0) child_fail(errp[1], 3);
            if (s > 2) close(s);
        } else {
            if (dup2(fds[0], 0) < 0 || dup2(fds[3], 1) < 0 || dup2(fds[5], 2) < 0)
                child_fail(errp[1], 3);
        }
        if (root[0] && chroot(root) < 0) child_fail(errp[1], 4);
        if (chdir(cwd[0] ? cwd : "/") < 0) child_fail(errp[1], 5);
        if (setgroups(0, NULL) < 0) child_fail(errp[1], 6);
        if (setgid(gid) < 0) child_fail(errp[1], 7);
        if (setuid(uid) < 0) child_fail(errp[1], 8);
        environ = envp;
        execvp(argv[0], argv);
        child_fail(errp[1], 9);
    }
    close_fd(&errp[1]);
    close_fd(&fds[0]);
    close_fd(&fds[3]);
    close_fd(&fds[5]);
    struct child_err ce;
    ssize_t got;
    do got = read(errp[0], &ce, sizeof ce); while (got < 0 && errno == EINTR);
    if (got == (ssize_t)sizeof ce) {
        waitpid(pid, NULL, 0);
        int st = ce.stage >= 0 && ce.stage < 10 ? ce.stage : 9;
        send_error(id, "%s %s: %s", stage_names[st], st == 9 ? argv[0] : (st == 4 ? root : (st == 5 ? cwd : "")),
                   strerror(ce.err));
        goto out;
    }
    memset(p, 0, sizeof *p);
    p->used = 1;
    p->id = id;
    p->pid = pid;
    p->tty = tty;
    if (tty) {
        p->in_fd = p->out_fd = master;
        p->err_fd = -1;
        master = -1;
    } else {
        p->in_fd = fds[1];
        p->out_fd = fds[2];
        p->err_fd = fds[4];
        fds[1] = fds[2] = fds[4] = -1;
        set_nonblock(p->in_fd);
        set_nonblock(p->err_fd);
    }
    set_nonblock(p->out_fd);
    send_u32(T_STARTED, id, (uint32_t)pid);
out:
    for (int i = 0; i < 6; i++) close_fd(&fds[i]);
    close_fd(&master);
    close_fd(&errp[0]);
    close_fd(&errp[1]);
    free(root);
    free(cwd);
    free_vec(argv);
    free_vec(envp);
}

/* ---- other requests ----------------------------------------------------------- */

static int is_mountpoint(const char *path) {
    struct stat here, up;
    char parent[320];
    snprintf(parent, sizeof parent, "%s/..", path);
    return stat(path, &here) == 0 && stat(parent, &up) == 0 && here.st_dev != up.st_dev;
}

static void do_mount_req(uint32_t id, const uint8_t *payload, size_t n) {
    struct rd r = {payload, n, 0, 0};
    uint32_t flags = rd_u32(&r);
    char *tag = rd_str(&r), *target = rd_str(&r);
    char path[4200], share[300];
    if (r.bad || r.pos != n || !tag[0] || target[0] != '/' || strchr(tag, '/') || strlen(tag) > 200) {
        send_error(id, "bad MOUNT payload");
        goto out;
    }
    /* flag 2: a pooled VM's share, whose content is its subdirectory m (bind-mounted by the host at
       hand-out): the share is mounted aside, in /run/berth/TAG (where the pooled VM mounted it
       ahead of time, while it waited), and m is bound on the target */
    snprintf(share, sizeof share, "/run/berth/%s", tag);
    if (flags & 2) {
        mkdir("/run/berth", 0700);
        mkdir(share, 0700);
    }
    if (!((flags & 2) && is_mountpoint(share)) &&
        do_mount(tag, (flags & 2) ? share : target, "9p", 0,
                 "trans=virtio,version=9p2000.L,msize=262144,access=client") < 0) {
        send_error(id, "mount 9p %s on %s: %s", tag, target, strerror(errno));
        goto out;
    }
    if (flags & 2) {
        snprintf(path, sizeof path, "%s/m", share);
        if (do_mount(path, target, NULL, MS_BIND, NULL) < 0) {
            send_error(id, "bind %s on %s: %s", path, target, strerror(errno));
            goto out;
        }
    }
    if (flags & 1) { /* a container root: give it what a container expects */
        struct { const char *src, *sub, *type; unsigned long fl; const char *opts; } m[] = {
            {"proc", "proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL},
            {"sysfs", "sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL},
            {"devtmpfs", "dev", "devtmpfs", MS_NOSUID, "mode=0755"},
            {"/dev/pts", "dev/pts", NULL, MS_BIND, NULL},
            {"shm", "dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777"},
        };
        for (size_t i = 0; i < sizeof m / sizeof m[0]; i++) {
            snprintf(path, sizeof path, "%s/%s", target, m[i].sub);
            if (do_mount(m[i].src, path, m[i].type, m[i].fl, m[i].opts) < 0) {
                send_error(id, "mount %s: %s", path, strerror(errno));
                goto out;
            }
        }
        /* the VM is the container's: its hostname is the container's (/etc/hostname, written by berth) */
        snprintf(path, sizeof path, "%s/etc/hostname", target);
        FILE *h = fopen(path, "re");
        if (h) {
            char name[65] = "";
            if (fgets(name, sizeof name, h)) {
                name[strcspn(name, "\n")] = 0;
                if (name[0] && sethostname(name, strlen(name)) < 0) logmsg("sethostname: %s", strerror(errno));
            }
            fclose(h);
        }
    }
    send_frame(T_OK, id, NULL, 0);
out:
    free(tag);
    free(target);
}

static void do_settime(uint32_t id, const uint8_t *p, size_t n) {
    if (n != 8) { send_error(id, "bad SETTIME payload"); return; }
    uint64_t ns = (uint64_t)get_u32(p) << 32 | get_u32(p + 4);
    struct timespec ts = {.tv_sec = (time_t)(ns / 1000000000ull), .tv_nsec = (long)(ns % 1000000000ull)};
    if (clock_settime(CLOCK_REALTIME, &ts) < 0) { send_error(id, "clock_settime: %s", strerror(errno)); return; }
    send_frame(T_OK, id, NULL, 0);
}

/* NETCONF: eth0 gets the container's MAC (clones share the template's), an IPv4 address and
 * prefix, and a default route when a gateway is given; then it is up. Done with ioctls, here,
 * because a shell with `ip` costs a fork and an exec per step under TCG. */
static int set_sockaddr(struct sockaddr *sa, const char *text) {
    struct sockaddr_in *in = (struct sockaddr_in *)sa;
    memset(in, 0, sizeof *in);
    in->sin_family = AF_INET;
    return inet_pton(AF_INET, text, &in->sin_addr) == 1 ? 0 : -1;
}

static void do_netconf(uint32_t id, const uint8_t *payload, size_t n) {
    struct rd r = {payload, n, 0, 0};
    char *mac = rd_str(&r), *addr = rd_str(&r), *gw = rd_str(&r);
    struct ifreq ifr;
    unsigned char hw[6];
    unsigned prefix = 0;
    char ip[64] = "";
    int s = -1;
    const char *slash = addr ? strchr(addr, '/') : NULL;
    if (r.bad || r.pos != n || !slash || (size_t)(slash - addr) >= sizeof ip ||
        sscanf(slash + 1, "%u", &prefix) != 1 || prefix > 32 ||
        sscanf(mac, "%2hhx:%2hhx:%2hhx:%2hhx:%2hhx:%2hhx", &hw[0], &hw[1], &hw[2], &hw[3], &hw[4], &hw[5]) != 6) {
        send_error(id, "bad NETCONF payload");
        goto out;
    }
    memcpy(ip, addr, (size_t)(slash - addr));
    s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    memset(&ifr, 0, sizeof ifr);
    snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "eth0");
    ifr.ifr_hwaddr.sa_family = ARPHRD_ETHER;
    memcpy(ifr.ifr_hwaddr.sa_data, hw, 6);
    if (s < 0 || ioctl(s, SIOCSIFHWADDR, &ifr) < 0) { send_error(id, "set eth0's MAC: %s", strerror(errno)); goto out; }
    if (set_sockaddr(&ifr.ifr_addr, ip) < 0 || ioctl(s, SIOCSIFADDR, &ifr) < 0) {
        send_error(id, "set eth0's address %s: %s", ip, strerror(errno));
        goto out;
    }
    struct sockaddr_in *mask = (struct sockaddr_in *)&ifr.ifr_netmask;
    memset(mask, 0, sizeof *mask);
    mask->sin_family = AF_INET;
    mask->sin_addr.s_addr = htonl(prefix ? 0xffffffffu << (32 - prefix) : 0);
    if (ioctl(s, SIOCSIFNETMASK, &ifr) < 0) { send_error(id, "set eth0's netmask: %s", strerror(errno)); goto out; }
    if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0) { send_error(id, "read eth0's flags: %s", strerror(errno)); goto out; }
    ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
    if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0) { send_error(id, "bring eth0 up: %s", strerror(errno)); goto out; }
    if (gw[0]) {
        struct rtentry rt;
        memset(&rt, 0, sizeof rt);
        set_sockaddr(&rt.rt_dst, "0.0.0.0");
        set_sockaddr(&rt.rt_genmask, "0.0.0.0");
        if (set_sockaddr(&rt.rt_gateway, gw) < 0) { send_error(id, "bad gateway %s", gw); goto out; }
        rt.rt_flags = RTF_UP | RTF_GATEWAY;
        if (ioctl(s, SIOCADDRT, &rt) < 0 && errno != EEXIST) {
            send_error(id, "default route via %s: %s", gw, strerror(errno));
            goto out;
        }
    }
    send_frame(T_OK, id, NULL, 0);
out:
    if (s >= 0) close(s);
    free(mac);
    free(addr);
    free(gw);
}

static void do_rngseed(uint32_t id, const uint8_t *p, size_t n) {
    struct rand_pool_info *info = malloc(sizeof *info + n);
    if (!info) abort();
    info->entropy_count = (int)(n * 8);
    info->buf_size = (int)n;
    memcpy(info->buf, p, n);
    int fd = open("/dev/urandom", O_RDWR | O_CLOEXEC);
    if (fd < 0 || ioctl(fd, RNDADDENTROPY, info) < 0) send_error(id, "add entropy: %s", strerror(errno));
    /* Entropy alone reaches the output only at the next scheduled reseed (up to a
     * minute of jiffies away), and every clone of a template starts from the same
     * generator state: reseed now so clones diverge at once. ENODATA = the
     * generator is not initialized yet, when the seed above is what initializes it. */
    else if (ioctl(fd, RNDRESEEDCRNG, 0) < 0 && errno != ENODATA && errno != ENOTTY)
        send_error(id, "reseed: %s", strerror(errno));
    else send_frame(T_OK, id, NULL, 0);
    if (fd >= 0) close(fd);
    free(info);
}

static void handle_frame(uint8_t type, uint32_t id, const uint8_t *p, size_t n) {
    struct proc *pr;
    switch (type) {
    case T_MOUNT: do_mount_req(id, p, n); return;
    case T_EXEC: do_exec(id, p, n); return;
    case T_SETTIME: do_settime(id, p, n); return;
    case T_RNGSEED: do_rngseed(id, p, n); return;
    case T_NETCONF: do_netconf(id, p, n); return;
    case T_SHUTDOWN:
        sync();
        reboot(RB_POWER_OFF);
        send_error(id, "power off: %s", strerror(errno));
        return;
    case T_STDIN:
    case T_STDIN_EOF:
    case T_SIGNAL:
    case T_RESIZE:
        break;
    default:
        send_error(id, "unknown frame type 0x%02x", type);
        return;
    }
    pr = find_proc(id);
    if (!pr) return; /* the process is gone: late input is dropped quietly */
    if (type == T_STDIN) {
        if (pr->in_fd < 0 || pr->stdin_eof) return;
        if (buf_size(&pr->stdin_q) + n > STDIN_CAP) { send_error(id, "stdin buffer full: data dropped"); return; }
        buf_append(&pr->stdin_q, p, n);
    } else if (type == T_STDIN_EOF) {
        pr->stdin_eof = 1;
        if (pr->tty && pr->in_fd >= 0) buf_append(&pr->stdin_q, "\x04", 1); /* VEOF */
        if (!buf_size(&pr->stdin_q)) proc_close_in(pr);
    } else if (type == T_SIGNAL) {
        if (n != 4) { send_error(id, "bad SIGNAL payload"); return; }
        if (!pr->exited && kill(pr->pid, (int)get_u32(p)) < 0) send_error(id, "kill: %s", strerror(errno));
    } else if (type == T_RESIZE) {
        if (n != 4) { send_error(id, "bad RESIZE payload"); return; }
        if (pr->tty && pr->out_fd >= 0) {
            struct winsize ws = {.ws_row = (unsigned short)(p[0] << 8 | p[1]), .ws_col = (unsigned short)(p[2] << 8 | p[3])};
            ioctl(pr->out_fd, TIOCSWINSZ, &ws);
        }
    }
}

static void parse_input(void) {
    while (buf_size(&in) >= HEADER_LEN) {
        const uint8_t *h = in.data + in.off;
        uint32_t len = get_u32(h);
        if (len > MAX_PAYLOAD) {
            logmsg("frame of %u bytes exceeds the cap: dropping input", len);
            send_error(0, "frame of %u bytes exceeds %u: input discarded", len, MAX_PAYLOAD);
            buf_consume(&in, buf_size(&in));
            return;
        }
        if (buf_size(&in) < HEADER_LEN + (size_t)len) return;
        handle_frame(h[4], get_u32(h + 5), h + HEADER_LEN, len);
        buf_consume(&in, HEADER_LEN + len);
    }
}

/* Read one chunk from a child's output fd into a frame; closes the fd at EOF. */
static void pump_output(struct proc *p, int *fd, uint8_t type) {
    uint8_t chunk[READ_CHUNK];
    ssize_t got = read(*fd, chunk, sizeof chunk);
    if (got > 0) {
        send_frame(type, p->id, chunk, (size_t)got);
        return;
    }
    if (got < 0 && (errno == EAGAIN || errno == EINTR)) return;
    /* 0 = EOF; EIO = pty whose slaves are all closed */
    if (p->tty) p->in_fd = -1;
    close_fd(fd);
    maybe_finish(p);
}

static void pump_stdin(struct proc *p) {
    ssize_t put = write(p->in_fd, p->stdin_q.data + p->stdin_q.off, buf_size(&p->stdin_q));
    if (put > 0) buf_consume(&p->stdin_q, (size_t)put);
    else if (put < 0 && errno != EAGAIN && errno != EINTR) {
        buf_free(&p->stdin_q); /* EPIPE: the reader is gone */
        proc_close_in(p);
        return;
    }
    if (!buf_size(&p->stdin_q) && p->stdin_eof) proc_close_in(p);
}

static void loopback_up(void) {
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0) return;
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
    if (ioctl(s, SIOCGIFFLAGS, &ifr) == 0) {
        ifr.ifr_flags |= IFF_UP;
        if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0) logmsg("lo up: %s", strerror(errno));
    }
    close(s);
}

int main(void) {
    if (getpid() == 1) {
        do_mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
        do_mount("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
        do_mount("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755");
        do_mount("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "gid=5,mode=0620,ptmxmode=0666");
        do_mount("tmpfs", "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755");
        setenv("PATH", "/usr/sbin:/usr/bin:/sbin:/bin", 1);
    }
    signal(SIGPIPE, SIG_IGN);
    for (int i = 0; i < MAX_PROCS; i++) procs[i].in_fd = procs[i].out_fd = procs[i].err_fd = -1;
    load_modules();
    if (getpid() == 1) loopback_up(); /* before a template is saved: every clone has it */

    const char *test_fd = getpid() == 1 ? NULL : getenv("BERTH_AGENT_FD"); /* host-side tests */
    if (test_fd) {
        port = atoi(test_fd);
        set_nonblock(port);
    }
    for (int tries = 0; port < 0 && (port = open_port()) < 0; tries++) {
        if (tries == 1000) { errno = ENODEV; die("virtio-serial port " PORT_NAME); }
        usleep(5000); /* the port appears asynchronously after virtio_console probes */
    }

    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    sigprocmask(SIG_BLOCK, &chld, NULL);
    int sfd = signalfd(-1, &chld, SFD_NONBLOCK | SFD_CLOEXEC);
    if (sfd < 0) die("signalfd");

    struct utsname u;
    uname(&u);
    send_str(T_READY, 0, u.release);

    struct pollfd pfd[2 + 3 * MAX_PROCS];
    struct { struct proc *p; int which; } who[2 + 3 * MAX_PROCS];
    for (;;) {
        int n = 0, throttle = buf_size(&out) >= OUT_HIGH_WATER;
        pfd[n] = (struct pollfd){.fd = port, .events = POLLIN | (buf_size(&out) ? POLLOUT : 0)};
        who[n++].p = NULL;
        pfd[n] = (struct pollfd){.fd = sfd, .events = POLLIN};
        who[n++].p = NULL;
        for (int i = 0; i < MAX_PROCS; i++) {
            struct proc *p = &procs[i];
            if (!p->used) continue;
            int want_in = p->tty && p->in_fd >= 0 && buf_size(&p->stdin_q);
            if (p->out_fd >= 0 && (!throttle || want_in)) { /* with a tty: the master, both ways */
                pfd[n] = (struct pollfd){.fd = p->out_fd, .events = (throttle ? 0 : POLLIN) | (want_in ? POLLOUT : 0)};
                who[n].p = p; who[n++].which = 1;
            }
            if (!throttle && p->err_fd >= 0) {
                pfd[n] = (struct pollfd){.fd = p->err_fd, .events = POLLIN};
                who[n].p = p; who[n++].which = 2;
            }
            if (p->in_fd >= 0 && buf_size(&p->stdin_q) && !p->tty) {
                pfd[n] = (struct pollfd){.fd = p->in_fd, .events = POLLOUT};
                who[n].p = p; who[n++].which = 0;
            }
        }
        if (poll(pfd, (nfds_t)n, -1) < 0) {
            if (errno == EINTR) continue;
            die("poll");
        }
        if (pfd[0].revents & POLLIN) {
            uint8_t chunk[MAX_PAYLOAD + HEADER_LEN];
            ssize_t got = read(port, chunk, sizeof chunk);
            if (got > 0) {
                buf_append(&in, chunk, (size_t)got);
                parse_input();
            } else if (got == 0) {
                if (getpid() != 1) return 0; /* tests: the host end closed */
                usleep(20000);               /* the host end is not connected: wait for it */
            }
        } else if (pfd[0].revents & (POLLHUP | POLLERR)) {
            usleep(20000); /* the host end is not connected: wait for it */
        }
        if (pfd[1].revents & POLLIN) {
            struct signalfd_siginfo si;
            while (read(sfd, &si, sizeof si) > 0) {}
            reap();
        }
        for (int i = 2; i < n; i++) {
            struct proc *p = who[i].p;
            if (!pfd[i].revents || !p->used) continue;
            if (who[i].which == 0 && p->in_fd == pfd[i].fd) pump_stdin(p);
            else if (who[i].which == 1 && p->out_fd == pfd[i].fd) {
                if ((pfd[i].revents & POLLOUT) && p->in_fd >= 0) pump_stdin(p);
                if (pfd[i].revents & (POLLIN | POLLHUP | POLLERR)) pump_output(p, &p->out_fd, T_STDOUT);
            }
            else if (who[i].which == 2 && p->err_fd == pfd[i].fd) pump_output(p, &p->err_fd, T_STDERR);
        }
        if (buf_size(&out)) {
            ssize_t put = write(port, out.data + out.off, buf_size(&out));
            if (put > 0) buf_consume(&out, (size_t)put);
            else if (put < 0 && errno != EAGAIN && errno != EINTR) logmsg("write to host: %s", strerror(errno));
        }
    }
}
