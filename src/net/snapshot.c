/*
 * Configuration snapshots; see snapshot.h.
 */
#include "net/snapshot.h"

#include <stdio.h>
#include <stdlib.h>

struct snapshot *snapshot_new(struct config *cfg, struct tls_ca_cache *cas, char *err, size_t len)
{
	struct snapshot *snap = malloc(sizeof(*snap));

	if (snap == NULL) {
		snprintf(err, len, "out of memory");
		config_free(cfg);
		return NULL;
	}
	if (tls_contexts_build(cfg, cas, &snap->tls, err, len) < 0) {
		config_free(cfg);
		free(snap);
		return NULL;
	}
	snap->cfg = cfg;
	atomic_init(&snap->refs, 1);
	return snap;
}

struct snapshot *snapshot_ref(struct snapshot *snap)
{
	atomic_fetch_add(&snap->refs, 1);
	return snap;
}

void snapshot_unref(struct snapshot *snap)
{
	if (atomic_fetch_sub(&snap->refs, 1) == 1) {
		tls_contexts_free(&snap->tls);
		config_free(snap->cfg);
		free(snap);
	}
}
