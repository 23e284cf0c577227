/* SPDX-License-Identifier: BSD-2-Clause */
/* etcd.h — test hooks of the etcd backend (registry/store/etcd.c), opened with
 * store_open("etcd:URL[,URL...]", ...). */
#ifndef REGISTRY_STORE_ETCD_H
#define REGISTRY_STORE_ETCD_H

#include "store/store.h"

/* While on, every call the writer's half makes to etcd fails at once as if no endpoint
 * answered (store_apply: STORE_EIO with a message naming etcd). Returns 0, or -EINVAL
 * when st is not an etcd store. */
int store_etcd_test_break(store *st, int on);

#endif
