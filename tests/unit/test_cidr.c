/* SPDX-License-Identifier: BSD-2-Clause */
/* test_cidr.c — unit tests of the health checker's address rule (registry/base/cidr.c)
 * with cmocka: parsing, the default deny list, allow lists, IPv4-mapped IPv6. Pure: no
 * address here is ever connected to. */
#include <arpa/inet.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "base/cidr.h"

static cidr_rule defaults(void) {
    cidr_rule r;
    memset(&r, 0, sizeof(r));
    cidr_default_deny(&r.deny);
    return r;
}

static int allowed(const cidr_rule *r, const char *ip) {
    const cidr *why = NULL;
    int a = cidr_allowed_text(r, ip, &why);
    assert_true(a == 0 || a == 1);
    return a;
}

static void test_default_deny_refuses_metadata_multicast_broadcast_unspecified(void **state) {
    (void)state;
    cidr_rule r = defaults();
    const char *refused[] = {"169.254.169.254", "169.254.0.1", "fe80::1", "febf::1",
                             "224.0.0.1", "239.255.255.250", "ff02::1", "255.255.255.255",
                             "0.0.0.0", "::"};
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++)
        assert_int_equal(allowed(&r, refused[i]), 0);
}

static void test_default_deny_lets_ordinary_addresses_through(void **state) {
    (void)state;
    cidr_rule r = defaults();
    const char *fine[] = {"127.0.0.1", "10.1.2.3", "192.168.0.1", "8.8.8.8", "::1",
                          "2001:db8::1", "169.253.255.255", "169.255.0.0", "fec0::1"};
    for (size_t i = 0; i < sizeof(fine) / sizeof(fine[0]); i++)
        assert_int_equal(allowed(&r, fine[i]), 1);
}

static void test_ipv4_mapped_ipv6_is_judged_as_ipv4(void **state) {
    (void)state;
    cidr_rule r = defaults();
    assert_int_equal(allowed(&r, "::ffff:169.254.169.254"), 0);
    assert_int_equal(allowed(&r, "::ffff:127.0.0.1"), 1);
    struct sockaddr_in6 sa;
    memset(&sa, 0, sizeof(sa));
    sa.sin6_family = AF_INET6;
    inet_pton(AF_INET6, "::ffff:224.0.0.5", &sa.sin6_addr);
    const cidr *why = NULL;
    assert_int_equal(cidr_allowed(&r, (struct sockaddr *)&sa, &why), 0);
    assert_non_null(why);
    assert_string_equal(why->text, "224.0.0.0/4");
}

static void test_deny_names_the_range(void **state) {
    (void)state;
    cidr_rule r = defaults();
    const cidr *why = NULL;
    assert_int_equal(cidr_allowed_text(&r, "169.254.169.254", &why), 0);
    assert_non_null(why);
    assert_string_equal(why->text, "169.254.0.0/16");
}

static void test_allow_list_limits_and_deny_still_wins(void **state) {
    (void)state;
    cidr_rule r = defaults();
    char msg[128];
    assert_int_equal(cidr_parse_list("10.0.0.0/8,169.254.0.0/16", &r.allow, msg, sizeof(msg)), 0);
    assert_int_equal(allowed(&r, "10.9.9.9"), 1);
    const cidr *why = (const cidr *)1;
    assert_int_equal(cidr_allowed_text(&r, "192.168.1.1", &why), 0);
    assert_null(why); /* refused for not being allowed: no deny range to name */
    assert_int_equal(allowed(&r, "169.254.169.254"), 0);
}

static void test_none_empties_a_list(void **state) {
    (void)state;
    cidr_rule r = defaults();
    char msg[128];
    assert_int_equal(cidr_parse_list("none", &r.deny, msg, sizeof(msg)), 0);
    assert_int_equal(r.deny.n, 0);
    assert_int_equal(allowed(&r, "169.254.169.254"), 1);
}

static void test_prefix_edges(void **state) {
    (void)state;
    cidr_rule r;
    memset(&r, 0, sizeof(r));
    char msg[128];
    assert_int_equal(cidr_parse_list("10.1.2.128/25,2001:db8::/33,1.2.3.4", &r.deny, msg,
                                     sizeof(msg)), 0);
    assert_int_equal(allowed(&r, "10.1.2.127"), 1);
    assert_int_equal(allowed(&r, "10.1.2.128"), 0);
    assert_int_equal(allowed(&r, "10.1.2.255"), 0);
    assert_int_equal(allowed(&r, "2001:db8:7fff::1"), 0);
    assert_int_equal(allowed(&r, "2001:db8:8000::1"), 1);
    assert_int_equal(allowed(&r, "1.2.3.4"), 0);
    assert_int_equal(allowed(&r, "1.2.3.5"), 1);
    assert_int_equal(cidr_parse_list("0.0.0.0/0", &r.deny, msg, sizeof(msg)), 0);
    assert_int_equal(allowed(&r, "8.8.8.8"), 0);
    assert_int_equal(allowed(&r, "::1"), 1); /* an IPv4 range says nothing of IPv6 */
}

static void test_bad_lists_are_named(void **state) {
    (void)state;
    cidr_list l;
    char msg[128];
    const char *bad[] = {"", "10.0.0.0/33", "::/129", "10.0.0.0/", "10.0.0.0/x", "host.example",
                         "10.0.0.0/8,", "1.2.3.4/8/8"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        msg[0] = '\0';
        assert_int_equal(cidr_parse_list(bad[i], &l, msg, sizeof(msg)), -1);
        assert_true(strstr(msg, "is not an address") != NULL);
    }
}

static void test_hostnames_are_not_judged_as_text(void **state) {
    (void)state;
    cidr_rule r = defaults();
    const cidr *why;
    assert_int_equal(cidr_allowed_text(&r, "localhost", &why), -1);
}

static void test_list_text(void **state) {
    (void)state;
    cidr_list l;
    char msg[128], out[256];
    assert_int_equal(cidr_parse_list("10.0.0.0/8,::1", &l, msg, sizeof(msg)), 0);
    cidr_list_text(&l, out, sizeof(out));
    assert_string_equal(out, "10.0.0.0/8,::1");
    l.n = 0;
    cidr_list_text(&l, out, sizeof(out));
    assert_string_equal(out, "none");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_default_deny_refuses_metadata_multicast_broadcast_unspecified),
        cmocka_unit_test(test_default_deny_lets_ordinary_addresses_through),
        cmocka_unit_test(test_ipv4_mapped_ipv6_is_judged_as_ipv4),
        cmocka_unit_test(test_deny_names_the_range),
        cmocka_unit_test(test_allow_list_limits_and_deny_still_wins),
        cmocka_unit_test(test_none_empties_a_list),
        cmocka_unit_test(test_prefix_edges),
        cmocka_unit_test(test_bad_lists_are_named),
        cmocka_unit_test(test_hostnames_are_not_judged_as_text),
        cmocka_unit_test(test_list_text),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
