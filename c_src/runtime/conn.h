/* conn.h — one distribution connection: reading and splitting frames,
 * the ordered write queue, ticks, close. The handshake lives in handshake.c. */
#ifndef DSUP_CONN_H
#define DSUP_CONN_H

#include "node.h"

dsup_conn *dsup_conn_new(dsup_node *node);
/* Start reading (inbound after accept, outbound after connect). */
int dsup_conn_start(dsup_conn *c);
/* Queue a whole handshake packet (2-byte length added here); written at once. */
int dsup_conn_write_hs(dsup_conn *c, const void *body, size_t n);
/* Write out what the queue holds (only once the connection is up). */
void dsup_conn_flush(dsup_conn *c);
/* Close and forget the connection; `why` is logged. */
void dsup_conn_close(dsup_conn *c, const char *why);

/* Handshake (handshake.c). */
void dsup_hs_start_outbound(dsup_conn *c);
/* One handshake packet (without its length). 0 to go on, -1 to close. */
int dsup_hs_packet(dsup_conn *c, const uint8_t *p, size_t len);
/* 1 while an outbound handshake waits after status "nok" (simultaneous
 * connect, theirs wins): it holds our queue for their connection. */
int dsup_hs_waiting_for_theirs(const dsup_conn *c);
/* Why an outbound handshake the peer closed at this step most likely failed. */
const char *dsup_hs_closed_reason(const dsup_conn *c);

#endif
