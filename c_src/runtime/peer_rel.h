/* peer_rel.h — per-peer release facts for version-dependent replies
 * (peer_rel.c states the rule). */
#ifndef DSUP_PEER_REL_H
#define DSUP_PEER_REL_H

#include <stddef.h>
#include <stdint.h>

#include "dsup.h"

/* dsup_conn.peer_stdlib: 0 = not known yet; this = asked, no usable answer. */
#define DSUP_STDLIB_UNKNOWN 1u

/* The peer's stdlib version as major<<16 | minor<<8 | patch; 0 when not
 * known (yet), DSUP_STDLIB_UNKNOWN when its rex could not say. */
uint32_t dsup_peer_stdlib(dsup_node *node, const char *peer);
/* 1: the peer's sys wants {ok, State}; 0: the bare State; -1: not known yet. */
int dsup_peer_sys_ok_wrapped(dsup_node *node, const char *peer);
/* "5.0.2" -> 0x050002 (each part capped at 255); 0 when not a version. */
uint32_t dsup_peer_parse_vsn(const char *s, size_t n);
/* The rule: 1 when a caller with this stdlib version (as parsed above)
 * expects {ok, State} from get_state/replace_state, i.e. stdlib >= 5.1. */
int dsup_peer_stdlib_wants_ok(uint32_t vsn);

/* Send {Tag, Body} or {Tag, {ok, Body}} to `to`, as the sys of to's node
 * expects a successful get_state/replace_state reply; held (copied) until
 * that node's release is known. 0, or -1 out of memory. */
int dsup_peer_sys_reply(dsup_node *node, const dsup_pid *to, dsup_term tag, dsup_term body);

/* Ask `peer`'s rex for its stdlib version, from process `self` (dsup_node),
 * on every new connection; the answer goes to dsup_peer_rel_answer. */
void dsup_peer_rel_ask(dsup_proc *self, const char *peer);
/* 1 when msg was the answer to dsup_peer_rel_ask (consumed), else 0. */
int dsup_peer_rel_answer(dsup_node *node, dsup_term msg);
/* Node stopping: drop held replies, close the timer. */
void dsup_peer_rel_stop(dsup_node *node);
/* The node's held replies (node->peer_rel): made at init, freed at close. */
void dsup_peer_rel_init(dsup_node *node);
void dsup_peer_rel_free(dsup_node *node);

#endif
