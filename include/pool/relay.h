/*
 * The relay: moves protocol messages between a client and its server by
 * header only.  Bodies move between evbuffers with evbuffer_remove_buffer;
 * the relay reads a body only for the messages that drive pooling: Z
 * (transaction status), E (SQLSTATE), S (parameters), copy-mode changes, and
 * the response types that retire outstanding requests.
 */
#ifndef SLUICE_RELAY_H
#define SLUICE_RELAY_H

#include <stdint.h>

#include "base/types.h"

/* Serves pooled clients once logged in: input, and CancelRequests. */
extern const struct client_handler relay_client_handler;
/* Server input while ACTIVE or RESETTING (replies dropped when there is no client). */
void relay_server_input(struct server *s);

/* Queue a request sluice itself sends to the server (injected Parse/Close). */
void relay_track_request(struct server *s, uint8_t type);

/* Output buffer sizes that trigger read suspension of the peer. */
#define RELAY_HIGH_WATERMARK (1024 * 1024)
#define RELAY_LOW_WATERMARK  (256 * 1024)
/*
 * A client with no server gets one only once it has sent a whole message of
 * up to this size (larger ones stream, watched by client_read_timeout), so a
 * client that stops halfway holds no server.
 */
#define RELAY_WHOLE_MAX (64 * 1024)
/* Input read ahead per connection before libevent stops reading. */
#define RELAY_READ_HIGH (512 * 1024)

#endif
