#ifndef CGRPCCORE_H
#define CGRPCCORE_H

/* libc first: grpc's port_platform.h defines _GNU_SOURCE before libc is parsed, which
   otherwise makes `fd_set` clash with Foundation's Dispatch module (primer P1). */
#include <sys/select.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/prctl.h>

#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/compression.h>
#include <grpc/slice.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>

/* GRPC_PROPAGATE_DEFAULTS is a macro Swift cannot import. */
static const uint32_t CGRPCCore_propagate_defaults = GRPC_PROPAGATE_DEFAULTS;

/* Function-like macros don't import. Slices are passed BY POINTER: slices of up to 23 bytes
   keep their bytes inline, so a pointer into a by-value copy would dangle. */
static inline const uint8_t *CGRPCCore_slice_start(const grpc_slice *s) { return GRPC_SLICE_START_PTR(*s); }
static inline size_t CGRPCCore_slice_length(const grpc_slice *s) { return GRPC_SLICE_LENGTH(*s); }

/* Names the calling thread (cut to 15 bytes). prctl is variadic, which Swift cannot call. */
static inline int CGRPCCore_name_current_thread(const char *name) { return prctl(PR_SET_NAME, name, 0, 0, 0); }

#endif
