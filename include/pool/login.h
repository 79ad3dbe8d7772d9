/*
 * Client login: the startup packet (SSLRequest, CancelRequest, StartupMessage),
 * authentication against the auth_file, auth_query or a certificate, the
 * console or pool choice, tenant admission and the pool's first server
 * login.  The login is the handler of every new client; once authenticated
 * the client is handed to the relay, or to the console's handler.
 */
#ifndef SLUICE_LOGIN_H
#define SLUICE_LOGIN_H

#include "base/types.h"

/* Serves a client from its startup packet until it is authenticated. */
extern const struct client_handler login_client_handler;

#endif
