/*
 * test_json.c - core/json.h (api/json_doc.c over cJSON): parsing and its
 * errors, the NULL-safe accessors, gq_json_int, the builder, and printing
 * (exact text, exact numbers, strings that round-trip).
 */
#include <float.h>
#include <limits.h>
#include <stdint.h>
#include <string.h>

#include "json.h"
#include "test.h"

/* A non-NULL pointer the parser must overwrite with NULL when it fails. */
static char sentinel;
#define NOT_NULL ((gq_json *)(void *)&sentinel)

/* Parse a NUL-terminated text; NULL on failure (message in *e). */
static gq_json *parse(const char *text, gq_err *e)
{
    gq_json *j = NULL;
    if (gq_json_parse(&j, text, strlen(text), e) < 0)
        return NULL;
    return j;
}

#define CHECK_STR(a, b) do { const char *a_ = (a), *b_ = (b); \
    CHECK_MSG(a_ && b_ && strcmp(a_, b_) == 0, "'%s' != '%s'", a_ ? a_ : "(null)", \
              b_ ? b_ : "(null)"); } while (0)

/* Expect a parse failure whose message contains want. */
#define CHECK_PARSE_FAILS(text, len, want) do { gq_json *j_ = NOT_NULL; gq_err e_ = GQ_ERR_INIT; \
    int rc_ = gq_json_parse(&j_, (text), (len), &e_); CHECK_EQ_INT(rc_, GQ_EINVAL); \
    CHECK(j_ == NULL); CHECK_MSG(strstr(e_.msg, (want)) != NULL, "message '%s' lacks '%s'", \
              e_.msg, (want)); if (rc_ == 0) gq_json_free(j_); } while (0)

/* The byte offset in "invalid JSON at byte N", or -1. */
static long error_byte(const char *msg)
{
    const char *p = strstr(msg, "at byte ");
    return p ? strtol(p + 8, NULL, 10) : -1;
}

/* Expect a parse failure reported at want or the byte after it. */
#define CHECK_PARSE_NEAR(text, want) do { gq_json *j_ = NULL; gq_err e_ = GQ_ERR_INIT; \
    long at_; \
    CHECK_EQ_INT(gq_json_parse(&j_, (text), strlen(text), &e_), GQ_EINVAL); \
    at_ = error_byte(e_.msg); \
    CHECK_MSG(at_ == (want) || at_ == (want) + 1, "'%s': message '%s', want byte %d", (text), \
              e_.msg, (want)); } while (0)

