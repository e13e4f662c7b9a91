/* epmd.c — the epmd protocol (erl_dist_protocol.xml, "EPMD Protocol").
 * Each request is a small state object owning one uv_tcp_t and one deadline
 * timer; nothing blocks and nothing waits for a frozen epmd forever. The
 * registration connection stays open: when it closes (epmd restarted), the
 * node registers again, with backoff. */
#include "epmd.h"
#include "xalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "log.h"

#define ALIVE2_REQ 120
#define ALIVE2_RESP 121
#define ALIVE2_X_RESP 118
#define PORT_PLEASE2_REQ 122
#define PORT2_RESP 119

int dsup_epmd_port(void)
{
    const char *e = getenv("ERL_EPMD_PORT");
    int p = e ? atoi(e) : 0;
    return p > 0 && p < 65536 ? p : 4369;
}

/* ---- a request: connect, write, read the answer ------------------------ */

typedef struct epmd_req {
    uv_tcp_t tcp;
    uv_timer_t timer;       /* deadline for the answer */
    int open_handles;       /* freed when both handles are closed */
    uv_connect_t creq;
    uv_write_t wreq;
    char out[300];
    size_t outlen;
    dsup_buf in;
    struct dsup_epmd_reg *reg; /* a registration: keep the connection; the answer is one record */
    int done;
    /* registration */
    dsup_epmd_reg_cb reg_cb;
    /* port please */
    dsup_epmd_port_cb port_cb;
    void *arg;
} epmd_req;

/* One node's registration. */
struct dsup_epmd_reg {
    epmd_req *reg_req;          /* the open registration, if any */
    uv_loop_t *reg_loop;
    char reg_alive[256];
    int reg_port, reg_hidden, reg_tries;
    int reg_ever;               /* registered once: later losses re-register */
    int reg_stopped;            /* unregistered at shutdown: no more retries */
    unsigned reg_backoff_ms;
    dsup_epmd_reg_cb reg_cb_saved;
    void *reg_cb_arg;
    uv_timer_t reg_retry;
    int reg_retry_init;
};

/* Our entry is there: epmd answered our registration with success and its
 * connection is still open (metrics, /healthz). */
int dsup_epmd_registered(const dsup_epmd_reg *R)
{
    if (!R)
        return 0;
    return R->reg_req && R->reg_req->done && R->reg_req->in.len >= 2 && R->reg_req->in.data[1] == 0;
}

#define REG_ANSWER_MS 5000      /* a registration not answered by then is retried */
#define REG_BACKOFF_MAX_MS 5000

static void req_free(uv_handle_t *h)
{
    epmd_req *r = h->data;
    if (--r->open_handles > 0)
        return;
    dsup_buf_free(&r->in);
    free(r);
}

static void req_close(epmd_req *r)
{
    if (!uv_is_closing((uv_handle_t *)&r->tcp))
        uv_close((uv_handle_t *)&r->tcp, req_free);
    if (!uv_is_closing((uv_handle_t *)&r->timer))
        uv_close((uv_handle_t *)&r->timer, req_free);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
    epmd_req *r = h->data;
    if (dsup_buf_reserve(&r->in, 512)) {
        b->base = NULL;
        b->len = 0;
        return;
    }
    b->base = r->in.data + r->in.len;
    b->len = r->in.cap - r->in.len;
}

static void finish_port(epmd_req *r, int status, int port, int version)
{
    if (r->done)
        return;
    r->done = 1;
    r->port_cb(r->arg, status, port, version);
    req_close(r);
}

static void reg_failed(dsup_epmd_reg *R, int status);
static void reg_lost(dsup_epmd_reg *R);

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    epmd_req *r = s->data;
    if (n > 0)
        r->in.len += (size_t)n;
    const uint8_t *d = (const uint8_t *)r->in.data;
    dsup_epmd_reg *R = r->reg;
    if (R) {
        if (!r->done && r->in.len >= 2 && (d[0] == ALIVE2_X_RESP || d[0] == ALIVE2_RESP)) {
            size_t need = d[0] == ALIVE2_X_RESP ? 6 : 4;
            if (r->in.len >= need) {
                r->done = 1;
                uv_timer_stop(&r->timer);
                if (d[1] != 0 && R->reg_ever) {
                    LOG_WARN("epmd refused to register '%s' again (result %d); retrying",
                             R->reg_alive, d[1]);
                    R->reg_req = NULL;
                    req_close(r);
                    reg_failed(R, -1);
                    return;
                }
                if (d[1] != 0) {
                    LOG_ERROR("epmd refused the registration of '%s' (result %d): is a node "
                              "with this name already running?", R->reg_alive, d[1]);
                    R->reg_cb_saved(R->reg_cb_arg, -1, 0);
                    return;
                }
                if (R->reg_ever) {
                    /* Our creation stays: peers know it from the handshake,
                     * and our pids carry it. */
                    LOG_INFO("registered with epmd again as '%s' (port %d)", R->reg_alive, R->reg_port);
                    R->reg_backoff_ms = 0;
                    return;
                }
                R->reg_ever = 1;
                uint32_t creation = d[0] == ALIVE2_X_RESP ? dsup_get_u32be(d + 2) : dsup_get_u16be(d + 2);
                R->reg_cb_saved(R->reg_cb_arg, 0, creation);
                return;
            }
        }
        if (n < 0) {
            R->reg_req = NULL;
            req_close(r);
            if (r->done)
                reg_lost(R);
            else
                reg_failed(R, (int)n);
        }
        return;
    }
    if (r->in.len >= 2 && d[0] == PORT2_RESP) {
        if (d[1] != 0) {
            finish_port(r, DSUP_EPMD_NOT_REGISTERED, 0, 0);
            return;
        }
        if (r->in.len >= 10) {
            finish_port(r, 0, dsup_get_u16be(d + 2), dsup_get_u16be(d + 6));
            return;
        }
    }
    if (n < 0)
        finish_port(r, (int)n, 0, 0);
}

