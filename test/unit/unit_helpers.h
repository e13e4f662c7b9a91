/* unit_helpers.h — shared by the cmocka unit tests.
 * Reference values come from the real `erl` on this machine at test time:
 * unit_erl() runs an Erlang expression and hands back what it printed. */
#ifndef DSUP_UNIT_HELPERS_H
#define DSUP_UNIT_HELPERS_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

/* Run `erl -noshell -eval EXPR` (EXPR must halt()) and return its stdout as
 * a malloc'd NUL-terminated string (caller frees), or NULL on failure. */
static inline char *unit_erl(const char *expr)
{
    char path[] = "/tmp/dsup_unit_erl_XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0)
        return NULL;
    FILE *f = fdopen(fd, "w");
    fputs(expr, f);
    fclose(f);
    char cmd[512];
    snprintf(cmd, sizeof cmd,
             "erl -noshell -eval '{ok,B}=file:read_file(\"%s\"),"
             "{ok,T,_}=erl_scan:string(binary_to_list(B)),"
             "{ok,E}=erl_parse:parse_exprs(T),"
             "erl_eval:exprs(E,[])'", path);
    FILE *p = popen(cmd, "r");
    if (!p) {
        unlink(path);
        return NULL;
    }
    size_t cap = 1 << 16, len = 0;
    char *out = malloc(cap);
    size_t n;
    while ((n = fread(out + len, 1, cap - len - 1, p)) > 0) {
        len += n;
        if (cap - len < 4096) {
            cap *= 2;
            out = realloc(out, cap);
        }
    }
    out[len] = 0;
    int rc = pclose(p);
    unlink(path);
    if (rc != 0) {
        free(out);
        return NULL;
    }
    return out;
}

/* test/ref/<name>, found relative to this directory (or $DSUP_REF_DIR). */
static inline void unit_ref_path(char *buf, size_t n, const char *name)
{
    const char *env = getenv("DSUP_REF_DIR");
    if (env) {
        snprintf(buf, n, "%s/%s", env, name);
        return;
    }
    const char *me = __FILE__;
    const char *slash = strrchr(me, '/');
    int dir = slash ? (int)(slash - me) : 0;
    snprintf(buf, n, "%.*s%s../ref/%s", dir, me, slash ? "/" : "", name);
}

/* A whole file, malloc'd (one spare byte for a NUL); NULL when unreadable. */
static inline unsigned char *unit_slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    struct stat st;
    if (fstat(fileno(f), &st) != 0) {
        fclose(f);
        return NULL;
    }
    unsigned char *b = malloc((size_t)st.st_size + 1);
    *len = fread(b, 1, (size_t)st.st_size, f);
    fclose(f);
    return b;
}

#endif
