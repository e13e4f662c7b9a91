/* log.h — leveled logging to stderr; the level is set from --log-level. */
#ifndef DSUP_LOG_H
#define DSUP_LOG_H

#include "dsup.h"

extern int dsup_log_level;
int dsup_log_level_parse(const char *s); /* -1 when unknown */

#define LOG_DEBUG(...) do { if (dsup_log_level <= DSUP_LOG_DEBUG) dsup_log(DSUP_LOG_DEBUG, __VA_ARGS__); } while (0)
#define LOG_INFO(...)  dsup_log(DSUP_LOG_INFO, __VA_ARGS__)
#define LOG_WARN(...)  dsup_log(DSUP_LOG_WARN, __VA_ARGS__)
#define LOG_ERROR(...) dsup_log(DSUP_LOG_ERROR, __VA_ARGS__)

#endif