static void test_json__parse_and_accessors(void)
{
    gq_err e = GQ_ERR_INIT;
    const char *text = "{\"s\": \"x\", \"n\": 1.5, \"i\": -3, \"t\": true, \"f\": false,"
                       " \"z\": null, \"a\": [1, 2, 3], \"o\": {\"k\": \"v\"}}";
    gq_json *j = parse(text, &e);
    const gq_json *m;
    static const char *const keys[] = { "s", "n", "i", "t", "f", "z", "a", "o" };
    size_t k = 0;

    CHECK_MSG(j != NULL, "%s", e.msg);
    if (!j)
        return;
    CHECK_EQ_INT(gq_json_type_of(j), GQ_JSON_OBJECT);
    CHECK_EQ_INT(gq_json_size(j), 8);
    CHECK_STR(gq_json_string(gq_json_get(j, "s")), "x");
    CHECK(gq_json_number(gq_json_get(j, "n")) == 1.5);
    CHECK(gq_json_number(gq_json_get(j, "i")) == -3);
    CHECK_EQ_INT(gq_json_bool(gq_json_get(j, "t")), 1);
    CHECK_EQ_INT(gq_json_bool(gq_json_get(j, "f")), 0);
    CHECK(gq_json_is_null(gq_json_get(j, "z")));
    CHECK(!gq_json_is_null(gq_json_get(j, "f")));
    CHECK_EQ_INT(gq_json_type_of(gq_json_get(j, "z")), GQ_JSON_NULL);
    CHECK_EQ_INT(gq_json_type_of(gq_json_get(j, "a")), GQ_JSON_ARRAY);
    CHECK_EQ_INT(gq_json_size(gq_json_get(j, "a")), 3);
    CHECK_STR(gq_json_string(gq_json_get(gq_json_get(j, "o"), "k")), "v");

    /* members in document order, with their keys */
    for (m = gq_json_first(j); m; m = gq_json_next(m), k++)
        if (k < 8)
            CHECK_STR(gq_json_key(m), keys[k]);
    CHECK_EQ_INT(k, 8);
    /* array elements in order, without keys */
    k = 0;
    for (m = gq_json_first(gq_json_get(j, "a")); m; m = gq_json_next(m)) {
        k++;
        CHECK(gq_json_number(m) == (double)k);
        CHECK(gq_json_key(m) == NULL);
    }
    CHECK_EQ_INT(k, 3);

    /* wrong-type reads give the "none" value, never a crash */
    CHECK(gq_json_string(gq_json_get(j, "n")) == NULL);
    CHECK(isnan(gq_json_number(gq_json_get(j, "s"))));
    CHECK_EQ_INT(gq_json_bool(gq_json_get(j, "i")), -1);
    CHECK_EQ_INT(gq_json_bool(gq_json_get(j, "z")), -1);
    CHECK(gq_json_get(gq_json_get(j, "a"), "k") == NULL);    /* get on an array */
    CHECK(gq_json_get(j, "missing") == NULL);
    CHECK(gq_json_get(j, "S") == NULL);                       /* keys are case-sensitive */
    CHECK(gq_json_get(gq_json_get(gq_json_get(j, "missing"), "deeper"), "still") == NULL);
    CHECK_EQ_INT(gq_json_size(gq_json_get(j, "s")), 0);
    CHECK(gq_json_first(gq_json_get(j, "n")) == NULL);

    CHECK_STR(gq_json_type_name(GQ_JSON_NULL), "null");
    CHECK_STR(gq_json_type_name(GQ_JSON_BOOL), "boolean");
    CHECK_STR(gq_json_type_name(GQ_JSON_NUMBER), "number");
    CHECK_STR(gq_json_type_name(GQ_JSON_STRING), "string");
    CHECK_STR(gq_json_type_name(GQ_JSON_ARRAY), "array");
    CHECK_STR(gq_json_type_name(GQ_JSON_OBJECT), "object");
    CHECK_STR(gq_json_type_name(GQ_JSON_INVALID), "missing");
    gq_json_free(j);

    /* scalars are documents too; the text needs no NUL after len */
    {
        const char buf[] = { '4', '2', 'x' };
        CHECK_EQ_INT(gq_json_parse(&j, buf, 2, &e), 0);
        CHECK(gq_json_number(j) == 42);
        gq_json_free(j);
    }
}

static void test_json__null_safety(void)
{
    gq_json *o = gq_json_new_object(), *child;

    CHECK_EQ_INT(gq_json_type_of(NULL), GQ_JSON_INVALID);
    CHECK(gq_json_get(NULL, "k") == NULL);
    CHECK(gq_json_get(o, NULL) == NULL);
    CHECK(gq_json_first(NULL) == NULL);
    CHECK(gq_json_next(NULL) == NULL);
    CHECK_EQ_INT(gq_json_size(NULL), 0);
    CHECK(gq_json_key(NULL) == NULL);
    CHECK(gq_json_string(NULL) == NULL);
    CHECK(isnan(gq_json_number(NULL)));
    CHECK_EQ_INT(gq_json_bool(NULL), -1);
    CHECK_EQ_INT(gq_json_is_null(NULL), 0);
    CHECK(gq_json_copy(NULL) == NULL);
    CHECK(gq_json_print(NULL, 0) == NULL);
    CHECK(gq_json_new_string(NULL) == NULL);
    gq_json_free(NULL);
    gq_json_free_text(NULL);
    gq_json_remove(NULL, "k");
    gq_json_remove(o, "absent");

    /* adding NULL is the out-of-memory signal of a failed constructor */
    CHECK_EQ_INT(gq_json_add(o, "k", NULL), GQ_ENOMEM);
    /* adding to nothing, or with the wrong key kind, frees the child (ASan checks) */
    CHECK_EQ_INT(gq_json_add(NULL, "k", gq_json_new_number(1)), GQ_EINVAL);
    CHECK_EQ_INT(gq_json_add(o, NULL, gq_json_new_number(1)), GQ_EINVAL);
    child = gq_json_new_array();
    CHECK_EQ_INT(gq_json_add(child, "k", gq_json_new_number(1)), GQ_EINVAL);
    CHECK_EQ_INT(gq_json_size(child), 0);
    gq_json_free(child);
    child = gq_json_new_number(3);
    CHECK_EQ_INT(gq_json_add(child, NULL, gq_json_new_number(1)), GQ_EINVAL);
    gq_json_free(child);
    CHECK_EQ_INT(gq_json_size(o), 0);
    gq_json_free(o);
}

