/*
 * loadgen: an open-loop (paced) HTTP/1.1 load generator for tallybook's benchmarks.
 *
 * One thread, epoll, non-blocking keep-alive connections to one host:port, one request in
 * flight per connection (no pipelining).
 *
 *   --rate R > 0 (open loop): request k is due at t0 + k/R. A due request goes out on an idle
 *       connection; when none is idle it waits in a FIFO and goes out on the next connection
 *       that becomes idle. Latency counts from the time the request was DUE, so a server that
 *       falls behind shows it (no coordinated omission). Sends more than 1 ms after their due
 *       time are counted as late_sends.
 *   --rate 0 (saturated, closed loop): every connection sends its next request as soon as
 *       its response is read; latency counts from the actual send.
 *
 * The first --warmup seconds are not recorded; then --seconds are measured. A response
 * counts when it is fully read inside the measured window; requests queued or in flight at
 * the end are reported apart (queued_at_end, in_flight_at_end) and not counted.
 *
 * errors = non-2xx answers + requests whose connection broke before the answer was complete.
 * socket_errors = failed connects + connections closed or reset by the server (a response
 * saying "Connection: close" is not one: the connection is simply replaced).
 * Every count is of things that happened inside the measured window.
 *
 * Output: one line of JSON on stdout. Build: cc -O2 -Wall -Wextra -o loadgen loadgen.c
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#define NS_PER_SEC 1000000000ULL
#define LATE_NS 1000000ULL          /* a send more than 1 ms after its due time is late */
#define RETRY_NS 100000000ULL       /* wait 100 ms before retrying a failed connect */
#define MAX_HEAD (1024 * 1024)      /* refuse response headers / chunk lines larger than this */
#define READ_CHUNK 16384

/* ---------------------------------------------------------------------------------------- */
/* Small helpers                                                                            */

static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("loadgen: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(2);
}

static void *xrealloc(void *p, size_t n) {
    void *q = realloc(p, n);
    if (q == NULL && n != 0) die("out of memory");
    return q;
}

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * NS_PER_SEC + (uint64_t)ts.tv_nsec;
}

