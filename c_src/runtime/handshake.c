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
 * BEAM sends no monitor signals) and PUBLISHED when visible.
 *
 * Nothing a peer says before its challenge_reply proves the cookie acts on
 * the node: the claimed name stays in the connection (not interned), a claim
 * to be a connected peer ("alive", then "true") touches that peer's
 * connection only once the reply checks out (dist_util's up_pending: the old
 * connection is not given up on an unproven claim). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conn.h"
#include "log.h"
#include "md5.h"
#include "ratelimit.h"

enum {
    HS_IN_NAME = 0,      /* acceptor: waiting for send_name */
    HS_IN_ALIVE,         /* acceptor: said "alive", waiting for true/false */
    HS_IN_REPLY,         /* acceptor: waiting for challenge_reply */
    HS_OUT_STATUS = 10,  /* initiator: waiting for status */
    HS_OUT_CHALLENGE,    /* initiator: waiting for challenge */
    HS_OUT_ACK,          /* initiator: waiting for challenge_ack */
    HS_OUT_NOK,          /* initiator: told "nok"; their connection to us wins, we wait to be closed */
};


static void digest(const dsup_node *node, uint32_t challenge, uint8_t out[16])
{
    char buf[1100];
    int n = snprintf(buf, sizeof buf, "%s%u", node->cookie, challenge);
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
    c->error = why;
    if (c->outbound)
        return -1; /* node.c logs outbound failures, once per peer and reason */
    unsigned dropped;
    /* Failures of unauthenticated inbound attempts: anyone can cause them. */
    if (dsup_ratelimit_ok(&c->node->inbound_fail_log, dsup_node_now(c->node), &dropped))
        LOG_WARN("connection attempt from %s%s%s%s refused: %s%s", dsup_conn_label(c),
                 c->hs_name[0] ? " (" : "", c->hs_name[0] ? c->addr_text : "", c->hs_name[0] ? ")" : "",
                 why, dropped ? " (more refusals not logged)" : "");
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
    size_t nlen = strlen(c->node->name);
    b[0] = 'N';
    for (int i = 0; i < 8; i++)
        b[1 + i] = (uint8_t)(c->node->flags >> (56 - 8 * i));
    dsup_set_u32be(b + 9, c->node->creation);
    b[13] = (uint8_t)(nlen >> 8);
    b[14] = (uint8_t)nlen;
    memcpy(b + 15, c->node->name, nlen);
    return dsup_conn_write_hs(c, b, 15 + nlen);
}

static int send_challenge(dsup_conn *c)
{
    uint8_t b[300];
    size_t nlen = strlen(c->node->name);
    c->my_challenge = new_challenge();
    b[0] = 'N';
    for (int i = 0; i < 8; i++)
        b[1 + i] = (uint8_t)(c->node->flags >> (56 - 8 * i));
    dsup_set_u32be(b + 9, c->my_challenge);
    dsup_set_u32be(b + 13, c->node->creation);
    b[17] = (uint8_t)(nlen >> 8);
    b[18] = (uint8_t)nlen;
    memcpy(b + 19, c->node->name, nlen);
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
    dsup_conn_enter(c, CONN_HANDSHAKE);
    c->hs_step = HS_OUT_STATUS;
    if (dsup_conn_start(c) < 0 || send_name(c) < 0)
        dsup_conn_close(c, "could not start the handshake");
}

/* Acceptor: send_name arrived. The name is kept, not interned, until the
 * cookie is proven. */
