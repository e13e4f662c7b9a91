/* err.c — texts for dsup_err: one table, so a new code cannot get a text
 * without a name or the other way round. */
#include "err.h"

#include <stddef.h>

static const struct {
    int code;
    const char *name, *text;
} errs[] = {
    { DSUP_OK, "ok", "success" },
    { DSUP_ENOMEM, "enomem", "out of memory" },
    { DSUP_EINVAL, "einval", "invalid argument" },
    { DSUP_ENOTFOUND, "enotfound", "not found" },
    { DSUP_EEXIST, "eexist", "name already taken" },
    { DSUP_ENOPROC, "enoproc", "not a live local process" },
    { DSUP_EUNKNOWN_TYPE, "eunknown_type", "unknown worker type" },
    { DSUP_EREFUSED, "erefused", "init refused" },
    { DSUP_ENOTUP, "enotup", "node not up" },
    { DSUP_ETOOBIG, "etoobig", "too big" },
    { DSUP_ENOTCONN, "enotconn", "peer not connected" },
    { DSUP_ESYSTEM, "esystem", "system error" },
};

static int find(int err)
{
    for (size_t i = 0; i < sizeof errs / sizeof errs[0]; i++)
        if (errs[i].code == err)
            return (int)i;
    return -1;
}

const char *dsup_strerror(int err)
{
    int i = find(err);
    return i < 0 ? "unknown error" : errs[i].text;
}

const char *dsup_err_name(int err)
{
    int i = find(err);
    return i < 0 ? "eunknown" : errs[i].name;
}