/* splitmix64: only used to pick each connection's starting body offset. */
static uint64_t rng_next(uint64_t *state) {
    uint64_t z = (*state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* Case-insensitive: does the header value [v, v+n) contain the word w? */
static int value_has(const char *v, size_t n, const char *w) {
    size_t wn = strlen(w);
    for (size_t i = 0; i + wn <= n; i++)
        if (strncasecmp(v + i, w, wn) == 0) return 1;
    return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* Requests: built once, one per body line                                                  */

struct request {
    size_t off, len;  /* into requests_buf */
};

static char *requests_buf;
static struct request *requests;
static size_t n_requests;

static void append(char **buf, size_t *len, size_t *cap, const char *s, size_t n) {
    if (*len + n > *cap) {
        while (*len + n > *cap) *cap = *cap ? *cap * 2 : 4096;
        *buf = xrealloc(*buf, *cap);
    }
    memcpy(*buf + *len, s, n);
    *len += n;
}

static void build_requests(const char *method, const char *path, const char *host, int port,
                           char **headers, int n_headers, const char *bodies_file) {
    char *head = NULL;
    size_t head_len = 0, head_cap = 0;
    char line[1024];
    int has_host = 0;
    for (int i = 0; i < n_headers; i++)
        if (strncasecmp(headers[i], "host:", 5) == 0) has_host = 1;
    int n = snprintf(line, sizeof line, "%s %s HTTP/1.1\r\n", method, path);
    if (n < 0 || (size_t)n >= sizeof line) die("--method/--path too long");
    append(&head, &head_len, &head_cap, line, (size_t)n);
    if (!has_host) {
        int v6 = strchr(host, ':') != NULL; /* an IPv6 literal goes in brackets */
        n = snprintf(line, sizeof line, "Host: %s%s%s:%d\r\n", v6 ? "[" : "", host, v6 ? "]" : "",
                     port);
        if (n < 0 || (size_t)n >= sizeof line) die("--host too long");
        append(&head, &head_len, &head_cap, line, (size_t)n);
    }
    for (int i = 0; i < n_headers; i++) {
        append(&head, &head_len, &head_cap, headers[i], strlen(headers[i]));
        append(&head, &head_len, &head_cap, "\r\n", 2);
    }

    size_t cap = 0, len = 0, req_cap = 0;
    if (bodies_file == NULL) {
        int bodyless = strcasecmp(method, "GET") == 0 || strcasecmp(method, "HEAD") == 0;
        append(&requests_buf, &len, &cap, head, head_len);
        if (!bodyless) append(&requests_buf, &len, &cap, "Content-Length: 0\r\n", 19);
        append(&requests_buf, &len, &cap, "\r\n", 2);
        requests = xrealloc(NULL, sizeof *requests);
        requests[0].off = 0;
        requests[0].len = len;
        n_requests = 1;
        free(head);
        return;
    }

    FILE *f = fopen(bodies_file, "rb");
    if (f == NULL) die("cannot open %s: %s", bodies_file, strerror(errno));
    char *body = NULL;
    size_t body_cap = 0;
    ssize_t got;
    while ((got = getline(&body, &body_cap, f)) >= 0) {
        size_t bl = (size_t)got;
        while (bl > 0 && (body[bl - 1] == '\n' || body[bl - 1] == '\r')) bl--;
        if (bl == 0) continue; /* empty lines are ignored */
        if (n_requests == req_cap) {
            req_cap = req_cap ? req_cap * 2 : 1024;
            requests = xrealloc(requests, req_cap * sizeof *requests);
        }
        size_t start = len;
        append(&requests_buf, &len, &cap, head, head_len);
        n = snprintf(line, sizeof line, "Content-Length: %zu\r\n\r\n", bl);
        append(&requests_buf, &len, &cap, line, (size_t)n);
        append(&requests_buf, &len, &cap, body, bl);
        requests[n_requests].off = start;
        requests[n_requests].len = len - start;
        n_requests++;
    }
    free(body);
    fclose(f);
    free(head);
    if (n_requests == 0) die("%s holds no request body", bodies_file);
}

/* ---------------------------------------------------------------------------------------- */
/* Connections                                                                              */

enum conn_state { C_DOWN, C_CONNECTING, C_IDLE, C_BUSY };

enum parse_state {
    P_HEAD,        /* waiting for the status line and headers */
    P_LENGTH,      /* skipping `remaining` body bytes */
    P_CHUNK_SIZE,  /* waiting for a chunk-size line */
    P_CHUNK_DATA,  /* skipping `remaining` chunk bytes (data + CRLF) */
    P_TRAILER,     /* skipping trailer lines until an empty one */
    P_UNTIL_CLOSE, /* no length, not chunked: the body ends when the server closes */
};

struct conn {
    int fd;
    enum conn_state state;
    int in_idle_ring;
    int writing;        /* the request is not fully written yet (EPOLLOUT wanted) */
    uint32_t events;    /* events registered in epoll */
    const char *out;
    size_t out_len, out_off;
    char *buf;
    size_t cap, rpos, wpos, scan;
    enum parse_state ps;
    uint64_t remaining;
    int status;
    int close_after;    /* the response said Connection: close */
    uint64_t due_ns;    /* latency reference of the request in flight */
    size_t next_body;
    uint64_t retry_at;
};

static struct conn *conns;
static int n_conns;
static int epfd;
static struct addrinfo *target;

static int *idle_ring;   /* FIFO of idle connections, so connections are used in turn */
static int idle_head, idle_count;

/* Measurement */
static uint64_t t0, t_start, t_end;
static uint64_t answered, errors, socket_errors, late_sends, by_class[6];
static uint64_t *lat;
static size_t n_lat, cap_lat;
static int saturated;
static const char *method_name;

static int in_window(uint64_t t) { return t >= t_start && t < t_end; }

static void idle_push(int i) {
    if (conns[i].in_idle_ring) return;
    conns[i].in_idle_ring = 1;
    idle_ring[(idle_head + idle_count) % n_conns] = i;
    idle_count++;
}

static int idle_pop(void) {
    while (idle_count > 0) {
        int i = idle_ring[idle_head];
        idle_head = (idle_head + 1) % n_conns;
        idle_count--;
        conns[i].in_idle_ring = 0;
        if (conns[i].state == C_IDLE) return i;
    }
    return -1;
}

static void set_events(struct conn *c, int i, uint32_t ev) {
    if (c->events == ev) return;
    struct epoll_event e = {.events = ev, .data.u32 = (uint32_t)i};
    if (epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &e) < 0) die("epoll_ctl: %s", strerror(errno));
    c->events = ev;
}

static void conn_became_idle(int i, uint64_t now);

static void conn_connect(int i, uint64_t now) {
    struct conn *c = &conns[i];
    c->rpos = c->wpos = c->scan = 0;
    c->ps = P_HEAD;
    c->writing = 0;
    int fd = socket(target->ai_family, target->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                    target->ai_protocol);
    if (fd < 0) die("socket: %s", strerror(errno));
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->fd = fd;
    int r = connect(fd, target->ai_addr, target->ai_addrlen);
    if (r < 0 && errno != EINPROGRESS) {
        if (in_window(now)) socket_errors++;
        close(fd);
        c->fd = -1;
        c->state = C_DOWN;
        c->retry_at = now + RETRY_NS;
        return;
    }
    c->events = r == 0 ? EPOLLIN : EPOLLIN | EPOLLOUT;
    struct epoll_event e = {.events = c->events, .data.u32 = (uint32_t)i};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &e) < 0) die("epoll_ctl: %s", strerror(errno));
    if (r == 0) {
        conn_became_idle(i, now);
    } else {
        c->state = C_CONNECTING;
    }
}

