/* handshake.c — the distribution handshake, protocol version 6 (OTP 23+),
 * as a state machine on the loop: no blocking ei_connect/ei_accept calls.
 *
 *   initiator (A)                      acceptor (B)
 *   send_name  'N' Flags Creation Name  ->
 *                                      <- status 's' "ok" | "ok_simultaneous" | "nok" | "alive"
 *                                      <- challenge 'N' Flags Challenge Creation Name
 *   reply 'r' Challenge Digest         ->
 *                                      <- ack 'a' Digest
 *
 * Digest = MD5(Cookie ++ integer_to_list(Challenge)). The flags are ours to
 * choose: we advertise DIST_MONITOR and DIST_MONITOR_NAME (without both the
 * BEAM sends no monitor signals) and PUBLISHED when visible. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conn.h"
#include "intern.h"
#include "log.h"
#include "md5.h"
#include "metrics.h"

enum {
    HS_IN_NAME = 0,      /* acceptor: waiting for send_name */
    HS_IN_ALIVE,         /* acceptor: said "alive", waiting for true/false */
    HS_IN_REPLY,         /* acceptor: waiting for challenge_reply */
    HS_OUT_STATUS = 10,  /* initiator: waiting for status */
    HS_OUT_CHALLENGE,    /* initiator: waiting for challenge */
    HS_OUT_ACK,          /* initiator: waiting for challenge_ack */
};

static void digest(uint32_t challenge, uint8_t out[16])
{
    char buf[1100];
    int n = snprintf(buf, sizeof buf, "%s%u", g_node->cookie, challenge);
    dsup_md5(buf, (size_t)n, out);
}

static uint32_t new_challenge(void)
{
    uint32_t v;
    if (uv_random(NULL, NULL, &v, sizeof v, 0, NULL) != 0)
        v = (uint32_t)rand() ^ (uint32_t)uv_hrtime();
    return v;
}

static int fail(dsup_conn *c, const char *why)
{
    LOG_WARN("handshake %s %s failed: %s", c->outbound ? "to" : "from", c->peer ? c->peer : "?", why);
    dsup_metrics_hs_failure(c->peer, why);
    return -1;
}

static int check_peer_flags(dsup_conn *c, uint64_t flags)
{
    if ((flags & DSUP_DFLAGS_REQUIRED) != DSUP_DFLAGS_REQUIRED)
        return fail(c, "peer lacks required distribution flags");
    c->peer_flags = flags;
    return 0;
}

static int send_name(dsup_conn *c)
{
    uint8_t b[300];
    size_t nlen = strlen(g_node->name);
    b[0] = 'N';
    for (int i = 0; i < 8; i++)
        b[1 + i] = (uint8_t)(g_node->flags >> (56 - 8 * i));
    dsup_set_u32be(b + 9, g_node->creation);
    b[13] = (uint8_t)(nlen >> 8);
    b[14] = (uint8_t)nlen;
    memcpy(b + 15, g_node->name, nlen);
    return dsup_conn_write_hs(c, b, 15 + nlen);
}

static int send_challenge(dsup_conn *c)
{
    uint8_t b[300];
    size_t nlen = strlen(g_node->name);
    c->my_challenge = new_challenge();
    b[0] = 'N';
    for (int i = 0; i < 8; i++)
        b[1 + i] = (uint8_t)(g_node->flags >> (56 - 8 * i));
    dsup_set_u32be(b + 9, c->my_challenge);
    dsup_set_u32be(b + 13, g_node->creation);
    b[17] = (uint8_t)(nlen >> 8);
    b[18] = (uint8_t)nlen;
    memcpy(b + 19, g_node->name, nlen);
    return dsup_conn_write_hs(c, b, 19 + nlen);
}

static int send_status(dsup_conn *c, const char *status)
{
    char b[32];
    size_t n = strlen(status);
    b[0] = 's';
    memcpy(b + 1, status, n);
    return dsup_conn_write_hs(c, b, n + 1);
}

void dsup_hs_start_outbound(dsup_conn *c)
{
    c->state = CONN_HANDSHAKE;
    c->hs_step = HS_OUT_STATUS;
    if (dsup_conn_start(c) < 0 || send_name(c) < 0)
        dsup_conn_close(c, "could not start the handshake");
}

