/*
 * SHOW TENANTS and SHOW RATELIMITS: the rows of every tenant (limits,
 * clients, servers; token buckets and rates).  Tenant state is process-wide,
 * so the console's worker renders them alone, with no gather; show.c's SHOW
 * table calls these.
 */
#ifndef SLUICE_ADMIN_TENANTS_H
#define SLUICE_ADMIN_TENANTS_H

struct console_conn;
struct console_op;

void tenants_render(struct console_conn *conn, struct console_op *op);
void tenants_render_ratelimits(struct console_conn *conn, struct console_op *op);

#endif
