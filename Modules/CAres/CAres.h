#ifndef CARES_SHIM_H
#define CARES_SHIM_H

/* c-ares, Debian's libc-ares-dev: the pool's DNS lookups (A, AAAA and SRV, over UDP with EDNS
   and TCP when an answer is truncated) and the parsing of their answers. */
#include <sys/select.h>
#include <poll.h>
#include <ares.h>
#include <ares_nameser.h>

/* The class and type of an SRV query (RFC 1035, RFC 2782). */
static const int CAres_class_in = 1;
static const int CAres_type_srv = 33;

/* Function-like macros do not import. */
static inline int CAres_socket_readable(int bits, int index) { return ARES_GETSOCK_READABLE(bits, index) != 0; }
static inline int CAres_socket_writable(int bits, int index) { return ARES_GETSOCK_WRITABLE(bits, index) != 0; }

#endif
