/*
 * SHOW TENANTS and SHOW RATELIMITS: the rows of every tenant (limits,
 * clients, servers; token buckets and rates).  Tenant state is process-wide,
 * so the console's worker renders them alone, with no gather; show.c's SHOW
 * table calls these.
 */
#ifndef SLUICE_ADMIN_TENANTS_H
#define SLUICE_ADMIN_TENANTS_H

struct admin_conn;
struct admin_op;

void admin_render_tenants(struct admin_conn *conn, struct admin_op *op);
void admin_render_ratelimits(struct admin_conn *conn, struct admin_op *op);

#endif