/* The connection is gone: a broken request counts as an error; reconnect. */
static void conn_drop(int i, uint64_t now, int broken) {
    struct conn *c = &conns[i];
    if (broken && in_window(now)) {
        socket_errors++;
        if (c->state == C_BUSY) errors++;
    }
    if (c->fd >= 0) close(c->fd); /* close() also removes it from epoll */
    c->fd = -1;
    c->state = C_DOWN;
    conn_connect(i, now);
}

static void record(struct conn *c, uint64_t now) {
    if (!in_window(now)) return;
    answered++;
    int cls = c->status / 100;
    by_class[cls >= 1 && cls <= 5 ? cls : 0]++;
    if (cls != 2) errors++;
    if (n_lat == cap_lat) {
        cap_lat = cap_lat ? cap_lat * 2 : 65536;
        lat = xrealloc(lat, cap_lat * sizeof *lat);
    }
    n_lat++;
    lat[n_lat - 1] = now > c->due_ns ? now - c->due_ns : 0;
}

/* Write what remains of the request; 0 when done or waiting for EPOLLOUT, -1 when broken. */
static int conn_write(int i) {
    struct conn *c = &conns[i];
    while (c->out_off < c->out_len) {
        ssize_t w = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                c->writing = 1;
                set_events(c, i, EPOLLIN | EPOLLOUT);
                return 0;
            }
            return -1;
        }
        c->out_off += (size_t)w;
    }
    c->writing = 0;
    set_events(c, i, EPOLLIN);
    return 0;
}

static void conn_send(int i, uint64_t due, uint64_t now) {
    struct conn *c = &conns[i];
    const struct request *rq = &requests[c->next_body];
    c->next_body = (c->next_body + 1) % n_requests;
    c->out = requests_buf + rq->off;
    c->out_len = rq->len;
    c->out_off = 0;
    c->due_ns = due;
    c->state = C_BUSY;
    c->ps = P_HEAD;
    c->close_after = 0;
    if (!saturated && now > due + LATE_NS && in_window(now)) late_sends++;
    if (conn_write(i) < 0) conn_drop(i, now, 1);
}

static void conn_became_idle(int i, uint64_t now) {
    conns[i].state = C_IDLE;
    if (saturated) {
        if (now < t_end) conn_send(i, now, now);
    } else {
        idle_push(i);
    }
}

