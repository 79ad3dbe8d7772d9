/*
 * SQLSTATE codes sluice sends on its own behalf, the console's included: the
 * one table, so no other file spells a code.  Names follow PostgreSQL's
 * errcodes appendix (a few older ones are shortened, noted below); grouped by
 * class.  docs/errors.md says which stage uses which, with what severity.
 */
#ifndef SLUICE_PROTO_SQLSTATE_H
#define SLUICE_PROTO_SQLSTATE_H

/* Class 00, 01: not errors (NoticeResponse codes). */
#define SQLSTATE_SUCCESSFUL_COMPLETION "00000"
#define SQLSTATE_WARNING               "01000"

/* Class 08: connection exception. */
#define SQLSTATE_CONNECTION_EXCEPTION "08000"
#define SQLSTATE_CONNECTION_FAILURE   "08006"
#define SQLSTATE_PROTOCOL_VIOLATION   "08P01"

/* Class 0A, 22, 25: feature, data and transaction state. */
#define SQLSTATE_FEATURE_NOT_SUPPORTED       "0A000"
#define SQLSTATE_INVALID_PARAMETER_VALUE     "22023"
#define SQLSTATE_IDLE_IN_TRANSACTION_TIMEOUT "25P03" /* idle_in_transaction_session_timeout */
#define SQLSTATE_TRANSACTION_TIMEOUT         "25P04" /* transaction_timeout (Postgres 17) */

/* Class 28, 3D: authorization and database name. */
#define SQLSTATE_INVALID_AUTHORIZATION "28000" /* invalid_authorization_specification */
#define SQLSTATE_INVALID_PASSWORD      "28P01"
#define SQLSTATE_INVALID_CATALOG_NAME  "3D000"

/* Class 42: syntax error or access rule violation (the console). */
#define SQLSTATE_INSUFFICIENT_PRIVILEGE "42501"
#define SQLSTATE_SYNTAX_ERROR           "42601"
#define SQLSTATE_UNDEFINED_OBJECT       "42704"

/* Class 53, 54, 55: resources, limits, object state. */
#define SQLSTATE_TOO_MANY_CONNECTIONS             "53300"
#define SQLSTATE_CONFIGURATION_LIMIT              "53400" /* configuration_limit_exceeded */
#define SQLSTATE_PROGRAM_LIMIT_EXCEEDED           "54000"
#define SQLSTATE_OBJECT_NOT_IN_PREREQUISITE_STATE "55000"
#define SQLSTATE_CANT_CHANGE_RUNTIME_PARAM        "55P02"

/* Class 57: operator intervention. */
#define SQLSTATE_QUERY_CANCELED       "57014"
#define SQLSTATE_ADMIN_SHUTDOWN       "57P01"
#define SQLSTATE_CANNOT_CONNECT_NOW   "57P03"
#define SQLSTATE_IDLE_SESSION_TIMEOUT "57P05"

/* Class F0, XX: configuration file, internal. */
#define SQLSTATE_CONFIG_FILE_ERROR "F0000"
#define SQLSTATE_INTERNAL_ERROR    "XX000"

#endif
