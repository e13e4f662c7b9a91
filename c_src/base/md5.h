/* md5.h — MD5 (RFC 1321), needed only for the distribution handshake digest. */
#ifndef DSUP_MD5_H
#define DSUP_MD5_H

#include <stddef.h>
#include <stdint.h>

void dsup_md5(const void *data, size_t len, uint8_t out[16]);

#endif