/* A request's connect or write failed: the registration is retried, a
 * lookup answered with the error. */
static void req_failed(epmd_req *r, int status)
{
    dsup_epmd_reg *R = r->reg;
    if (R) {
        R->reg_req = NULL;
        req_close(r);
        reg_failed(R, status);
    } else {
        finish_port(r, status, 0, 0);
    }
}

static void on_written(uv_write_t *w, int status)
{
    epmd_req *r = w->data;
    if (status == UV_ECANCELED)
        return; /* closed by its deadline or at shutdown */
    if (status < 0) {
        req_failed(r, status);
        return;
    }
    uv_read_start((uv_stream_t *)&r->tcp, on_alloc, on_read);
}

static void on_connected(uv_connect_t *c, int status)
{
    epmd_req *r = c->data;
    if (status == UV_ECANCELED)
        return; /* closed by its deadline or at shutdown */
    if (status < 0) {
        req_failed(r, status);
        return;
    }
    uv_buf_t b = uv_buf_init(r->out, (unsigned)r->outlen);
    r->wreq.data = r;
    uv_write(&r->wreq, (uv_stream_t *)&r->tcp, &b, 1, on_written);
}

static void on_req_timeout(uv_timer_t *t)
{
    epmd_req *r = t->data;
    dsup_epmd_reg *R = r->reg;
    if (R) {
        if (R->reg_req == r)
            R->reg_req = NULL;
        req_close(r);
        reg_failed(R, UV_ETIMEDOUT);
    } else {
        finish_port(r, UV_ETIMEDOUT, 0, 0);
    }
}

static epmd_req *req_start(uv_loop_t *loop, const struct sockaddr *addr, unsigned timeout_ms)
{
    epmd_req *r = dsup_xcalloc(1, sizeof *r);
    uv_tcp_init(loop, &r->tcp);
    uv_timer_init(loop, &r->timer);
    r->open_handles = 2;
    r->tcp.data = r;
    r->timer.data = r;
    r->creq.data = r;
    int rc = uv_tcp_connect(&r->creq, &r->tcp, addr, on_connected);
    if (rc < 0) {
        req_close(r);
        return NULL;
    }
    uv_timer_start(&r->timer, on_req_timeout, timeout_ms, 0);
    return r;
}

/* ---- registration ------------------------------------------------------ */

static int reg_send(dsup_epmd_reg *R)
{
    struct sockaddr_in a;
    uv_ip4_addr("127.0.0.1", dsup_epmd_port(), &a);
    epmd_req *r = req_start(R->reg_loop, (const struct sockaddr *)&a, REG_ANSWER_MS);
    if (!r)
        return -1;
    r->reg = R;
    size_t nlen = strlen(R->reg_alive);
    uint8_t *o = (uint8_t *)r->out;
    size_t body = 13 + nlen;
    o[0] = (uint8_t)(body >> 8); o[1] = (uint8_t)body;
    o[2] = ALIVE2_REQ;
    o[3] = (uint8_t)(R->reg_port >> 8); o[4] = (uint8_t)R->reg_port;
    o[5] = R->reg_hidden ? 72 : 77; /* 'H' hidden node, 'M' normal node */
    o[6] = 0;                     /* protocol: tcp/ip v4 */
    o[7] = 0; o[8] = 6;           /* highest version */
    o[9] = 0; o[10] = 5;          /* lowest version */
    o[11] = (uint8_t)(nlen >> 8); o[12] = (uint8_t)nlen;
    memcpy(o + 13, R->reg_alive, nlen);
    o[13 + nlen] = 0; o[14 + nlen] = 0; /* no extra */
    r->outlen = 15 + nlen;
    R->reg_req = r;
    return 0;
}

static void start_epmd_daemon(uv_loop_t *loop)
{
    char port[16];
    snprintf(port, sizeof port, "%d", dsup_epmd_port());
    char *args[] = { "epmd", "-daemon", "-port", port, NULL };
    uv_process_options_t o;
    memset(&o, 0, sizeof o);
    o.file = "epmd";
    o.args = args;
    o.flags = UV_PROCESS_DETACHED;
    uv_process_t *p = dsup_xcalloc(1, sizeof *p);
    int rc = uv_spawn(loop, p, &o);
    if (rc < 0) {
        LOG_ERROR("could not start epmd: %s", uv_strerror(rc));
        free(p);
        return;
    }
    LOG_INFO("no epmd answered on port %d; started `epmd -daemon`", dsup_epmd_port());
    uv_unref((uv_handle_t *)p);
    p->data = p;
    uv_close((uv_handle_t *)p, (uv_close_cb)free);
}

