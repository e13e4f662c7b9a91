/* log.c — one line per event: time, level, message. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

int dsup_log_level = DSUP_LOG_INFO;

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

void dsup_log(int level, const char *fmt, ...)
{
    if (level < dsup_log_level)
        return;
    if (level < 0 || level > 3)
        level = DSUP_LOG_ERROR;
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    char line[2048];
    int n = snprintf(line, sizeof line, "%02d:%02d:%02d.%03d [%s] ", tm.tm_hour, tm.tm_min,
                     tm.tm_sec, (int)(tv.tv_usec / 1000), level_names[level]);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s\n", line);
}