/* Parse status line and headers in [p, p+n) (which ends with CRLFCRLF). */
static int parse_head(struct conn *c, const char *p, size_t n) {
    if (n < 12 || strncmp(p, "HTTP/1.", 7) != 0 || p[8] != ' ') return -1;
    if (p[9] < '0' || p[9] > '9' || p[10] < '0' || p[10] > '9' || p[11] < '0' || p[11] > '9')
        return -1;
    c->status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
    int chunked = 0, has_length = 0;
    uint64_t length = 0;
    c->close_after = p[7] == '0'; /* HTTP/1.0 closes unless told otherwise */
    const char *end = p + n;
    const char *line = memchr(p, '\n', n);
    if (line == NULL) return -1;
    line++;
    while (line < end) {
        const char *eol = memchr(line, '\n', (size_t)(end - line));
        if (eol == NULL) break;
        const char *le = eol;
        if (le > line && le[-1] == '\r') le--;
        if (le == line) break; /* the empty line */
        const char *colon = memchr(line, ':', (size_t)(le - line));
        if (colon != NULL) {
            size_t name_len = (size_t)(colon - line);
            const char *v = colon + 1;
            while (v < le && (*v == ' ' || *v == '\t')) v++;
            size_t vn = (size_t)(le - v);
            if (name_len == 14 && strncasecmp(line, "content-length", 14) == 0) {
                char *stop;
                char num[32];
                if (vn == 0 || vn >= sizeof num) return -1;
                memcpy(num, v, vn);
                num[vn] = 0;
                length = strtoull(num, &stop, 10);
                while (*stop == ' ' || *stop == '\t') stop++;
                if (*stop != 0) return -1;
                has_length = 1;
            } else if (name_len == 17 && strncasecmp(line, "transfer-encoding", 17) == 0) {
                if (value_has(v, vn, "chunked")) chunked = 1;
            } else if (name_len == 10 && strncasecmp(line, "connection", 10) == 0) {
                if (value_has(v, vn, "close")) c->close_after = 1;
                else if (value_has(v, vn, "keep-alive")) c->close_after = 0;
            }
        }
        line = eol + 1;
    }
    int no_body = (c->status >= 100 && c->status < 200) || c->status == 204 ||
                  c->status == 304 || strcasecmp(method_name, "HEAD") == 0;
    if (no_body) {
        c->ps = P_LENGTH;
        c->remaining = 0;
    } else if (chunked) {
        c->ps = P_CHUNK_SIZE;
    } else if (has_length) {
        c->ps = P_LENGTH;
        c->remaining = length;
    } else {
        c->ps = P_UNTIL_CLOSE;
    }
    return 0;
}

/* Finds a line end from c->scan on; returns its offset after "\n" or 0 when incomplete. */
static size_t find_line(struct conn *c) {
    const char *s = memchr(c->buf + c->scan, '\n', c->wpos - c->scan);
    if (s == NULL) {
        c->scan = c->wpos;
        return 0;
    }
    return (size_t)(s - c->buf) + 1;
}

/*
 * Consume what the buffer holds. Returns 1 when a response is complete, 0 when more bytes
 * are needed, -1 on a malformed response.
 */