static void test_json__duplicate_keys_are_kept(void)
{
    gq_err e = GQ_ERR_INIT;
    gq_json *j = parse("{\"a\": 1, \"b\": 0, \"a\": 2}", &e);
    const gq_json *m;
    int seen = 0;
    double sum = 0;

    CHECK_MSG(j != NULL, "%s", e.msg);
    if (!j)
        return;
    CHECK(gq_json_number(gq_json_get(j, "a")) == 1);   /* the first */
    CHECK_EQ_INT(gq_json_size(j), 3);
    for (m = gq_json_first(j); m; m = gq_json_next(m))
        if (strcmp(gq_json_key(m), "a") == 0) {
            seen++;
            sum += gq_json_number(m);
        }
    CHECK_EQ_INT(seen, 2);
    CHECK(sum == 3);
    gq_json_free(j);
}

static void test_json__trailing_data_rejected(void)
{
    gq_err e = GQ_ERR_INIT;
    gq_json *j = NULL;

    CHECK_PARSE_FAILS("{} x", 4, "byte 3");
    CHECK_PARSE_FAILS("[1] [2]", 7, "byte 4");
    CHECK_PARSE_FAILS("1 2", 3, "unexpected data");
    CHECK_PARSE_FAILS("{\"a\":1}}", 8, "byte 7");
    /* trailing whitespace is fine */
    CHECK_EQ_INT(gq_json_parse(&j, "{} \r\n\t ", 7, &e), 0);
    CHECK(j != NULL);
    gq_json_free(j);
    /* only len bytes are read: what follows them does not matter */
    j = NULL;
    CHECK_EQ_INT(gq_json_parse(&j, "[1]garbage", 3, &e), 0);
    CHECK_EQ_INT(gq_json_size(j), 1);
    gq_json_free(j);
}

static void test_json__error_names_byte_offset(void)
{
    gq_err e = GQ_ERR_INIT;
    gq_json *j = NOT_NULL;
    const char *bad = "{\"a\": 1, \"b\": }";           /* '}' at byte 14 */

    CHECK_EQ_INT(gq_json_parse(&j, bad, strlen(bad), &e), GQ_EINVAL);
    CHECK(j == NULL);
    CHECK_MSG(strstr(e.msg, "invalid JSON at byte 14") != NULL, "%s", e.msg);
    CHECK_MSG(strstr(e.msg, "near \"}\"") != NULL, "%s", e.msg);
    CHECK_EQ_INT(e.code, GQ_EINVAL);

    /* cJSON reports some errors one byte past the culprit */
    CHECK_PARSE_NEAR("[1, 2,, 3]", 6);
    CHECK_PARSE_NEAR("{\"k\" 1}", 5);
    CHECK_PARSE_NEAR("{'a': 1}", 1);
    CHECK_PARSE_NEAR("[1, 2, 3, x]", 10);
    CHECK_PARSE_FAILS("", 0, "empty document");
    CHECK_PARSE_FAILS("\"unterminated", 13, "invalid JSON");
    CHECK_PARSE_FAILS("[tru]", 5, "invalid JSON");

    /* the excerpt is printable, one line */
    {
        const char ctl[] = "[1, \x01\n\xff]";
        CHECK_EQ_INT(gq_json_parse(&j, ctl, sizeof(ctl) - 1, &e), GQ_EINVAL);
        CHECK(strchr(e.msg, '\n') == NULL);
        CHECK(strchr(e.msg, '\x01') == NULL);
        CHECK(strchr(e.msg, '\xff') == NULL);
    }
    /* a truncated document */
    CHECK_PARSE_FAILS("{\"a\": [1, 2", 11, "invalid JSON");
}

static char *repeat(char c, size_t n)
{
    char *s = malloc(n + 1);
    if (s) {
        memset(s, c, n);
        s[n] = '\0';
    }
    return s;
}

