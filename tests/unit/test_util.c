/* SPDX-License-Identifier: BSD-2-Clause */
/* test_util.c — unit tests of registryd's small helpers (registry/base/util.c) with cmocka:
 * range-checked number parsing for flags, HOST:PORT splitting, RFC 3339 formatting,
 * constant-time comparison, SHA-256 and hex. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "base/util.h"

/* ---------------------------------------------------------------------------------- */
/* util_parse_int                                                                      */

static void test_parse_int_valid(void **state) {
    (void)state;
    long long v = -7;
    assert_int_equal(util_parse_int("0", 0, 10, &v), 0);
    assert_int_equal(v, 0);
    assert_int_equal(util_parse_int("10", 0, 10, &v), 0);
    assert_int_equal(v, 10);
    assert_int_equal(util_parse_int("-5", -10, 10, &v), 0);
    assert_int_equal(v, -5);
    assert_int_equal(util_parse_int("007", 0, 10, &v), 0);
    assert_int_equal(v, 7);
    assert_int_equal(util_parse_int("9223372036854775807", 0, INT64_MAX, &v), 0);
    assert_true(v == INT64_MAX);
    assert_int_equal(util_parse_int("-9223372036854775808", INT64_MIN, 0, &v), 0);
    assert_true(v == INT64_MIN);
}

static void test_parse_int_range(void **state) {
    (void)state;
    long long v = 42;
    assert_int_equal(util_parse_int("11", 0, 10, &v), -ERANGE);
    assert_int_equal(util_parse_int("-1", 0, 10, &v), -ERANGE);
    assert_int_equal(util_parse_int("0", 1, 65535, &v), -ERANGE);
    assert_int_equal(util_parse_int("65536", 1, 65535, &v), -ERANGE);
    assert_int_equal(util_parse_int("9223372036854775808", 0, INT64_MAX, &v), -ERANGE);
    assert_int_equal(util_parse_int("99999999999999999999999", 0, 10, &v), -ERANGE);
    assert_int_equal(util_parse_int("-99999999999999999999999", -10, 10, &v), -ERANGE);
    assert_int_equal(v, 42); /* untouched on error */
}

static void test_parse_int_garbage(void **state) {
    (void)state;
    static const char *const bad[] = {"", "abc", "12abc", "1.5", "1e3", "0x10", "10 ", "1 0",
                                      "--1", "+", "-", " "};
    long long v = 42;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (util_parse_int(bad[i], -1000, 1000, &v) != -EINVAL)
            fail_msg("util_parse_int(\"%s\") did not fail with -EINVAL", bad[i]);
    }
    assert_int_equal(util_parse_int(NULL, 0, 10, &v), -EINVAL);
    assert_int_equal(v, 42);
}

/* ---------------------------------------------------------------------------------- */
/* util_parse_seconds                                                                  */

static void test_parse_seconds_valid(void **state) {
    (void)state;
    uint64_t ms = 1;
    assert_int_equal(util_parse_seconds("0", 0, 100, &ms), 0);
    assert_int_equal(ms, 0);
    assert_int_equal(util_parse_seconds("10", 0, 100, &ms), 0);
    assert_int_equal(ms, 10000);
    assert_int_equal(util_parse_seconds("0.5", 0, 100, &ms), 0);
    assert_int_equal(ms, 500);
    assert_int_equal(util_parse_seconds("1.25", 0, 100, &ms), 0);
    assert_int_equal(ms, 1250);
    assert_int_equal(util_parse_seconds("0.001", 0, 100, &ms), 0);
    assert_int_equal(ms, 1);
    assert_int_equal(util_parse_seconds("300", 0, 86400, &ms), 0);
    assert_int_equal(ms, 300000);
    assert_int_equal(util_parse_seconds("86400", 0, 86400, &ms), 0);
    assert_int_equal(ms, 86400000);
}

static void test_parse_seconds_range(void **state) {
    (void)state;
    uint64_t ms = 7;
    assert_int_equal(util_parse_seconds("-1", 0, 100, &ms), -ERANGE);
    assert_int_equal(util_parse_seconds("100.5", 0, 100, &ms), -ERANGE);
    assert_int_equal(util_parse_seconds("0.05", 0.1, 100, &ms), -ERANGE);
    assert_int_equal(util_parse_seconds("1e400", 0, 100, &ms), -ERANGE);
    assert_int_equal(ms, 7);
}

static void test_parse_seconds_garbage(void **state) {
    (void)state;
    static const char *const bad[] = {"", "abc", "5s", "1.2.3", "nan", "NaN", " ", "1 ", "."};
    uint64_t ms = 7;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (util_parse_seconds(bad[i], 0, 1000, &ms) != -EINVAL)
            fail_msg("util_parse_seconds(\"%s\") did not fail with -EINVAL", bad[i]);
    }
    assert_int_equal(util_parse_seconds(NULL, 0, 10, &ms), -EINVAL);
    assert_int_equal(ms, 7);
}