static int parse(struct conn *c) {
    for (;;) {
        size_t avail = c->wpos - c->rpos;
        switch (c->ps) {
        case P_HEAD: {
            size_t from = c->scan > c->rpos + 3 ? c->scan - 3 : c->rpos;
            const char *e = memmem(c->buf + from, c->wpos - from, "\r\n\r\n", 4);
            if (e == NULL) {
                c->scan = c->wpos;
                if (avail > MAX_HEAD) return -1;
                return 0;
            }
            size_t hl = (size_t)(e - (c->buf + c->rpos)) + 4;
            if (parse_head(c, c->buf + c->rpos, hl) < 0) return -1;
            c->rpos += hl;
            c->scan = c->rpos;
            if (c->status >= 100 && c->status < 200 && c->status != 101) {
                c->ps = P_HEAD; /* interim response: the real one follows */
                continue;
            }
            continue;
        }
        case P_LENGTH:
            if (avail >= c->remaining) {
                c->rpos += c->remaining;
                c->remaining = 0;
                c->scan = c->rpos;
                return 1;
            }
            c->remaining -= avail;
            c->rpos = c->wpos = c->scan = 0;
            return 0;
        case P_CHUNK_SIZE:
        case P_TRAILER: {
            size_t eol = find_line(c);
            if (eol == 0) return (c->wpos - c->rpos > MAX_HEAD) ? -1 : 0;
            const char *line = c->buf + c->rpos;
            size_t ll = eol - c->rpos;
            c->rpos = c->scan = eol;
            if (c->ps == P_TRAILER) {
                if (ll <= 2 && (line[0] == '\n' || line[0] == '\r')) return 1;
                continue;
            }
            uint64_t size = 0;
            size_t k = 0;
            for (; k < ll; k++) {
                char ch = line[k];
                int d;
                if (ch >= '0' && ch <= '9') d = ch - '0';
                else if (ch >= 'a' && ch <= 'f') d = ch - 'a' + 10;
                else if (ch >= 'A' && ch <= 'F') d = ch - 'A' + 10;
                else break;
                if (size >> 60) return -1;
                size = size * 16 + (uint64_t)d;
            }
            if (k == 0) return -1;
            if (size == 0) {
                c->ps = P_TRAILER;
            } else {
                c->ps = P_CHUNK_DATA;
                c->remaining = size + 2; /* data and its CRLF */
            }
            continue;
        }
        case P_CHUNK_DATA:
            if (avail >= c->remaining) {
                c->rpos += c->remaining;
                c->scan = c->rpos;
                c->ps = P_CHUNK_SIZE;
                continue;
            }
            c->remaining -= avail;
            c->rpos = c->wpos = c->scan = 0;
            return 0;
        case P_UNTIL_CLOSE:
            c->rpos = c->wpos = c->scan = 0;
            return 0;
        }
    }
}

static void response_done(int i, uint64_t now) {
    struct conn *c = &conns[i];
    record(c, now);
    if (c->writing) {
        /* answered before the request was fully written: the connection is unusable */
        close(c->fd);
        c->fd = -1;
        c->state = C_DOWN;
        conn_connect(i, now);
        return;
    }
    c->ps = P_HEAD;
    if (c->close_after) {
        close(c->fd);
        c->fd = -1;
        c->state = C_DOWN;
        conn_connect(i, now);
        return;
    }
    conn_became_idle(i, now);
}

static void on_readable(int i) {
    struct conn *c = &conns[i];
    for (;;) {
        if (c->rpos == c->wpos) c->rpos = c->wpos = c->scan = 0;
        if (c->cap - c->wpos < READ_CHUNK / 2) {
            if (c->rpos > 0) {
                memmove(c->buf, c->buf + c->rpos, c->wpos - c->rpos);
                c->wpos -= c->rpos;
                c->scan -= c->rpos;
                c->rpos = 0;
            }
            if (c->cap - c->wpos < READ_CHUNK / 2) {
                c->cap = c->cap ? c->cap * 2 : READ_CHUNK;
                c->buf = xrealloc(c->buf, c->cap);
            }
        }
        ssize_t r = recv(c->fd, c->buf + c->wpos, c->cap - c->wpos, 0);
        uint64_t now = now_ns();
        if (r < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) return;
            conn_drop(i, now, 1);
            return;
        }
        if (r == 0) {
            if (c->state == C_BUSY && c->ps == P_UNTIL_CLOSE && !c->writing) {
                record(c, now); /* the body ended with the connection */
                conn_drop(i, now, 0);
            } else {
                conn_drop(i, now, 1);
            }
            return;
        }
        int filled = (size_t)r == c->cap - c->wpos;
        c->wpos += (size_t)r;
        if (c->state != C_BUSY) {
            c->rpos = c->wpos = c->scan = 0; /* nothing asked: ignore */
        } else {
            int p = parse(c);
            if (p < 0) {
                conn_drop(i, now, 1);
                return;
            }
            if (p == 1) {
                response_done(i, now);
                return;
            }
        }
        if (!filled) return;
    }
}