static int on_name(dsup_conn *c, const uint8_t *p, size_t len)
{
    if (len < 15 || p[0] != 'N')
        return fail(c, len && p[0] == 'n' ? "peer speaks only protocol version 5" : "bad send_name");
    uint64_t flags = dsup_get_u64be(p + 1);
    c->peer_creation = dsup_get_u32be(p + 9);
    size_t nlen = dsup_get_u16be(p + 13);
    if (nlen == 0 || nlen >= sizeof c->hs_name || 15 + nlen != len || !memchr(p + 15, '@', nlen))
        return fail(c, "bad node name in send_name");
    for (size_t i = 0; i < nlen; i++)
        if (p[15 + i] < 0x20 || p[15 + i] == 0x7f) /* no NUL, no control bytes in our logs */
            return fail(c, "bad node name in send_name");
    memcpy(c->hs_name, p + 15, nlen);
    c->hs_name[nlen] = 0;
    if (check_peer_flags(c, flags) < 0)
        return -1;
    if (strcmp(c->hs_name, c->node->name) == 0)
        return fail(c, "the peer claims this node's own name");
    int verdict = dsup_node_accept_peer(c, c->hs_name);
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
    digest(c->node, c->my_challenge, want);
    if (memcmp(want, p + 5, 16) != 0)
        return fail(c, "wrong cookie (challenge reply does not match)");
    /* Proven: only now does the claimed name become the peer's name. */
    if (dsup_node_peer_proven(c) < 0)
        return fail(c, "cannot keep the peer's name");
    c->peer_challenge = dsup_get_u32be(p + 1);
    uint8_t ack[17];
    ack[0] = 'a';
    digest(c->node, c->peer_challenge, ack + 1);
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
    if (n == 3 && memcmp(st, "nok", 3) == 0) {
        /* Simultaneous connect and theirs wins: our queue moves to their
         * connection once it is proven; until then (or the setup deadline)
         * this one waits, as dist_util does. */
        c->hs_step = HS_OUT_NOK;
        return 0;
    }
    if (n == 11 && memcmp(st, "not_allowed", 11) == 0)
        return fail(c, "the peer does not allow this node to connect (status not_allowed)");
    return fail(c, "the peer refused the connection (unexpected status)");
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
        return fail(c, "the peer answered with another node name");
    if (check_peer_flags(c, flags) < 0)
        return -1;
    uint8_t r[21];
    r[0] = 'r';
    c->my_challenge = new_challenge();
    dsup_set_u32be(r + 1, c->my_challenge);
    digest(c->node, c->peer_challenge, r + 5);
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
    digest(c->node, c->my_challenge, want);
    if (memcmp(want, p + 1, 16) != 0)
        return fail(c, "wrong cookie (the peer's challenge ack does not match)");
    dsup_node_conn_up(c);
    return 0;
}

int dsup_hs_waiting_for_theirs(const dsup_conn *c)
{
    return c->outbound && c->state == CONN_HANDSHAKE && c->hs_step == HS_OUT_NOK;
}

const char *dsup_hs_closed_reason(const dsup_conn *c)
{
    switch (c->hs_step) {
    case HS_OUT_STATUS:
        return "the peer closed the connection before answering send_name (not allowed to connect?)";
    case HS_OUT_ACK:
        return "the peer closed the connection after our challenge reply: wrong cookie";
    default:
        return "closed by peer during the handshake";
    }
}

int dsup_hs_packet(dsup_conn *c, const uint8_t *p, size_t len)
{
    switch (c->hs_step) {
    case HS_IN_NAME:
        return on_name(c, p, len);
    case HS_IN_ALIVE:
        if (len == 5 && memcmp(p, "strue", 5) == 0) {
            /* A claim, not a proof: the old connection stays until the
             * challenge reply checks out (dsup_node_peer_proven). */
            if (send_challenge(c) < 0)
                return -1;
            c->hs_step = HS_IN_REPLY;
            return 0;
        }
        return fail(c, len == 6 && memcmp(p, "sfalse", 6) == 0 ? "peer answered false to alive"
                                                                 : "bad answer to alive");
    case HS_IN_REPLY:
        return on_reply(c, p, len);
    case HS_OUT_STATUS:
        return on_status(c, p, len);
    case HS_OUT_CHALLENGE:
        return on_challenge(c, p, len);
    case HS_OUT_ACK:
        return on_ack(c, p, len);
    case HS_OUT_NOK:
        return fail(c, "data after status nok");
    }
    return -1;
}