/* depth levels of [ ... ] or {"a": ... } around 0 */
static char *nested(size_t depth, int objects)
{
    size_t len = objects ? depth * 6 + 1 + depth : depth * 2 + 1;
    char *s = malloc(len + 1), *p = s;
    if (!s)
        return NULL;
    for (size_t i = 0; i < depth; i++) {
        if (objects) {
            memcpy(p, "{\"a\":", 5);
            p += 5;
        } else {
            *p++ = '[';
        }
    }
    *p++ = '0';
    for (size_t i = 0; i < depth; i++)
        *p++ = objects ? '}' : ']';
    *p = '\0';
    return s;
}

static void test_json__deep_nesting_refused(void)
{
    gq_err e = GQ_ERR_INIT;
    gq_json *j = NULL;
    char *s = repeat('[', 100000);

    CHECK(s != NULL);
    if (!s)
        return;
    CHECK_EQ_INT(gq_json_parse(&j, s, strlen(s), &e), GQ_EINVAL);
    CHECK(j == NULL);
    free(s);

    s = repeat('{', 100000);
    if (s) {
        CHECK_EQ_INT(gq_json_parse(&j, s, strlen(s), &e), GQ_EINVAL);
        free(s);
    }

    /* the limit: 1000 levels parse, 1001 do not */
    for (int objects = 0; objects <= 1; objects++) {
        s = nested(1000, objects);
        CHECK(s != NULL);
        if (!s)
            return;
        CHECK_EQ_INT(gq_json_parse(&j, s, strlen(s), &e), 0);
        CHECK(j != NULL);
        gq_json_free(j);
        j = NULL;
        free(s);
        s = nested(1001, objects);
        if (!s)
            return;
        CHECK_EQ_INT(gq_json_parse(&j, s, strlen(s), &e), GQ_EINVAL);
        CHECK(j == NULL);
        free(s);
    }
}

static void test_json__int(void)
{
    gq_err e = GQ_ERR_INIT;
    gq_json *j = parse("{\"a\": 42, \"b\": 42.0, \"c\": 1.5, \"d\": \"7\", \"e\": 300, \"f\": -1,"
                       " \"g\": 1e20, \"h\": 9007199254740992, \"i\": -9007199254740992,"
                       " \"k\": null, \"l\": true, \"m\": 1e400}", &e);
    long long v = -77;

    CHECK_MSG(j != NULL, "%s", e.msg);
    if (!j)
        return;
    CHECK_EQ_INT(gq_json_int(&v, gq_json_get(j, "a"), 0, 100, "a", &e), 0);
    CHECK_EQ_INT(v, 42);
    v = -77;
    CHECK_EQ_INT(gq_json_int(&v, gq_json_get(j, "b"), 0, 100, "b", &e), 0);
    CHECK_EQ_INT(v, 42);

    v = -77;
    CHECK_EQ_INT(gq_json_int(&v, gq_json_get(j, "c"), 0, 100, "field c", &e), GQ_EINVAL);
    CHECK_MSG(strstr(e.msg, "field c must be an integer (got 1.5)") != NULL, "%s", e.msg);
    CHECK_EQ_INT(v, -77);   /* untouched on failure */

    CHECK_EQ_INT(gq_json_int(&v, gq_json_get(j, "d"), 0, 100, "d", &e), GQ_EINVAL);
    CHECK_MSG(strstr(e.msg, "d must be an integer (got string)") != NULL, "%s", e.msg);
    CHECK_EQ_INT(gq_json_int(&v, gq_json_get(j, "k"), 0, 100, "k", &e), GQ_EINVAL);
    CHECK_MSG(strstr(e.msg, "(got null)") != NULL, "%s", e.msg);
    CHECK_EQ_INT(gq_json_int(&v, gq_json_get(j, "l"), 0, 100, "l", &e), GQ_EINVAL);
    CHECK_MSG(strstr(e.msg, "(got boolean)") != NULL, "%s", e.msg);

    CHECK_EQ_INT(gq_json_int(&v, gq_json_get(j, "e"), 0, 255, "bits", &e), GQ_EINVAL);
    CHECK_MSG(strstr(e.msg, "bits must be between 0 and 255 (got 300)") != NULL, "%s", e.msg);
    CHECK_EQ_INT(gq_json_int(&v, gq_json_get(j, "f"), 0, 255, "bits", &e), GQ_EINVAL);
    CHECK_MSG(strstr(e.msg, "(got -1)") != NULL, "%s", e.msg);
    CHECK_EQ_INT(v, -77);
    /* the bounds themselves are in range */
    CHECK_EQ_INT(gq_json_int(&v, gq_json_get(j, "e"), 300, 300, "e", &e), 0);
    CHECK_EQ_INT(v, 300);

    CHECK_EQ_INT(gq_json_int(&v, gq_json_get(j, "g"), LLONG_MIN, LLONG_MAX, "g", &e), GQ_EINVAL);
    CHECK_EQ_INT(gq_json_int(&v, gq_json_get(j, "m"), LLONG_MIN, LLONG_MAX, "m", &e), GQ_EINVAL);
    CHECK_EQ_INT(gq_json_int(&v, gq_json_get(j, "h"), LLONG_MIN, LLONG_MAX, "h", &e), 0);
    CHECK_EQ_INT(v, 9007199254740992LL);
    CHECK_EQ_INT(gq_json_int(&v, gq_json_get(j, "i"), LLONG_MIN, LLONG_MAX, "i", &e), 0);
    CHECK_EQ_INT(v, -9007199254740992LL);

    CHECK_EQ_INT(gq_json_int(&v, gq_json_get(j, "absent"), 0, 1, "num_bits", &e), GQ_EINVAL);
    CHECK_MSG(strstr(e.msg, "num_bits is missing") != NULL, "%s", e.msg);
    CHECK_EQ_INT(gq_json_int(&v, NULL, 0, 1, "x", &e), GQ_EINVAL);
    gq_json_free(j);
}