static void on_event(int i, uint32_t ev) {
    struct conn *c = &conns[i];
    if (c->fd < 0) return;
    if (c->state == C_CONNECTING) {
        uint64_t now = now_ns();
        int err = 0;
        socklen_t len = sizeof err;
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) err = errno;
        if (err != 0 || (ev & (EPOLLERR | EPOLLHUP))) {
            if (in_window(now)) socket_errors++;
            close(c->fd);
            c->fd = -1;
            c->state = C_DOWN;
            c->retry_at = now + RETRY_NS;
            return;
        }
        if (ev & EPOLLOUT) {
            set_events(c, i, EPOLLIN);
            conn_became_idle(i, now);
        }
        return;
    }
    if ((ev & EPOLLOUT) && c->writing) {
        if (conn_write(i) < 0) {
            conn_drop(i, now_ns(), 1);
            return;
        }
    }
    if (ev & (EPOLLIN | EPOLLERR | EPOLLHUP)) on_readable(i);
}

/* ---------------------------------------------------------------------------------------- */
/* Main                                                                                     */

/*
 * Wait for events until the absolute time `deadline` (CLOCK_MONOTONIC). epoll_pwait2 sleeps
 * to the nanosecond; on kernels without it (< 5.11), a timerfd armed at the deadline wakes
 * epoll_wait instead (its events come with data.u32 == UINT32_MAX).
 */
static int timer_fd = -1;
static uint64_t timer_armed;

