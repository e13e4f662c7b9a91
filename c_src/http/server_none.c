/* server_none.c — a node built without h2o (make HTTP=no, or no libh2o-dev):
 * --http is refused with a clear message; the rest of the node is the same. */
#include <stdio.h>

#include "http/http.h"

const char dsup_status_html[] = "";
const size_t dsup_status_html_len = 0;

int dsup_http_configure(dsup_node *node, const char *arg, char *err, size_t errcap)
{
    snprintf(err, errcap, "this dsup-node was built without HTTP support (install libh2o-dev and rebuild; "
                          "README \"Metrics and status pages\")");
    return -1;
}

int dsup_http_start(dsup_node *node) { return 0; }
void dsup_http_stop(dsup_node *node) {}
void dsup_http_free(dsup_node *node) {}