/* Regression: util.h promises a "decimal number", but strtod also takes hexadecimal
 * floats, so "0x10" parsed as 16 s and "0x1p3" as 8 s. Fixed in 502e623. */
static void test_parse_seconds_hex_rejected(void **state) {
    (void)state;
    uint64_t ms = 7;
    assert_int_equal(util_parse_seconds("0x10", 0, 1000, &ms), -EINVAL);
    assert_int_equal(util_parse_seconds("0x1p3", 0, 1000, &ms), -EINVAL);
    assert_int_equal(ms, 7);
}

static void test_parse_seconds_infinity_rejected(void **state) {
    (void)state;
    uint64_t ms = 7;
    assert_true(util_parse_seconds("inf", 0, 1000, &ms) < 0);
    assert_true(util_parse_seconds("infinity", 0, 1000, &ms) < 0);
    assert_int_equal(ms, 7);
}

/* ---------------------------------------------------------------------------------- */
/* util_split_hostport                                                                 */

static void test_split_v4(void **state) {
    (void)state;
    char host[64];
    int port = -1;
    assert_int_equal(util_split_hostport("127.0.0.1:5380", host, sizeof host, &port), 0);
    assert_string_equal(host, "127.0.0.1");
    assert_int_equal(port, 5380);
    assert_int_equal(util_split_hostport("localhost:0", host, sizeof host, &port), 0);
    assert_string_equal(host, "localhost");
    assert_int_equal(port, 0); /* port 0: pick a free port */
    assert_int_equal(util_split_hostport("h:65535", host, sizeof host, &port), 0);
    assert_int_equal(port, 65535);
}

static void test_split_v6_brackets(void **state) {
    (void)state;
    char host[64];
    int port = -1;
    assert_int_equal(util_split_hostport("[::1]:5380", host, sizeof host, &port), 0);
    assert_string_equal(host, "::1");
    assert_int_equal(port, 5380);
    assert_int_equal(util_split_hostport("[2001:db8::1]:80", host, sizeof host, &port), 0);
    assert_string_equal(host, "2001:db8::1");
    assert_int_equal(port, 80);
}

static void test_split_rejects(void **state) {
    (void)state;
    static const char *const bad[] = {
        "127.0.0.1",      /* missing port */
        "127.0.0.1:",     /* empty port */
        ":80",            /* empty host */
        "[::1]",          /* missing port */
        "[::1]:",         /* empty port */
        "[::1]80",        /* no colon after ] */
        "[::1:80",        /* no ] */
        "[]:80",          /* empty v6 host */
        "::1:80",         /* bare v6 needs brackets */
        "::1",
        "h:65536",        /* port out of range */
        "h:-1",
        "h:80x",
        "h:8 0",
        "",
    };
    char host[64];
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int port = 1234;
        if (util_split_hostport(bad[i], host, sizeof host, &port) != -EINVAL)
            fail_msg("util_split_hostport(\"%s\") did not fail with -EINVAL", bad[i]);
        assert_int_equal(port, 1234);
    }
}

static void test_split_host_buffer_too_small(void **state) {
    (void)state;
    char host[8];
    int port = 0;
    assert_int_equal(util_split_hostport("1234567:1", host, sizeof host, &port), 0);
    assert_string_equal(host, "1234567");
    assert_int_equal(util_split_hostport("12345678:1", host, sizeof host, &port), -EINVAL);
    assert_int_equal(util_split_hostport("[1:2:3:4::]:1", host, sizeof host, &port), -EINVAL);
}

/* ---------------------------------------------------------------------------------- */
/* util_rfc3339, util_now_ms                                                           */