static int wait_events(struct epoll_event *events, int max, uint64_t deadline) {
    uint64_t now = now_ns();
    uint64_t left = deadline > now ? deadline - now : 0;
#ifdef SYS_epoll_pwait2
    if (timer_fd < 0) {
        struct timespec ts = {.tv_sec = (time_t)(left / NS_PER_SEC),
                              .tv_nsec = (long)(left % NS_PER_SEC)};
        long n = syscall(SYS_epoll_pwait2, epfd, events, max, &ts, NULL, (size_t)0);
        if (n >= 0 || errno != ENOSYS) return (int)n;
    }
#endif
    if (timer_fd < 0) {
        timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
        if (timer_fd < 0) die("timerfd_create: %s", strerror(errno));
        struct epoll_event te = {.events = EPOLLIN, .data.u32 = UINT32_MAX};
        if (epoll_ctl(epfd, EPOLL_CTL_ADD, timer_fd, &te) < 0)
            die("epoll_ctl: %s", strerror(errno));
    }
    if (left == 0) return epoll_wait(epfd, events, max, 0);
    if (deadline != timer_armed) {
        struct itimerspec its = {
            .it_value = {.tv_sec = (time_t)(deadline / NS_PER_SEC),
                         .tv_nsec = (long)(deadline % NS_PER_SEC)},
        };
        if (timerfd_settime(timer_fd, TFD_TIMER_ABSTIME, &its, NULL) < 0)
            die("timerfd_settime: %s", strerror(errno));
        timer_armed = deadline;
    }
    return epoll_wait(epfd, events, max, -1);
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static void print_pct(const char *name, double q) {
    if (n_lat == 0) {
        printf(", \"%s\": null", name);
        return;
    }
    /* nearest rank: the smallest value with at least q of the samples at or below it */
    size_t rank = (size_t)(q * (double)n_lat + 0.999999999);
    if (rank < 1) rank = 1;
    if (rank > n_lat) rank = n_lat;
    printf(", \"%s\": %.1f", name, (double)lat[rank - 1] / 1000.0);
}

static void usage(void) {
    fputs("usage: loadgen --port PORT [--host 127.0.0.1] [--path /] [--method POST]\n"
          "               [--header 'Name: value']... [--bodies FILE] [--connections 16]\n"
          "               [--rate R (0 = saturated)] [--seconds 10] [--warmup 1] [--seed 1]\n"
          "Open loop when --rate > 0: latency counts from when each request was due.\n"
          "--seed picks where each connection starts in the bodies. Prints one JSON line.\n",
          stderr);
}

int main(int argc, char **argv) {
    const char *host = "127.0.0.1", *path = "/", *bodies = NULL;
    const char *method = "POST";
    int port = 0;
    double rate = 0, seconds = 10, warmup = 1;
    uint64_t seed = 1;
    char **headers = NULL;
    int n_headers = 0;
    n_conns = 16;

    static const struct option opts[] = {
        {"host", required_argument, NULL, 'H'},
        {"port", required_argument, NULL, 'p'},
        {"path", required_argument, NULL, 'P'},
        {"method", required_argument, NULL, 'm'},
        {"header", required_argument, NULL, 'h'},
        {"bodies", required_argument, NULL, 'b'},
        {"connections", required_argument, NULL, 'c'},
        {"rate", required_argument, NULL, 'r'},
        {"seconds", required_argument, NULL, 's'},
        {"warmup", required_argument, NULL, 'w'},
        {"seed", required_argument, NULL, 'S'},
        {"help", no_argument, NULL, 'x'},
        {NULL, 0, NULL, 0},
    };
    int opt;
    char *stop;
    while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (opt) {
        case 'H': host = optarg; break;
        case 'p':
            port = (int)strtol(optarg, &stop, 10);
            if (*stop || port <= 0 || port > 65535) die("bad --port %s", optarg);
            break;
        case 'P': path = optarg; break;
        case 'm': method = optarg; break;
        case 'h':
            if (strchr(optarg, ':') == NULL) die("--header wants 'Name: value', got %s", optarg);
            headers = xrealloc(headers, (size_t)(n_headers + 1) * sizeof *headers);
            headers[n_headers++] = optarg;
            break;
        case 'b': bodies = optarg; break;
        case 'c':
            n_conns = (int)strtol(optarg, &stop, 10);
            if (*stop || n_conns < 1 || n_conns > 100000) die("bad --connections %s", optarg);
            break;
        case 'r':
            rate = strtod(optarg, &stop);
            if (*stop || !(rate >= 0)) die("bad --rate %s", optarg);
            break;
        case 's':
            seconds = strtod(optarg, &stop);
            if (*stop || !(seconds > 0)) die("bad --seconds %s", optarg);
            break;
        case 'w':
            warmup = strtod(optarg, &stop);
            if (*stop || !(warmup >= 0)) die("bad --warmup %s", optarg);
            break;
        case 'S': seed = strtoull(optarg, &stop, 10); break;
        case 'x': usage(); exit(0);
        default: usage(); exit(2);
        }
    }
    if (optind < argc || port == 0) {
        usage();
        exit(2);
    }
    saturated = rate == 0;
    method_name = method;
    signal(SIGPIPE, SIG_IGN);

    build_requests(method, path, host, port, headers, n_headers, bodies);

    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    char port_s[16];
    snprintf(port_s, sizeof port_s, "%d", port);
    int gai = getaddrinfo(host, port_s, &hints, &target);
    if (gai != 0) die("cannot resolve %s: %s", host, gai_strerror(gai));

    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0) die("epoll_create1: %s", strerror(errno));
    prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL); /* wake on time, not up to 50 us late */

    conns = calloc((size_t)n_conns, sizeof *conns);
    idle_ring = calloc((size_t)n_conns, sizeof *idle_ring);
    if (conns == NULL || idle_ring == NULL) die("out of memory");
    uint64_t rng = seed;
    uint64_t base = rng_next(&rng) % n_requests;
    for (int i = 0; i < n_conns; i++) {
        conns[i].fd = -1;
        /* spread the starting offsets over the bodies, from a seeded base */
        conns[i].next_body = (size_t)((base + (uint64_t)i * n_requests / (uint64_t)n_conns) %
                                      n_requests);
    }

    t0 = now_ns();
    t_start = t0 + (uint64_t)(warmup * 1e9);
    t_end = t_start + (uint64_t)(seconds * 1e9);
    double ns_per_request = saturated ? 0 : 1e9 / rate;

    for (int i = 0; i < n_conns; i++) conn_connect(i, t0);

    uint64_t next_due_k = 0;   /* first request not yet due */
    uint64_t next_send_k = 0;  /* first due request not yet sent (FIFO head) */
    struct epoll_event events[256];

    for (;;) {
        uint64_t now = now_ns();
        if (now >= t_end) break;

        /* reconnect connections whose retry time has come; note the next retry */
        uint64_t wake = t_end;
        for (int i = 0; i < n_conns; i++) {
            if (conns[i].state != C_DOWN) continue;
            if (conns[i].retry_at <= now) conn_connect(i, now);
            if (conns[i].state == C_DOWN && conns[i].retry_at < wake) wake = conns[i].retry_at;
        }

        if (!saturated) {
            while (t0 + (uint64_t)((double)next_due_k * ns_per_request) <= now) next_due_k++;
            while (next_send_k < next_due_k) {
                int i = idle_pop();
                if (i < 0) break;
                uint64_t due = t0 + (uint64_t)((double)next_send_k * ns_per_request);
                next_send_k++;
                conn_send(i, due, now_ns());
            }
            if (next_send_k == next_due_k) {
                /* nothing waiting: sleep until the next request is due */
                uint64_t due = t0 + (uint64_t)((double)next_due_k * ns_per_request);
                if (due < wake) wake = due;
            }
        }

        int n = wait_events(events, (int)(sizeof events / sizeof events[0]), wake);
        if (n < 0) {
            if (errno == EINTR) continue;
            die("epoll_wait: %s", strerror(errno));
        }
        for (int e = 0; e < n; e++) {
            if (events[e].data.u32 == UINT32_MAX) {
                uint64_t expirations;
                if (read(timer_fd, &expirations, sizeof expirations) < 0 && errno != EAGAIN)
                    die("timerfd read: %s", strerror(errno));
                timer_armed = 0;
                continue;
            }
            on_event((int)events[e].data.u32, events[e].events);
        }
    }

    uint64_t in_flight = 0;
    for (int i = 0; i < n_conns; i++)
        if (conns[i].state == C_BUSY) in_flight++;
    uint64_t queued = 0;
    if (!saturated) {
        while (t0 + (uint64_t)((double)next_due_k * ns_per_request) < t_end) next_due_k++;
        queued = next_due_k - next_send_k;
    }

    if (n_lat > 0) qsort(lat, n_lat, sizeof *lat, cmp_u64);
    printf("{\"requests\": %llu, \"errors\": %llu, \"status\": {\"1xx\": %llu, \"2xx\": %llu, "
           "\"3xx\": %llu, \"4xx\": %llu, \"5xx\": %llu, \"other\": %llu}, "
           "\"socket_errors\": %llu, \"seconds\": %.9g, \"rate\": %.1f, \"target_rate\": %.9g, "
           "\"late_sends\": %llu, \"connections\": %d, \"queued_at_end\": %llu, "
           "\"in_flight_at_end\": %llu",
           (unsigned long long)answered, (unsigned long long)errors,
           (unsigned long long)by_class[1], (unsigned long long)by_class[2],
           (unsigned long long)by_class[3], (unsigned long long)by_class[4],
           (unsigned long long)by_class[5], (unsigned long long)by_class[0],
           (unsigned long long)socket_errors, seconds, (double)answered / seconds, rate,
           (unsigned long long)late_sends, n_conns, (unsigned long long)queued,
           (unsigned long long)in_flight);
    print_pct("p50_us", 0.50);
    print_pct("p90_us", 0.90);
    print_pct("p99_us", 0.99);
    print_pct("p999_us", 0.999);
    if (n_lat == 0) printf(", \"max_us\": null}\n");
    else printf(", \"max_us\": %.1f}\n", (double)lat[n_lat - 1] / 1000.0);
    fflush(stdout);

    for (int i = 0; i < n_conns; i++) {
        if (conns[i].fd >= 0) close(conns[i].fd);
        free(conns[i].buf);
    }
    free(conns);
    free(idle_ring);
    free(lat);
    free(requests);
    free(requests_buf);
    free(headers);
    freeaddrinfo(target);
    if (timer_fd >= 0) close(timer_fd);
    close(epfd);
    return 0;
}
