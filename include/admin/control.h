/*
 * The console's control commands (PAUSE, RESUME, SUSPEND, DISABLE, ENABLE,
 * RECONNECT, KILL, KILL_CLIENT, WAIT_CLOSE, SHUTDOWN, RELOAD, SET) and the
 * per-worker console state they change: each worker's copy of which
 * databases are paused or disabled and whether everything is paused or
 * suspended.  The console's command table (console.c) calls them; each
 * answers through the console's replies, on its worker or after an op.
 */
#ifndef SLUICE_ADMIN_CONTROL_H
#define SLUICE_ADMIN_CONTROL_H

#include <stdbool.h>

#include "admin/console.h"

enum admin_result admin_pause(struct admin_conn *conn, struct admin_lexer *lx);
enum admin_result admin_resume(struct admin_conn *conn, struct admin_lexer *lx);
enum admin_result admin_suspend(struct admin_conn *conn, struct admin_lexer *lx);
enum admin_result admin_disable(struct admin_conn *conn, struct admin_lexer *lx);
enum admin_result admin_enable(struct admin_conn *conn, struct admin_lexer *lx);
enum admin_result admin_reconnect(struct admin_conn *conn, struct admin_lexer *lx);
enum admin_result admin_kill(struct admin_conn *conn, struct admin_lexer *lx);
enum admin_result admin_kill_client(struct admin_conn *conn, struct admin_lexer *lx);
enum admin_result admin_wait_close(struct admin_conn *conn, struct admin_lexer *lx);
enum admin_result admin_shutdown(struct admin_conn *conn, struct admin_lexer *lx);
enum admin_result admin_reload(struct admin_conn *conn, struct admin_lexer *lx);
enum admin_result admin_set(struct admin_conn *conn, struct admin_lexer *lx);

/* Does a database argument (NULL = all) cover `dbname`? */
bool admin_target_matches(const char *target, const char *dbname);

#endif
