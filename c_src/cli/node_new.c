/* node_new.c — dsup_node_new: a node on the caller's loop, with the same
 * services as dsup-node (pg scopes, supervisor instances), configured from a
 * dsup_node_config instead of the command line. Lives in the top layer
 * because it plugs the services into the runtime (README, Architecture). */
#include "node_new.h"

#include <stdio.h>
#include <string.h>

#include "cli_args.h"
#include "intern.h"
#include "log.h"
#include "node.h"
#include "pg.h"
#include "sup.h"

int dsup_node_services_init(dsup_node *node)
{
    return dsup_pg_service_init(node) < 0 || dsup_sup_service_init(node) < 0 ? -1 : 0;
}

dsup_node *dsup_node_new(void *uv_loop, const dsup_node_config *cfg)
{
    char err[256];
    if (!uv_loop || !cfg || !cfg->name || !cfg->cookie || !cfg->cookie[0] ||
        dsup_cli_check_node(cfg->name, err, sizeof err) < 0)
        return NULL;
    const char *at = strchr(cfg->name, '@');
    dsup_node *n = dsup_node_alloc(uv_loop);
    size_t alen = (size_t)(at - cfg->name);
    if (alen >= sizeof n->alive || strlen(at + 1) >= sizeof n->host || strlen(cfg->cookie) >= sizeof n->cookie ||
        cfg->listen_port < 0 || cfg->listen_port > 65535) {
        dsup_node_free(n);
        return NULL;
    }
    memcpy(n->alive, cfg->name, alen);
    n->alive[alen] = 0;
    snprintf(n->host, sizeof n->host, "%s", at + 1);
    snprintf(n->cookie, sizeof n->cookie, "%s", cfg->cookie);
    n->name = dsup_intern_str(n->names, cfg->name);
    dsup_log_set_node_once(n->name);
    n->port = cfg->listen_port;
    n->listen_address = cfg->listen_address ? dsup_intern_str(n->names, cfg->listen_address) : NULL;
    n->visible = cfg->visible;
    n->no_epmd = cfg->no_epmd;
    if (cfg->ticktime_ms)
        n->ticktime_ms = cfg->ticktime_ms;
    if (dsup_node_services_init(n) < 0) {
        dsup_node_free(n);
        return NULL;
    }
    return n;
}
