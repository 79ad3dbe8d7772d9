/*
 * The console's SHOW command: PgBouncer's column names and order with
 * sluice's own columns appended, the rendering of every SHOW's rows (from
 * the census of admin/census.h, or rows each worker renders for SHOW CLIENTS
 * and SERVERS), SHOW LATENCY, and SHOW of one option.
 */
#ifndef SLUICE_ADMIN_SHOW_H
#define SLUICE_ADMIN_SHOW_H

#include "admin/console.h"

enum console_result show_statement(struct console_conn *conn, struct console_lexer *lx);

#endif
