/*
 * Forward declarations of sluice's core objects, so headers can refer to each
 * other's structs without including each other.
 */
#ifndef SLUICE_TYPES_H
#define SLUICE_TYPES_H

struct runtime;
struct worker;
struct client;
struct server;
struct pool;
struct listener;
struct config;
struct db_def;
struct user_def;
struct logger;

#endif
