/*
 * The console's control commands (PAUSE, RESUME, SUSPEND, DISABLE, ENABLE,
 * RECONNECT, KILL, KILL_CLIENT, WAIT_CLOSE, SHUTDOWN, RELOAD, SET, RESET QUERIES) and the
 * per-worker console state they change: each worker's copy of which
 * databases are paused or disabled and whether everything is paused or
 * suspended.  The console's command table (console.c) calls them; each
 * answers through the console's replies, on its worker or after an op.
 */
#ifndef SLUICE_ADMIN_CONTROL_H
#define SLUICE_ADMIN_CONTROL_H

#include "admin/console.h"

enum console_result control_pause(struct console_conn *conn, struct console_lexer *lx);
enum console_result control_resume(struct console_conn *conn, struct console_lexer *lx);
enum console_result control_suspend(struct console_conn *conn, struct console_lexer *lx);
enum console_result control_disable(struct console_conn *conn, struct console_lexer *lx);
enum console_result control_enable(struct console_conn *conn, struct console_lexer *lx);
enum console_result control_reconnect(struct console_conn *conn, struct console_lexer *lx);
enum console_result control_kill(struct console_conn *conn, struct console_lexer *lx);
enum console_result control_kill_client(struct console_conn *conn, struct console_lexer *lx);
enum console_result control_wait_close(struct console_conn *conn, struct console_lexer *lx);
enum console_result control_shutdown(struct console_conn *conn, struct console_lexer *lx);
enum console_result control_reload(struct console_conn *conn, struct console_lexer *lx);
enum console_result control_set(struct console_conn *conn, struct console_lexer *lx);
/* RESET QUERIES: every worker's query insights start again from nothing. */
enum console_result control_reset(struct console_conn *conn, struct console_lexer *lx);

#endif