static gq_json *small_object(void)
{
    gq_json *o = gq_json_new_object(), *a = gq_json_new_array(), *inner = gq_json_new_object();
    int rc = 0;

    rc |= gq_json_add(a, NULL, gq_json_new_number(1));
    rc |= gq_json_add(a, NULL, gq_json_new_string("two"));
    rc |= gq_json_add(inner, "d", gq_json_new_string("e"));
    rc |= gq_json_add(o, "name", gq_json_new_string("x"));
    rc |= gq_json_add(o, "n", gq_json_new_number(3));
    rc |= gq_json_add(o, "f", gq_json_new_number(0.5));
    rc |= gq_json_add(o, "b", gq_json_new_bool(7));
    rc |= gq_json_add(o, "z", gq_json_new_null());
    rc |= gq_json_add(o, "a", a);
    rc |= gq_json_add(o, "c", inner);
    rc |= gq_json_add(o, "empty", gq_json_new_array());
    if (rc != 0) {
        gq_json_free(o);
        return NULL;
    }
    return o;
}

static void test_json__builder_and_print(void)
{
    gq_json *o = small_object();
    char *txt;

    CHECK(o != NULL);
    if (!o)
        return;
    txt = gq_json_print(o, 0);
    CHECK_STR(txt, "{\"name\":\"x\",\"n\":3,\"f\":0.5,\"b\":true,\"z\":null,\"a\":[1,\"two\"],"
                   "\"c\":{\"d\":\"e\"},\"empty\":[]}");
    gq_json_free_text(txt);

    txt = gq_json_print(o, 2);
    CHECK_STR(txt, "{\n"
                   "  \"name\": \"x\",\n"
                   "  \"n\": 3,\n"
                   "  \"f\": 0.5,\n"
                   "  \"b\": true,\n"
                   "  \"z\": null,\n"
                   "  \"a\": [1, \"two\"],\n"
                   "  \"c\": {\n"
                   "    \"d\": \"e\"\n"
                   "  },\n"
                   "  \"empty\": []\n"
                   "}");
    CHECK(txt && strchr(txt, '\t') == NULL);
    gq_json_free_text(txt);

    /* adding an existing key replaces it in place */
    CHECK_EQ_INT(gq_json_add(o, "n", gq_json_new_number(4)), 0);      /* middle */
    CHECK_EQ_INT(gq_json_add(o, "name", gq_json_new_string("y")), 0); /* first */
    CHECK_EQ_INT(gq_json_add(o, "empty", gq_json_new_bool(0)), 0);    /* last */
    CHECK_EQ_INT(gq_json_add(o, "new", gq_json_new_number(5)), 0);    /* then append */
    gq_json_remove(o, "f");
    gq_json_remove(o, "z");
    txt = gq_json_print(o, 0);
    CHECK_STR(txt, "{\"name\":\"y\",\"n\":4,\"b\":true,\"a\":[1,\"two\"],\"c\":{\"d\":\"e\"},"
                   "\"empty\":false,\"new\":5}");
    gq_json_free_text(txt);
    CHECK_EQ_INT(gq_json_size(o), 7);

    /* a copy is deep */
    {
        gq_json *c = gq_json_copy(o);
        CHECK(c != NULL);
        CHECK_EQ_INT(gq_json_add(gq_json_get(c, "c"), "d", gq_json_new_string("changed")), 0);
        CHECK_STR(gq_json_string(gq_json_get(gq_json_get(o, "c"), "d")), "e");
        CHECK_STR(gq_json_string(gq_json_get(gq_json_get(c, "c"), "d")), "changed");
        gq_json_free(c);
    }

    /* an empty object and a lone scalar */
    {
        gq_json *empty = gq_json_new_object(), *s = gq_json_new_string("hi");
        txt = gq_json_print(empty, 0);
        CHECK_STR(txt, "{}");
        gq_json_free_text(txt);
        txt = gq_json_print(s, 2);
        CHECK_STR(txt, "\"hi\"");
        gq_json_free_text(txt);
        gq_json_free(empty);
        gq_json_free(s);
    }
    gq_json_free(o);
}

