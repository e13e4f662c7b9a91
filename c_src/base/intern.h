/* intern.h — interned strings: node names and registered names are stored
 * once, so they compare by pointer and pids carry no string copies.
 *
 * Two classes of entries:
 *  - pinned: the node's own names (its node name, configured and built-in
 *    names); never freed.
 *  - counted: names a peer or a message introduced (node names of remote pids
 *    and refs, registered names). Whoever keeps one beyond the handling of
 *    the current message holds it (dsup_intern_hold) and releases it when it
 *    drops it. An entry that nothing holds is freed by dsup_intern_sweep(),
 *    which runs at the end of every loop turn: pointers decoded while a
 *    message is handled stay valid until then.
 * A counted entry made while a peer's message is dispatched is charged to
 * that peer (dsup_intern_set_peer); past the per-peer quota of live names,
 * dsup_intern_peer() refuses (NULL) and logs a rate-limited warning. */
#ifndef DSUP_INTERN_H
#define DSUP_INTERN_H

#include <stddef.h>
#include <uv.h>

#define DSUP_INTERN_DEFAULT_QUOTA 100000

/* One table per node (node.h); every entry knows its table, so holding,
 * releasing or asking whose name it is needs no other context. */
typedef struct dsup_intern_tab dsup_intern_tab;
dsup_intern_tab *dsup_intern_new(void *owner);
/* Frees every entry: after dsup_intern_detach's handle has closed. */
void dsup_intern_free(dsup_intern_tab *t);
/* The `owner` given to dsup_intern_new for the table holding s (NULL: s NULL). */
void *dsup_intern_owner(const char *s);

/* The pinned copy of s[0..len) (an existing counted entry becomes pinned).
 * NULL only when out of memory. */
const char *dsup_intern(dsup_intern_tab *t, const char *s, size_t len);
const char *dsup_intern_str(dsup_intern_tab *t, const char *s);

/* The entry for s[0..len), creating a counted one charged to the current
 * peer. NULL when out of memory or past that peer's quota. */
const char *dsup_intern_peer(dsup_intern_tab *t, const char *s, size_t len);
/* The existing entry, or NULL: lookups that only need to match a name that
 * something already holds (registered names, known nodes) never insert. */
const char *dsup_intern_find(const dsup_intern_tab *t, const char *s, size_t len);

/* Keep a counted entry alive / let it go. No-ops on pinned entries and NULL. */
void dsup_intern_hold(const char *s);
void dsup_intern_release(const char *s);

/* Charge entries created from now on to `peer` (an interned name that the
 * connection holds); NULL = nobody (the node's own work). */
void dsup_intern_set_peer(dsup_intern_tab *t, const char *peer);
/* Live counted entries per peer (0 = unlimited). */
void dsup_intern_set_quota(dsup_intern_tab *t, size_t max_per_peer);

/* Free counted entries that nothing holds (the end of a loop turn). */
void dsup_intern_sweep(dsup_intern_tab *t);
/* Run dsup_intern_sweep before every poll of `loop` / stop doing so. */
int dsup_intern_attach(dsup_intern_tab *t, uv_loop_t *loop);
void dsup_intern_detach(dsup_intern_tab *t);

/* For tests and diagnostics. */
typedef struct dsup_intern_stats {
    size_t entries, pinned, pending, slots;
    size_t refused;            /* names refused for a peer's quota since start */
} dsup_intern_stats;
void dsup_intern_get_stats(const dsup_intern_tab *t, dsup_intern_stats *st);
/* Live entries charged to `peer` (0 when it is not interned). */
size_t dsup_intern_peer_count(const dsup_intern_tab *t, const char *peer);
int dsup_intern_is_pinned(const char *s);
unsigned dsup_intern_refs(const char *s);

#endif
