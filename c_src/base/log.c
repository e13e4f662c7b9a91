/* log.c — one line per event, built in a stack buffer and written with one
 * write(2) (no malloc, no stdio lock; lines from worker threads do not
 * interleave below PIPE_BUF). Text:
 *   2026-05-01T12:00:00.123Z dsup@host info message
 * JSON (one object a line, strings escaped, invalid UTF-8 as U+FFFD):
 *   {"time":"2026-05-01T12:00:00.123Z","node":"dsup@host","level":"info","msg":"message"} */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int dsup_log_level = DSUP_LOG_INFO;
static int json;
/* Process-wide, like the level and format: the node named in every line
 * (the command line's node, or the first library node made). A copy, so a
 * node freed before the process ends leaves nothing dangling. */
static char node_name[256] = "nonode@nohost";
static int node_named;

static const char *const level_names[] = { "debug", "info", "warn", "error" };

int dsup_log_level_parse(const char *s)
{
    for (int i = 0; i < 4; i++)
        if (strcmp(s, level_names[i]) == 0)
            return i;
    if (strcmp(s, "warning") == 0)
        return DSUP_LOG_WARN;
    return -1;
}

int dsup_log_format_parse(const char *s)
{
    if (strcmp(s, "text") && strcmp(s, "json"))
        return -1;
    json = !strcmp(s, "json");
    return 0;
}

void dsup_log_set_node(const char *name)
{
    snprintf(node_name, sizeof node_name, "%s", name ? name : "nonode@nohost");
    node_named = name != NULL;
}

void dsup_log_set_node_once(const char *name)
{
    if (!node_named)
        dsup_log_set_node(name);
}

/* "YYYY-MM-DDTHH:MM:SS.mmmZ". gmtime_r once a second per
 * thread: the date part is cached. */
static void rfc3339(char out[32], long long unix_ms)
{
    static __thread long long cached_sec = -1;
    static __thread char cached[64];
    long long sec = unix_ms / 1000;
    if (sec != cached_sec) {
        time_t t = (time_t)sec;
        struct tm tm;
        gmtime_r(&t, &tm);
        snprintf(cached, sizeof cached, "%04d-%02d-%02dT%02d:%02d:%02d", tm.tm_year + 1900, tm.tm_mon + 1,
                 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
        cached_sec = sec;
    }
    snprintf(out, 32, "%.19s.%03dZ", cached, (int)(unix_ms % 1000));
}

/* Length of the valid UTF-8 sequence at s (n bytes left), 0 if invalid. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    size_t len = c < 0xC2 ? 0 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : c < 0xF5 ? 4 : 0;
    if (!len || len > n)
        return 0;
    for (size_t i = 1; i < len; i++)
        if ((s[i] & 0xC0) != 0x80)
            return 0;
    if ((c == 0xE0 && s[1] < 0xA0) || (c == 0xED && s[1] > 0x9F) || /* overlong, surrogates */
        (c == 0xF0 && s[1] < 0x90) || (c == 0xF4 && s[1] > 0x8F))
        return 0;
    return len;
}

/* Append s as the body of a JSON string; stops (whole characters only) when
 * fewer than `reserve` bytes would remain. */
static size_t json_escape(char *out, size_t pos, size_t cap, size_t reserve, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s;
    size_t n = strlen(s);
    while (n) {
        char tmp[8];
        size_t tl, used = 1;
        unsigned c = *p;
        if (c == '"' || c == '\\') {
            tmp[0] = '\\', tmp[1] = (char)c, tl = 2;
        } else if (c == '\n') {
            memcpy(tmp, "\\n", 2), tl = 2;
        } else if (c == '\t') {
            memcpy(tmp, "\\t", 2), tl = 2;
        } else if (c == '\r') {
            memcpy(tmp, "\\r", 2), tl = 2;
        } else if (c < 0x20 || c == 0x7f) {
            memcpy(tmp, "\\u00", 4), tmp[4] = hex[c >> 4], tmp[5] = hex[c & 15], tl = 6;
        } else if (c < 0x80) {
            tmp[0] = (char)c, tl = 1;
        } else if ((used = utf8_len(p, n))) {
            memcpy(tmp, p, used), tl = used;
        } else {
            memcpy(tmp, "\\ufffd", 6), tl = 6, used = 1;
        }
        if (pos + tl + reserve > cap)
            break;
        memcpy(out + pos, tmp, tl);
        pos += tl;
        p += used;
        n -= used;
    }
    return pos;
}

size_t dsup_log_format_line(char *out, size_t cap, int level, long long unix_ms, const char *msg)
{
    char ts[32];
    rfc3339(ts, unix_ms);
    if (level < 0 || level > 3)
        level = DSUP_LOG_ERROR;
    size_t pos;
    if (!json) {
        int n = snprintf(out, cap - 1, "%s %s %s ", ts, node_name, level_names[level]);
        pos = n < 0 ? 0 : (size_t)n >= cap - 1 ? cap - 2 : (size_t)n;
        for (const char *m = msg; *m && pos < cap - 1; m++) /* one event, one line */
            out[pos++] = (unsigned char)*m < 0x20 ? ' ' : *m;
        out[pos++] = '\n';
        return pos;
    }
    int n = snprintf(out, cap, "{\"time\":\"%s\",\"node\":\"", ts);
    pos = json_escape(out, (size_t)n, cap, 64, node_name);
    n = snprintf(out + pos, cap - pos, "\",\"level\":\"%s\",\"msg\":\"", level_names[level]);
    pos = json_escape(out, pos + (size_t)n, cap, 4, msg);
    memcpy(out + pos, "\"}\n", 3);
    return pos + 3;
}

void dsup_log(int level, const char *fmt, ...)
{
    if (level < dsup_log_level)
        return;
    char msg[2048], line[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    size_t len = dsup_log_format_line(line, sizeof line, level, (long long)now.tv_sec * 1000 + now.tv_nsec / 1000000,
                                      msg);
    for (size_t off = 0; off < len;) {
        ssize_t w = write(STDERR_FILENO, line + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;
        off += (size_t)w;
    }
}