/* The compact text of one number. */
static char *print_number(double v)
{
    gq_json *n = gq_json_new_number(v);
    char *txt = gq_json_print(n, 0);
    gq_json_free(n);
    return txt;
}

static void test_json__numbers_print_exactly(void)
{
    static const struct { double v; const char *text; } cases[] = {
        { 9007199254740992.0, "9007199254740992" },
        { 4000000000.0, "4000000000" },
        { -4000000000.0, "-4000000000" },
        { 2147483647.0, "2147483647" },
        { 2147483648.0, "2147483648" },
        { -2147483648.0, "-2147483648" },
        { 1e16, "10000000000000000" },
        { 1e15, "1000000000000000" },
        { 123456789012345678.0, "123456789012345680" },
        { 1e20, "100000000000000000000" },
        { 1e21, "1e+21" },
        { 1.5e300, "1.5e+300" },
        { 0, "0" },
        { -0.0, "-0" },
        { 3, "3" },
        { 0.5, "0.5" },
        { 0.1, "0.1" },
        { 1e-06, "1e-06" },
        { 0.30000000000000004, "0.30000000000000004" },
        { 1e300, "1e+300" },
    };
    gq_err e = GQ_ERR_INIT;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *txt = print_number(cases[i].v);
        CHECK_STR(txt, cases[i].text);
        gq_json_free_text(txt);
    }

    /* parse -> print keeps big integers, compact and pretty */
    {
        const char *doc = "{\"size\":9007199254740992,\"offsets\":[4000000000,8000000000]}";
        gq_json *j = parse(doc, &e);
        char *txt = gq_json_print(j, 0);
        CHECK_STR(txt, doc);
        gq_json_free_text(txt);
        txt = gq_json_print(j, 2);
        CHECK_STR(txt,
                  "{\n  \"size\": 9007199254740992,\n  \"offsets\": [4000000000, 8000000000]\n}");
        gq_json_free_text(txt);
        /* a member prints alone, without its key or siblings */
        txt = gq_json_print(gq_json_get(j, "offsets"), 0);
        CHECK_STR(txt, "[4000000000,8000000000]");
        gq_json_free_text(txt);
        txt = gq_json_print(gq_json_get(j, "size"), 2);
        CHECK_STR(txt, "9007199254740992");
        gq_json_free_text(txt);
        /* printing did not change the tree */
        CHECK(gq_json_number(gq_json_get(j, "size")) == 9007199254740992.0);
        CHECK_EQ_INT(gq_json_type_of(gq_json_get(j, "size")), GQ_JSON_NUMBER);
        gq_json_free(j);
    }

    /* random doubles of every magnitude read back bit for bit */
    {
        unsigned long long seed = 12345;
        gq_json *a = gq_json_new_array(), *back = NULL;
        double vals[2000];
        size_t n = 0;
        char *txt;

        while (n < sizeof(vals) / sizeof(vals[0])) {
            uint64_t bits = test_rand_u64(&seed);
            double d;
            if (n % 4 == 0)   /* integers near and past 2^53 as well */
                d = (double)(long long)(bits >> (11 + n % 13)) * (n % 8 ? 1 : -1);
            else
                memcpy(&d, &bits, sizeof(d));
            if (!isfinite(d))
                continue;
            vals[n++] = d;
            CHECK_EQ_INT(gq_json_add(a, NULL, gq_json_new_number(d)), 0);
        }
        txt = gq_json_print(a, 0);
        CHECK(txt != NULL);
        CHECK_EQ_INT(gq_json_parse(&back, txt, txt ? strlen(txt) : 0, &e), 0);
        CHECK_EQ_INT(gq_json_size(back), n);
        {
            size_t i = 0, bad = 0;
            for (const gq_json *m = gq_json_first(back); m && i < n; m = gq_json_next(m), i++) {
                double got = gq_json_number(m);
                if (memcmp(&vals[i], &got, sizeof(double)) != 0 && bad++ < 3)
                    fprintf(stderr, "  %.17g came back as %.17g\n", vals[i], got);
            }
            CHECK_EQ_INT(bad, 0);
        }
        gq_json_free_text(txt);
        gq_json_free(back);
        gq_json_free(a);
    }
}

