/* epmd.h — non-blocking epmd client on the node's libuv loop: register this
 * node (ALIVE2, connection kept open for the node's lifetime) and look up a
 * peer's distribution port (PORT_PLEASE2). Starts `epmd -daemon` when none
 * answers at registration time. ERL_EPMD_PORT is honoured like erl does. */
#ifndef DSUP_EPMD_H
#define DSUP_EPMD_H

#include <stdint.h>
#include <uv.h>

int dsup_epmd_port(void);

/* status 0 and the creation on success; negative libuv/epmd error otherwise. */
typedef void (*dsup_epmd_reg_cb)(void *arg, int status, uint32_t creation);
/* A registration, one per node (NULL: the name is too long). */
typedef struct dsup_epmd_reg dsup_epmd_reg;
dsup_epmd_reg *dsup_epmd_register(uv_loop_t *loop, const char *alive, int port, int hidden, dsup_epmd_reg_cb cb,
                                  void *arg);
void dsup_epmd_unregister(dsup_epmd_reg *reg);
void dsup_epmd_reg_free(dsup_epmd_reg *reg);
/* 1 while epmd holds our registration (its connection is open). */
int dsup_epmd_registered(const dsup_epmd_reg *reg);

/* Look up `alive` at the epmd on `addr` (its port is replaced by the epmd
 * port). status 0 with the node's port and highest version on success;
 * DSUP_EPMD_NOT_REGISTERED when epmd does not know the name; UV_ETIMEDOUT
 * when no answer came within timeout_ms; another libuv error otherwise.
 * The callback always runs exactly once (unless the call returns -1). */
#define DSUP_EPMD_NOT_REGISTERED (-100000)
typedef void (*dsup_epmd_port_cb)(void *arg, int status, int port, int version);
int dsup_epmd_port_please(uv_loop_t *loop, const struct sockaddr_storage *addr, const char *alive,
                          unsigned timeout_ms, dsup_epmd_port_cb cb, void *arg);

#endif