/* Shape "YYYY-MM-DDTHH:MM:SS.mmmZ", each field in range. */
static void assert_rfc3339(const char *s) {
    static const char shape[] = "dddd-dd-ddTdd:dd:dd.dddZ";
    if (strlen(s) != sizeof(shape) - 1)
        fail_msg("\"%s\" is not %zu characters", s, sizeof(shape) - 1);
    for (size_t i = 0; i < sizeof(shape) - 1; i++) {
        int ok = shape[i] == 'd' ? (s[i] >= '0' && s[i] <= '9') : s[i] == shape[i];
        if (!ok)
            fail_msg("\"%s\": character %zu should be '%c'", s, i, shape[i]);
    }
    int y, mo, d, h, mi, sec, ms;
    assert_int_equal(sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d.%3dZ", &y, &mo, &d, &h, &mi, &sec, &ms), 7);
    assert_true(mo >= 1 && mo <= 12);
    assert_true(d >= 1 && d <= 31);
    assert_true(h <= 23 && mi <= 59 && sec <= 60 && ms <= 999);
}

static void test_rfc3339_known_values(void **state) {
    (void)state;
    char out[UTIL_TIME_LEN];
    assert_string_equal(util_rfc3339(1700000000123, out), "2023-11-14T22:13:20.123Z");
    assert_string_equal(util_rfc3339(1, out), "1970-01-01T00:00:00.001Z");
    assert_string_equal(util_rfc3339(951782400000, out), "2000-02-29T00:00:00.000Z");
    assert_string_equal(util_rfc3339(253402300799999, out), "9999-12-31T23:59:59.999Z");
    assert_ptr_equal(util_rfc3339(1000, out), out);
}

static void test_rfc3339_never(void **state) {
    (void)state;
    char out[UTIL_TIME_LEN];
    memset(out, 'x', sizeof out);
    assert_string_equal(util_rfc3339(0, out), "");
    memset(out, 'x', sizeof out);
    assert_string_equal(util_rfc3339(-5, out), "");
}

static void test_rfc3339_shape_now(void **state) {
    (void)state;
    char out[UTIL_TIME_LEN];
    int64_t now = util_now_ms();
    assert_true(now > 1700000000000LL); /* after 2023 */
    assert_rfc3339(util_rfc3339(now, out));
    for (int64_t t = 1; t < 4102444800000LL; t = t * 3 + 7) /* up to 2100 */
        assert_rfc3339(util_rfc3339(t, out));
}

static void test_now_ms_monotone_enough(void **state) {
    (void)state;
    int64_t a = util_now_ms(), b = util_now_ms();
    assert_true(b >= a);
    assert_true(b - a < 1000);
}

/* ---------------------------------------------------------------------------------- */
/* util_ct_equal, util_sha256, util_hex, util_random                                   */

static void test_ct_equal(void **state) {
    (void)state;
    assert_int_equal(util_ct_equal("secret", "secret", 6), 1);
    assert_int_equal(util_ct_equal("secret", "secreT", 6), 0);
    assert_int_equal(util_ct_equal("Secret", "secret", 6), 0);
    assert_int_equal(util_ct_equal("secret", "secreT", 5), 1); /* only n bytes count */
    assert_int_equal(util_ct_equal("a\0b", "a\0c", 3), 0);     /* NUL is not an end */
    assert_int_equal(util_ct_equal("x", "y", 0), 1);
    unsigned char a[32], b[32];
    memset(a, 0x5A, sizeof a);
    memcpy(b, a, sizeof b);
    assert_int_equal(util_ct_equal(a, b, sizeof a), 1);
    b[31] ^= 1;
    assert_int_equal(util_ct_equal(a, b, sizeof a), 0);
}

static void test_sha256_abc(void **state) {
    (void)state;
    unsigned char d[32];
    char hex[65];
    assert_int_equal(util_sha256("abc", 3, d), 0);
    util_hex(d, sizeof d, hex);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

static void test_sha256_empty_and_long(void **state) {
    (void)state;
    unsigned char d[32];
    char hex[65];
    assert_int_equal(util_sha256("", 0, d), 0);
    util_hex(d, sizeof d, hex);
    assert_string_equal(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    static const char msg[] = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    assert_int_equal(util_sha256(msg, sizeof(msg) - 1, d), 0);
    util_hex(d, sizeof d, hex);
    assert_string_equal(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

static void test_hex(void **state) {
    (void)state;
    static const unsigned char in[] = {0x00, 0x01, 0x7f, 0x80, 0xab, 0xff};
    char out[2 * sizeof(in) + 1];
    memset(out, 'x', sizeof out);
    util_hex(in, sizeof in, out);
    assert_string_equal(out, "00017f80abff");
    util_hex(in, 0, out);
    assert_string_equal(out, "");
}

static void test_random_fills(void **state) {
    (void)state;
    unsigned char a[32], b[32], zero[32] = {0};
    memset(a, 0, sizeof a);
    memset(b, 0, sizeof b);
    assert_int_equal(util_random(a, sizeof a), 0);
    assert_int_equal(util_random(b, sizeof b), 0);
    /* 256 random bits equal to zero or to each other: probability 2^-256. */
    assert_true(memcmp(a, zero, sizeof a) != 0);
    assert_true(memcmp(a, b, sizeof a) != 0);
    assert_int_equal(util_random(a, 0), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_int_valid),
        cmocka_unit_test(test_parse_int_range),
        cmocka_unit_test(test_parse_int_garbage),
        cmocka_unit_test(test_parse_seconds_valid),
        cmocka_unit_test(test_parse_seconds_range),
        cmocka_unit_test(test_parse_seconds_garbage),
        cmocka_unit_test(test_parse_seconds_hex_rejected),
        cmocka_unit_test(test_parse_seconds_infinity_rejected),
        cmocka_unit_test(test_split_v4),
        cmocka_unit_test(test_split_v6_brackets),
        cmocka_unit_test(test_split_rejects),
        cmocka_unit_test(test_split_host_buffer_too_small),
        cmocka_unit_test(test_rfc3339_known_values),
        cmocka_unit_test(test_rfc3339_never),
        cmocka_unit_test(test_rfc3339_shape_now),
        cmocka_unit_test(test_now_ms_monotone_enough),
        cmocka_unit_test(test_ct_equal),
        cmocka_unit_test(test_sha256_abc),
        cmocka_unit_test(test_sha256_empty_and_long),
        cmocka_unit_test(test_hex),
        cmocka_unit_test(test_random_fills),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
