/* node_ctrl.h — the node's own services (dsup_node, net_kernel, rex, global). */
#ifndef DSUP_NODE_CTRL_H
#define DSUP_NODE_CTRL_H

#include "dsup.h"

/* Before the node listens: the built-in names exist from the start. */
void dsup_node_ctrl_init(dsup_node *node);
void dsup_node_ctrl_free(dsup_node *node);
/* Registered with epmd: start dsup_node, dial --connect targets. */
void dsup_node_ctrl_ready(dsup_node *node);
void dsup_node_ctrl_stopping(dsup_node *node);
void dsup_node_ctrl_conn_up(dsup_node *node, const char *peer);
void dsup_node_ctrl_conn_down(dsup_node *node, const char *peer);
/* net_kernel, rex, global_name_server: names that live as long as the node
 * (monitors on them never fire while it is up). */
int dsup_node_ctrl_is_special(const dsup_node *node, const char *name);
/* The same by text, dsup_node included: names no one else may register. */
int dsup_node_ctrl_is_special_text(const char *name);
/* A REG_SEND to one of the names the node answers itself: 1 if handled. */
int dsup_node_ctrl_special(dsup_node *node, const char *name, const dsup_pid *sender, dsup_term msg);

#endif
