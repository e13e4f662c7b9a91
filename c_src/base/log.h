/* log.h — leveled logging to stderr, one line per event: RFC 3339 UTC time
 * with milliseconds, node name, level, message; as text or as one JSON
 * object a line (--log-format json) for log shippers. */
#ifndef DSUP_LOG_H
#define DSUP_LOG_H

#include <stddef.h>

#include "dsup.h"

extern int dsup_log_level;
int dsup_log_level_parse(const char *s); /* -1 when unknown */
/* "text" or "json": sets the format; -1 (format unchanged) when unknown. */
int dsup_log_format_parse(const char *s);
/* The node name every line carries ("nonode@nohost" until set, like erl).
 * The string must live as long as the process (an interned name does). */
void dsup_log_set_node(const char *name);
/* The same unless a name was set already (the first library node names the log). */
void dsup_log_set_node_once(const char *name);
/* Format one line into out (at most cap bytes, always ending "\n"); the
 * length. What dsup_log writes, exposed for the unit tests. */
size_t dsup_log_format_line(char *out, size_t cap, int level, long long unix_ms, const char *msg);

#define LOG_DEBUG(...) do { if (dsup_log_level <= DSUP_LOG_DEBUG) dsup_log(DSUP_LOG_DEBUG, __VA_ARGS__); } while (0)
#define LOG_INFO(...)  dsup_log(DSUP_LOG_INFO, __VA_ARGS__)
#define LOG_WARN(...)  dsup_log(DSUP_LOG_WARN, __VA_ARGS__)
#define LOG_ERROR(...) dsup_log(DSUP_LOG_ERROR, __VA_ARGS__)

#endif