static void on_reg_retry(uv_timer_t *t)
{
    dsup_epmd_reg *R = t->data;
    if (reg_send(R) < 0)
        reg_failed(R, -1);
}

static void reg_retry_in(dsup_epmd_reg *R, unsigned ms)
{
    if (!R->reg_retry_init) {
        uv_timer_init(R->reg_loop, &R->reg_retry);
        R->reg_retry.data = R;
        R->reg_retry_init = 1;
    }
    uv_timer_start(&R->reg_retry, on_reg_retry, ms, 0);
}

/* epmd closed our registration (it was restarted, or killed): we are no
 * longer findable. Say so once, then register again until it answers. */
static void reg_lost(dsup_epmd_reg *R)
{
    if (R->reg_stopped)
        return;
    LOG_WARN("connection to epmd lost: this node is not registered; registering again");
    R->reg_backoff_ms = 100;
    reg_retry_in(R, R->reg_backoff_ms);
}

static void reg_failed(dsup_epmd_reg *R, int status)
{
    if (R->reg_stopped)
        return;
    if (R->reg_ever) {
        /* Re-registering: never give up, never start an epmd of our own
         * (whoever restarts epmd owns it). */
        LOG_DEBUG("registering with epmd again failed: %s",
                  status < 0 ? uv_strerror(status) : "refused");
        R->reg_backoff_ms = R->reg_backoff_ms ? R->reg_backoff_ms * 2 : 100;
        if (R->reg_backoff_ms > REG_BACKOFF_MAX_MS)
            R->reg_backoff_ms = REG_BACKOFF_MAX_MS;
        reg_retry_in(R, R->reg_backoff_ms);
        return;
    }
    if (R->reg_tries == 0)
        start_epmd_daemon(R->reg_loop);
    if (++R->reg_tries > 40) {
        LOG_ERROR("could not register with epmd on port %d: %s", dsup_epmd_port(),
                  status < 0 ? uv_strerror(status) : "refused");
        R->reg_cb_saved(R->reg_cb_arg, status < 0 ? status : -1, 0);
        return;
    }
    reg_retry_in(R, R->reg_tries < 10 ? 50 : 250);
}

dsup_epmd_reg *dsup_epmd_register(uv_loop_t *loop, const char *alive, int port, int hidden, dsup_epmd_reg_cb cb,
                                  void *arg)
{
    if (strlen(alive) >= sizeof ((dsup_epmd_reg *)0)->reg_alive)
        return NULL;
    dsup_epmd_reg *R = dsup_xcalloc(1, sizeof *R);
    R->reg_loop = loop;
    snprintf(R->reg_alive, sizeof R->reg_alive, "%s", alive);
    R->reg_port = port;
    R->reg_hidden = hidden;
    R->reg_cb_saved = cb;
    R->reg_cb_arg = arg;
    R->reg_tries = 0;
    if (reg_send(R) < 0)
        reg_failed(R, -1);
    return R;
}

void dsup_epmd_unregister(dsup_epmd_reg *R)
{
    if (!R)
        return;
    R->reg_stopped = 1;
    if (R->reg_retry_init && !uv_is_closing((uv_handle_t *)&R->reg_retry))
        uv_close((uv_handle_t *)&R->reg_retry, NULL);
    R->reg_retry_init = 0;
    if (R->reg_req) {
        req_close(R->reg_req); /* closing the socket removes our entry */
        R->reg_req = NULL;
    }
}

/* ---- port please ------------------------------------------------------- */

int dsup_epmd_port_please(uv_loop_t *loop, const struct sockaddr_storage *addr, const char *alive,
                          unsigned timeout_ms, dsup_epmd_port_cb cb, void *arg)
{
    struct sockaddr_storage a = *addr;
    if (a.ss_family == AF_INET)
        ((struct sockaddr_in *)&a)->sin_port = htons((uint16_t)dsup_epmd_port());
    else
        ((struct sockaddr_in6 *)&a)->sin6_port = htons((uint16_t)dsup_epmd_port());
    size_t nlen = strlen(alive);
    if (nlen > 255)
        return -1;
    epmd_req *r = req_start(loop, (const struct sockaddr *)&a, timeout_ms);
    if (!r)
        return -1;
    r->port_cb = cb;
    r->arg = arg;
    uint8_t *o = (uint8_t *)r->out;
    o[0] = (uint8_t)((nlen + 1) >> 8); o[1] = (uint8_t)(nlen + 1);
    o[2] = PORT_PLEASE2_REQ;
    memcpy(o + 3, alive, nlen);
    r->outlen = 3 + nlen;
    return 0;
}

/* After dsup_epmd_unregister's handles closed (the node's close). */
void dsup_epmd_reg_free(dsup_epmd_reg *R) { free(R); }