static void test_json__strings_round_trip(void)
{
    gq_err e = GQ_ERR_INIT;
    /* quotes, backslash, control characters, 2/3/4-byte UTF-8 */
    const char *raw = "say \"hi\"\\ now\nnext\tline\r\x01 caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac "
                      "\xf0\x9f\x98\x80 /";
    gq_json *o = gq_json_new_object(), *back = NULL;
    char *txt;

    CHECK_EQ_INT(gq_json_add(o, raw, gq_json_new_string(raw)), 0);   /* as key and value */
    for (int indent = 0; indent <= 2; indent += 2) {
        txt = gq_json_print(o, indent);
        CHECK(txt != NULL);
        if (!txt)
            break;
        /* escaped: no raw quote inside the string, no raw control byte anywhere */
        CHECK(strstr(txt, "\\\"hi\\\"") != NULL);
        CHECK(strstr(txt, "\\n") != NULL && strstr(txt, "\\t") != NULL);
        CHECK(strchr(txt, '\t') == NULL && strchr(txt, '\r') == NULL);
        CHECK(strchr(txt, '\x01') == NULL);
        if (indent == 0)
            CHECK(strchr(txt, '\n') == NULL);
        CHECK_EQ_INT(gq_json_parse(&back, txt, strlen(txt), &e), 0);
        CHECK_STR(gq_json_string(gq_json_get(back, raw)), raw);
        CHECK_STR(gq_json_key(gq_json_first(back)), raw);
        gq_json_free(back);
        back = NULL;
        gq_json_free_text(txt);
    }
    gq_json_free(o);

    /* escapes in the input, \u forms included (a surrogate pair too) */
    {
        const char *doc = "[\"a\\\"b\\\\c\\/d\\n\\u00e9\\u65e5\\ud83d\\ude00\\t\"]";
        gq_json *j = parse(doc, &e);
        CHECK_MSG(j != NULL, "%s", e.msg);
        CHECK_STR(gq_json_string(gq_json_first(j)),
                  "a\"b\\c/d\n\xc3\xa9\xe6\x97\xa5\xf0\x9f\x98\x80\t");
        gq_json_free(j);
    }
}

static void test_json__append(void)
{
    gq_json *o = gq_json_new_object(), *a = gq_json_new_array();
    char *txt;

    CHECK_EQ_INT(gq_json_append(o, "b", gq_json_new_number(1)), 0);
    CHECK_EQ_INT(gq_json_append(o, "a", gq_json_new_string("x")), 0);
    /* not an object, and a missing child: errors, and the child is freed */
    CHECK_EQ_INT(gq_json_append(a, "k", gq_json_new_number(2)), GQ_EINVAL);
    CHECK_EQ_INT(gq_json_append(o, "c", NULL), GQ_ENOMEM);
    txt = gq_json_print(o, 0);
    CHECK(txt && strcmp(txt, "{\"b\":1,\"a\":\"x\"}") == 0);
    gq_json_free_text(txt);
    gq_json_free(o);
    gq_json_free(a);
}

int main(void)
{
    t_prog = "test_json";
    RUN(test_json__parse_and_accessors);
    RUN(test_json__null_safety);
    RUN(test_json__duplicate_keys_are_kept);
    RUN(test_json__trailing_data_rejected);
    RUN(test_json__error_names_byte_offset);
    RUN(test_json__deep_nesting_refused);
    RUN(test_json__int);
    RUN(test_json__builder_and_print);
    RUN(test_json__numbers_print_exactly);
    RUN(test_json__strings_round_trip);
    RUN(test_json__append);
    return test_report();
}
