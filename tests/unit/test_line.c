/* SPDX-License-Identifier: BSD-2-Clause */
/* test_line.c — unit tests of the line front-end (registry/front/line/line.h) over a core
 * on the in-memory store, with libuv clients in the same loop. Everything listens and
 * connects on 127.0.0.1, the server on a free port (listen_port 0).
 *
 * The fixture (loop_util.h) starts and stops the server in registry/main.c's order and
 * asserts every handle is closed at the end (uv_loop_close == 0).
 */
#include "loop_util.h"

static void connection_that_cannot_be_allocated_is_closed_and_next_is_served(void **state) {
    fx *f = *state;
    fx_start_line(f);
    net__fail_allocs = 1;
    client *refused = cl_connect(f, 0);
    RUN_UNTIL(f, refused->eof || refused->read_error, "the server to close the connection");
    assert_int_equal(refused->read_error, 0);
    assert_true(refused->eof);
    assert_int_equal(refused->in_len, 0); /* closed without a word */
    assert_int_equal(net__fail_allocs, 0);
    client *served = cl_connect(f, 1);
    cl_send(served, "{\"op\":\"ping\"}\n");
    RUN_UNTIL(f, cl_lines(served) >= 1 || served->eof || served->read_error, "the ping reply");
    json_t *pong = cl_json(served, 0);
    if (pong == NULL)
        fail_msg("not a JSON line: \"%s\"", served->in);
    assert_true(json_is_true(json_object_get(pong, "ok")));
    assert_int_equal(json_object_size(pong), 1); /* {"ok":true} */
    json_decref(pong);
    cl_close(refused);
    cl_close(served);
    fx_finish(f);
}

/* Two connections that cannot be allocated, arriving together: the listener must go on
 * accepting (line.h: "they must be refused while the listener goes on accepting"). Both
 * are in the kernel's accept queue before the server's loop polls (a loopback connect
 * completes the handshake inside connect()), so the server meets the second while the
 * first is still being closed. */
static void two_unallocatable_connections_in_a_row_do_not_stop_the_listener(void **state) {
    fx *f = *state;
    fx_start_line(f);
    net__fail_allocs = 2;
    client *a = cl_connect(f, 0), *b = cl_connect(f, 1);
    RUN_UNTIL(f, a->eof || a->read_error || b->eof || b->read_error,
              "the server to close a refused connection");
    client *served = cl_connect(f, 2);
    cl_send(served, "{\"op\":\"ping\"}\n");
    RUN_UNTIL(f, cl_lines(served) >= 1 || served->eof || served->read_error,
              "the ping reply on a connection made after the refused ones");
    json_t *pong = cl_json(served, 0);
    if (pong == NULL)
        fail_msg("not a JSON line: \"%s\"", served->in);
    assert_true(json_is_true(json_object_get(pong, "ok")));
    json_decref(pong);
    RUN_UNTIL(f, (a->eof || a->read_error) && (b->eof || b->read_error),
              "the server to close both refused connections");
    assert_true(a->eof);
    assert_true(b->eof);
    assert_int_equal(a->in_len + b->in_len, 0);
    cl_close(a);
    cl_close(b);
    cl_close(served);
    fx_finish(f);
}

static void pipelined_lookup_sees_the_register_before_it(void **state) {
    fx *f = *state;
    fx_start_line(f);
    client *c = cl_connect(f, 0);
    /* One write, two requests: the lookup is read while the register waits for its
     * commit. */
    cl_send(c, "{\"op\":\"register\",\"service\":\"web\",\"host\":\"127.0.0.1\",\"port\":8080,"
               "\"check\":\"none\",\"request_id\":1}\n"
               "{\"op\":\"lookup\",\"service\":\"web\",\"request_id\":2}\n");
    RUN_UNTIL(f, cl_lines(c) >= 2 || c->eof || c->read_error, "two replies");
    json_t *first = cl_json(c, 0), *second = cl_json(c, 1);
    if (first == NULL || second == NULL)
        fail_msg("not two JSON lines: \"%s\"", c->in);
    /* Replies in request order: the register's first. */
    assert_int_equal(json_integer_value(json_object_get(first, "request_id")), 1);
    assert_true(json_is_true(json_object_get(first, "ok")));
    const char *id = json_string_value(json_object_get(first, "id"));
    assert_non_null(id);
    assert_int_equal(strlen(id), STORE_ID_LEN);
    assert_non_null(json_object_get(first, "token"));
    /* The lookup saw the new instance (read-your-writes). */
    assert_int_equal(json_integer_value(json_object_get(second, "request_id")), 2);
    if (!json_is_true(json_object_get(second, "ok")))
        fail_msg("lookup failed: %s", c->in);
    assert_string_equal(json_string_value(json_object_get(second, "host")), "127.0.0.1");
    assert_int_equal(json_integer_value(json_object_get(second, "port")), 8080);
    json_t *instances = json_object_get(second, "instances");
    assert_int_equal(json_array_size(instances), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(instances, 0), "id")), id);
    json_decref(first);
    json_decref(second);
    cl_close(c);
    fx_finish(f);
}

#define T(name) cmocka_unit_test_setup_teardown(name, fx_setup, fx_teardown)

int main(void) {
    const struct CMUnitTest tests[] = {
        T(connection_that_cannot_be_allocated_is_closed_and_next_is_served),
        T(two_unallocatable_connections_in_a_row_do_not_stop_the_listener),
        T(pipelined_lookup_sees_the_register_before_it),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