/* Acceptor: send_name arrived. */
static int on_name(dsup_conn *c, const uint8_t *p, size_t len)
{
    if (len < 15 || p[0] != 'N')
        return fail(c, len && p[0] == 'n' ? "peer speaks only protocol version 5" : "bad send_name");
    uint64_t flags = dsup_get_u64be(p + 1);
    c->peer_creation = dsup_get_u32be(p + 9);
    size_t nlen = dsup_get_u16be(p + 13);
    if (nlen == 0 || nlen > 255 || 15 + nlen != len || !memchr(p + 15, '@', nlen))
        return fail(c, "bad node name in send_name");
    c->peer = dsup_intern((const char *)p + 15, nlen);
    if (!c->peer || check_peer_flags(c, flags) < 0)
        return -1;
    int verdict = dsup_node_accept_peer(c, c->peer);
    if (verdict == 0) {
        send_status(c, "nok");
        return fail(c, "simultaneous connect, ours wins");
    }
    if (verdict == 2) {
        c->hs_step = HS_IN_ALIVE;
        return send_status(c, "alive");
    }
    if (send_status(c, verdict == 3 ? "ok_simultaneous" : "ok") < 0 || send_challenge(c) < 0)
        return -1;
    c->hs_step = HS_IN_REPLY;
    return 0;
}

static int on_reply(dsup_conn *c, const uint8_t *p, size_t len)
{
    if (len != 21 || p[0] != 'r')
        return fail(c, "bad challenge_reply");
    uint8_t want[16];
    digest(c->my_challenge, want);
    if (memcmp(want, p + 5, 16) != 0) {
        LOG_WARN("connection attempt from %s refused: wrong cookie", c->peer);
        dsup_metrics_hs_failure(c->peer, "wrong cookie");
        return -1;
    }
    c->peer_challenge = dsup_get_u32be(p + 1);
    uint8_t ack[17];
    ack[0] = 'a';
    digest(c->peer_challenge, ack + 1);
    if (dsup_conn_write_hs(c, ack, sizeof ack) < 0)
        return -1;
    dsup_node_conn_up(c);
    return 0;
}

static int on_status(dsup_conn *c, const uint8_t *p, size_t len)
{
    if (len < 1 || p[0] != 's')
        return fail(c, "bad status");
    const char *st = (const char *)p + 1;
    size_t n = len - 1;
    if ((n == 2 && memcmp(st, "ok", 2) == 0) || (n == 15 && memcmp(st, "ok_simultaneous", 15) == 0)) {
        c->hs_step = HS_OUT_CHALLENGE;
        return 0;
    }
    if (n == 5 && memcmp(st, "alive", 5) == 0) {
        /* The peer thinks we are still connected: we are a new incarnation. */
        if (dsup_conn_write_hs(c, "strue", 5) < 0)
            return -1;
        c->hs_step = HS_OUT_CHALLENGE;
        return 0;
    }
    LOG_DEBUG("%s answered status '%.*s'", c->peer, (int)n, st);
    return -1;
}

static int on_challenge(dsup_conn *c, const uint8_t *p, size_t len)
{
    if (len < 19 || p[0] != 'N')
        return fail(c, "bad challenge");
    uint64_t flags = dsup_get_u64be(p + 1);
    c->peer_challenge = dsup_get_u32be(p + 9);
    c->peer_creation = dsup_get_u32be(p + 13);
    size_t nlen = dsup_get_u16be(p + 17);
    if (19 + nlen != len || nlen != strlen(c->peer) || memcmp(p + 19, c->peer, nlen) != 0)
        return fail(c, "challenge from an unexpected node name");
    if (check_peer_flags(c, flags) < 0)
        return -1;
    uint8_t r[21];
    r[0] = 'r';
    c->my_challenge = new_challenge();
    dsup_set_u32be(r + 1, c->my_challenge);
    digest(c->peer_challenge, r + 5);
    if (dsup_conn_write_hs(c, r, sizeof r) < 0)
        return -1;
    c->hs_step = HS_OUT_ACK;
    return 0;
}

static int on_ack(dsup_conn *c, const uint8_t *p, size_t len)
{
    if (len != 17 || p[0] != 'a')
        return fail(c, "bad challenge_ack");
    uint8_t want[16];
    digest(c->my_challenge, want);
    if (memcmp(want, p + 1, 16) != 0)
        return fail(c, "wrong cookie (peer's digest does not match)");
    dsup_node_conn_up(c);
    return 0;
}

int dsup_hs_packet(dsup_conn *c, const uint8_t *p, size_t len)
{
    switch (c->hs_step) {
    case HS_IN_NAME:
        return on_name(c, p, len);
    case HS_IN_ALIVE:
        if (len == 5 && memcmp(p, "strue", 5) == 0) {
            dsup_conn *old = dsup_node_conn(c->peer, 0);
            if (old && old != c)
                dsup_conn_close(old, "replaced by a new connection from the same node");
            if (send_challenge(c) < 0)
                return -1;
            c->hs_step = HS_IN_REPLY;
            return 0;
        }
        return -1;
    case HS_IN_REPLY:
        return on_reply(c, p, len);
    case HS_OUT_STATUS:
        return on_status(c, p, len);
    case HS_OUT_CHALLENGE:
        return on_challenge(c, p, len);
    case HS_OUT_ACK:
        return on_ack(c, p, len);
    }
    return -1;
}
