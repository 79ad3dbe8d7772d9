/*
 * A refcounted, immutable configuration snapshot shared by all threads: the
 * parsed config and the TLS contexts built from it.  A reload builds a new
 * one and hands it to every worker; the old one is freed by its last holder.
 */
#ifndef SLUICE_SNAPSHOT_H
#define SLUICE_SNAPSHOT_H

#include <stdatomic.h>
#include <stddef.h>

#include "config/config.h"
#include "net/tls.h"

struct snapshot {
	struct config *cfg;      /* never modified once published */
	struct tls_contexts tls; /* built from cfg: certificates are re-read on reload */
	_Atomic int refs;        /* one per holder (runtime, each worker) */
};

/*
 * Takes cfg (freed on failure too); NULL with `err` when the TLS files do not
 * load.  `cas` keeps the CA stores of the last build (tls_contexts_build).
 */
struct snapshot *snapshot_new(struct config *cfg, struct tls_ca_cache *cas, char *err, size_t len);
struct snapshot *snapshot_ref(struct snapshot *snap);
void snapshot_unref(struct snapshot *snap);

#endif
