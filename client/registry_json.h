/* SPDX-License-Identifier: BSD-2-Clause */
/* registry_json.h — the parts of libregclient that take or give jansson values: any
 * request as a JSON object, and the registry's statistics. Including it makes the
 * `struct json_t *reply` fields of registry_client.h's results jansson's json_t too.
 *
 * Link: pkg-config --cflags --libs registry-client jansson.
 */
#ifndef REGISTRY_JSON_H
#define REGISTRY_JSON_H

#include <jansson.h>

#include "registry_client.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Sends `req` (a JSON object, borrowed; "auth" is added when set) and reads its reply
 * within the connection's timeout. Whenever a reply object was decoded, *resp is a new
 * reference to it (caller decrefs), error replies included; else *resp is NULL. Returns
 * 0 for {"ok":true,...}; -ENOENT (REGC_NOT_FOUND) or -EREMOTEIO (REGC_REMOTE) for
 * {"ok":false,...} with err->code and err->message from the registry; -EPROTO
 * (REGC_PROTOCOL) for a reply that is not such an object. resp may be NULL. */
int regc_request(regc_conn *c, json_t *req, json_t **resp, regc_error *err);

/* Statistics: the registry's open-ended figures. *stats is a new reference to the whole
 * reply object (caller decrefs). */
int regc_stats(regc_conn *c, json_t **stats, regc_error *err);

#ifdef __cplusplus
}
#endif

#endif
