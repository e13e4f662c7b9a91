/* cli_args.h — pure parsers for command-line values (no I/O, no node state):
 * strict numbers, addresses, node names and --supervisor specs. Each returns
 * 0, or -1 with a one-line reason in `err` (for "dsup-node: OPTION: reason"). */
#ifndef DSUP_CLI_ARGS_H
#define DSUP_CLI_ARGS_H

#include <stddef.h>

#include "dsup.h"

/* A decimal integer in [min, max], the whole string (no sign games, no
 * trailing text, no overflow). */
int dsup_cli_parse_int(const char *s, long long min, long long max, long long *out, char *err, size_t errcap);

/* An IPv4 or IPv6 address literal (no host names: nothing may block). */
int dsup_cli_parse_address(const char *s, char *err, size_t errcap);

/* NAME@HOST with both parts non-empty and at most 255 bytes in all. */
int dsup_cli_check_node(const char *s, char *err, size_t errcap);

/* The keys --supervisor takes, for messages. */
extern const char dsup_cli_sup_keys[];

/* "Name,key=value,..." into the instance atom (Elixir alias rules) and the
 * keyword-list term start_link/1 takes. `opts` is always initialised (free it
 * with ei_x_free, also on error); every key and value is checked here, so a
 * spec that parses is one the supervisor accepts. */
int dsup_cli_sup_parse(const char *arg, char *name, size_t cap, ei_x_buff *opts, char *err, size_t errcap);

#endif
