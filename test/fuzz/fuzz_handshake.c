/* fuzz_handshake.c — libFuzzer target for the distribution handshake state
 * machine (c_src/handshake.c), the code that reads what unauthenticated peers
 * send.
 *
 * Input: one mode byte, then handshake packets as they come off the wire
 * (2-byte length, body; conn.c refuses bodies above 512 bytes, so do we).
 *   bit 0      outbound (we dialled "peer@host") or inbound (we accepted)
 *   bits 1-2   dsup_node_accept_peer's verdict (0 nok, 1 ok, 2 alive, 3 ok_simultaneous)
 *   bit 3      give challenge replies/acks the right digest, so the fuzzer
 *              reaches the states after the cookie check
 *   bit 4      dsup_node_peer_proven fails (the name cannot be kept)
 * Each packet is copied to a buffer of exactly its size (ASan sees any
 * overread). Invariants checked:
 *   - the claimed name reaches the node (dsup_node_peer_proven) only while
 *     handling a challenge_reply whose digest is right for our challenge;
 *   - the connection comes up only after that (inbound) or after an ack with
 *     the right digest (outbound), and at most once;
 *   - a claimed name is NUL-terminated within hs_name and contains '@'.
 * The node's side (connection table, writes, logging) is stubbed here.
 *
 *   make fuzz FUZZ_SECONDS=60 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conn.h"
#include "md5.h"

#define CHECK(cond) do { \
        if (!(cond)) { fprintf(stderr, "fuzz_handshake: check failed: %s (line %d)\n", #cond, __LINE__); \
            abort(); } } while (0)

static dsup_node node; /* the connection's node (c.node) */
int dsup_log_level = DSUP_LOG_ERROR + 1; /* silent */

static int verdict, proven_fails, ups, proven_calls;
static const uint8_t *cur;   /* the packet being handled */
static size_t cur_len;

static void digest(uint32_t challenge, uint8_t out[16])
{
    char buf[1100];
    int n = snprintf(buf, sizeof buf, "%s%u", node.cookie, challenge);
    dsup_md5(buf, (size_t)n, out);
}

/* ---- stubs for what handshake.c calls ----------------------------------- */

void dsup_log(int level, const char *fmt, ...) { (void)level; (void)fmt; }
int dsup_conn_start(dsup_conn *c) { (void)c; return 0; }
void dsup_conn_close(dsup_conn *c, const char *why) { (void)why; c->state = CONN_CLOSING; }

int dsup_conn_write_hs(dsup_conn *c, const void *body, size_t n)
{
    (void)c;
    CHECK(n > 0 && n < 512);
    CHECK(body != NULL);
    return 0;
}

const char *dsup_conn_label(const dsup_conn *c)
{
    return c->peer ? c->peer : c->hs_name[0] ? c->hs_name : "?";
}

int dsup_node_accept_peer(dsup_conn *c, const char *name)
{
    CHECK(name == c->hs_name);
    CHECK(memchr(name, 0, sizeof c->hs_name) != NULL);
    CHECK(strchr(name, '@') != NULL);
    CHECK(c->peer == NULL);
    return verdict;
}

int dsup_node_peer_proven(dsup_conn *c)
{
    uint8_t want[16];
    digest(c->my_challenge, want);
    CHECK(!c->outbound);
    CHECK(cur_len == 21 && cur[0] == 'r' && memcmp(cur + 5, want, 16) == 0);
    proven_calls++;
    if (proven_fails)
        return -1;
    c->peer = c->hs_name; /* stands for the interned copy */
    return 0;
}

void dsup_node_conn_up(dsup_conn *c)
{
    uint8_t want[16];
    digest(c->my_challenge, want);
    if (c->outbound)
        CHECK(cur_len == 17 && cur[0] == 'a' && memcmp(cur + 1, want, 16) == 0);
    else
        CHECK(c->peer != NULL && proven_calls == 1);
    CHECK(ups == 0);
    ups++;
    c->state = CONN_UP;
}

/* ---- the target ---------------------------------------------------------- */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t mode = data[0];
    memset(&node, 0, sizeof node);
    node.name = "dsup@127.0.0.1";
    snprintf(node.cookie, sizeof node.cookie, "fuzzcookie");
    node.flags = DSUP_DFLAGS_REQUIRED;
    node.loop = uv_default_loop(); /* dsup_node_now reads its time */
    verdict = (mode >> 1) & 3;
    proven_fails = (mode >> 4) & 1;
    ups = proven_calls = 0;

    dsup_conn c;
    memset(&c, 0, sizeof c);
    c.node = &node;
    c.outbound = mode & 1;
    if (c.outbound) {
        c.peer = "peer@127.0.0.1";
        dsup_hs_start_outbound(&c);
    } else {
        c.state = CONN_HANDSHAKE;
    }

    size_t off = 1;
    while (c.state == CONN_HANDSHAKE && size - off >= 2) {
        size_t n = (size_t)data[off] << 8 | data[off + 1];
        off += 2;
        if (n > 512 || size - off < n)
            break;
        uint8_t *p = malloc(n ? n : 1);
        memcpy(p, data + off, n);
        off += n;
        if (mode & 8) {
            uint8_t want[16];
            digest(c.my_challenge, want);
            if (!c.outbound && n == 21 && p[0] == 'r')
                memcpy(p + 5, want, 16);
            if (c.outbound && n == 17 && p[0] == 'a')
                memcpy(p + 1, want, 16);
        }
        cur = p;
        cur_len = n;
        int r = dsup_hs_packet(&c, p, n);
        cur = NULL;
        free(p);
        if (!c.outbound)
            CHECK(c.peer == NULL || proven_calls == 1);
        if (r < 0)
            break;
    }
    if (c.hs_name[0])
        CHECK(memchr(c.hs_name, 0, sizeof c.hs_name) != NULL);
    return 0;
}
