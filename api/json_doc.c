/*
 * json_doc.c - core/json.h over cJSON.
 *
 * core/ reads and writes JSON files (safetensors headers, configs,
 * tokenizers, Hub replies) but must not see cJSON, so it talks to this
 * adapter through core/json.h; the adapter is the only place that maps
 * gq_json nodes to cJSON nodes (they are the same pointers, cast).
 */
#include "json.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define C(j) ((cJSON *)(j))
#define CC(j) ((const cJSON *)(j))
#define G(c) ((gq_json *)(c))

int gq_json_parse(gq_json **out, const char *text, size_t len, gq_err *e)
{
    const char *end = NULL;
    cJSON *root;

    *out = NULL;
    root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (!root) {
        size_t pos = end && end >= text && end <= text + len ? (size_t)(end - text) : 0;
        char excerpt[24];
        size_t n = len - pos < sizeof(excerpt) - 1 ? len - pos : sizeof(excerpt) - 1;
        for (size_t i = 0; i < n; i++) {
            unsigned char c = (unsigned char)text[pos + i];
            excerpt[i] = c >= 0x20 && c < 0x7f ? (char)c : '?';
        }
        excerpt[n] = '\0';
        if (len == 0)
            return GQ_FAIL(e, GQ_EINVAL, "invalid JSON: empty document");
        return GQ_FAIL(e, GQ_EINVAL, "invalid JSON at byte %zu near \"%s\"", pos, excerpt);
    }
    /* cJSON stops after the first value; anything but whitespace after it is an error */
    if (end) {
        const char *p = end;
        while (p < text + len && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r' || *p == '\0'))
            p++;
        if (p < text + len) {
            cJSON_Delete(root);
            return GQ_FAIL(e, GQ_EINVAL, "invalid JSON: unexpected data at byte %zu after the value",
                           (size_t)(p - text));
        }
    }
    *out = G(root);
    return 0;
}

void gq_json_free(gq_json *root)
{
    cJSON_Delete(C(root));
}

gq_json_type gq_json_type_of(const gq_json *j)
{
    const cJSON *c = CC(j);
    if (!c)
        return GQ_JSON_INVALID;
    switch (c->type & 0xFF) {
    case cJSON_NULL: return GQ_JSON_NULL;
    case cJSON_False:
    case cJSON_True: return GQ_JSON_BOOL;
    case cJSON_Number: return GQ_JSON_NUMBER;
    case cJSON_String: return GQ_JSON_STRING;
    case cJSON_Array: return GQ_JSON_ARRAY;
    case cJSON_Object: return GQ_JSON_OBJECT;
    default: return GQ_JSON_INVALID;
    }
}

const char *gq_json_type_name(gq_json_type t)
{
    switch (t) {
    case GQ_JSON_NULL: return "null";
    case GQ_JSON_BOOL: return "boolean";
    case GQ_JSON_NUMBER: return "number";
    case GQ_JSON_STRING: return "string";
    case GQ_JSON_ARRAY: return "array";
    case GQ_JSON_OBJECT: return "object";
    default: return "missing";
    }
}

gq_json *gq_json_get(const gq_json *obj, const char *key)
{
    if (!obj || !cJSON_IsObject(CC(obj)))
        return NULL;
    return G(cJSON_GetObjectItemCaseSensitive(CC(obj), key));
}

gq_json *gq_json_first(const gq_json *container)
{
    if (!container || !(cJSON_IsArray(CC(container)) || cJSON_IsObject(CC(container))))
        return NULL;
    return G(CC(container)->child);
}

gq_json *gq_json_next(const gq_json *item)
{
    return item ? G(CC(item)->next) : NULL;
}

size_t gq_json_size(const gq_json *container)
{
    size_t n = 0;
    for (const gq_json *c = gq_json_first(container); c; c = gq_json_next(c))
        n++;
    return n;
}

const char *gq_json_key(const gq_json *member)
{
    return member ? CC(member)->string : NULL;
}

const char *gq_json_string(const gq_json *j)
{
    return j && cJSON_IsString(CC(j)) ? CC(j)->valuestring : NULL;
}

double gq_json_number(const gq_json *j)
{
    return j && cJSON_IsNumber(CC(j)) ? CC(j)->valuedouble : NAN;
}

int gq_json_bool(const gq_json *j)
{
    if (!j || !cJSON_IsBool(CC(j)))
        return -1;
    return cJSON_IsTrue(CC(j)) ? 1 : 0;
}

int gq_json_is_null(const gq_json *j)
{
    return j && cJSON_IsNull(CC(j));
}

int gq_json_int(long long *out, const gq_json *j, long long min, long long max, const char *what,
                gq_err *e)
{
    double v;
    if (!j)
        return GQ_FAIL(e, GQ_EINVAL, "%s is missing", what);
    if (!cJSON_IsNumber(CC(j)))
        return GQ_FAIL(e, GQ_EINVAL, "%s must be an integer (got %s)", what,
                       gq_json_type_name(gq_json_type_of(j)));
    v = CC(j)->valuedouble;
    if (!(v == floor(v)) || fabs(v) > 9007199254740992.0)
        return GQ_FAIL(e, GQ_EINVAL, "%s must be an integer (got %g)", what, v);
    if (v < (double)min || v > (double)max)
        return GQ_FAIL(e, GQ_EINVAL, "%s must be between %lld and %lld (got %.0f)", what, min, max,
                       v);
    *out = (long long)v;
    return 0;
}

gq_json *gq_json_new_object(void)
{
    return G(cJSON_CreateObject());
}

gq_json *gq_json_new_array(void)
{
    return G(cJSON_CreateArray());
}

gq_json *gq_json_new_string(const char *s)
{
    return s ? G(cJSON_CreateString(s)) : NULL;
}

gq_json *gq_json_new_number(double v)
{
    return G(cJSON_CreateNumber(v));
}

gq_json *gq_json_new_bool(int v)
{
    return G(cJSON_CreateBool(v ? 1 : 0));
}

gq_json *gq_json_new_null(void)
{
    return G(cJSON_CreateNull());
}

gq_json *gq_json_copy(const gq_json *j)
{
    return j ? G(cJSON_Duplicate(CC(j), 1)) : NULL;
}

int gq_json_add(gq_json *container, const char *key, gq_json *child)
{
    cJSON *c = C(container);
    if (!child)
        return GQ_ENOMEM;
    if (!c) {
        cJSON_Delete(C(child));
        return GQ_EINVAL;
    }
    if (cJSON_IsObject(c) && key) {
        if (cJSON_GetObjectItemCaseSensitive(c, key)) {
            if (!cJSON_ReplaceItemInObjectCaseSensitive(c, key, C(child))) {
                cJSON_Delete(C(child));
                return GQ_ENOMEM;
            }
            return 0;
        }
        if (!cJSON_AddItemToObject(c, key, C(child))) {
            cJSON_Delete(C(child));
            return GQ_ENOMEM;
        }
        return 0;
    }
    if (cJSON_IsArray(c) && !key) {
        if (!cJSON_AddItemToArray(c, C(child))) {
            cJSON_Delete(C(child));
            return GQ_ENOMEM;
        }
        return 0;
    }
    cJSON_Delete(C(child));
    return GQ_EINVAL;
}

int gq_json_append(gq_json *obj, const char *key, gq_json *child)
{
    if (!child)
        return GQ_ENOMEM;
    if (!obj || !key || !cJSON_IsObject(C(obj))) {
        cJSON_Delete(C(child));
        return GQ_EINVAL;
    }
    if (!cJSON_AddItemToObject(C(obj), key, C(child))) {
        cJSON_Delete(C(child));
        return GQ_ENOMEM;
    }
    return 0;
}

void gq_json_remove(gq_json *obj, const char *key)
{
    if (obj && cJSON_IsObject(C(obj)))
        cJSON_DeleteItemFromObjectCaseSensitive(C(obj), key);
}

/*
 * cJSON prints a number exactly only when it is an integer in int range;
 * others go through "%1.15g", kept when the text reads back within one
 * DBL_EPSILON of the value, so 2^53 prints as 9.00719925474099e+15,
 * 0.1 + 0.2 as 0.3 and 10^15 as 1e+15 (a float to Python).  needs_help()
 * spots those numbers (cheap: most trees have none); when a tree has any,
 * a copy of it is printed in which each of them is a raw node holding
 * exact text.
 */
static int needs_help(double d)
{
    char txt[32];
    if (!isfinite(d))
        return 0;                     /* cJSON writes null; JSON has no inf/nan */
    if (d == floor(d) && d >= -2147483648.0 && d <= 2147483647.0)
        return 0;
    if (d == floor(d) && fabs(d) < 1e21)
        return 1;                     /* an integer past int: not "4e+15", which reads as a float */
    snprintf(txt, sizeof(txt), "%1.15g", d);
    return strtod(txt, NULL) != d;
}

/* c and its siblings, with their descendants */
static int tree_needs_help(const cJSON *c)
{
    for (; c; c = c->next) {
        if (cJSON_IsNumber(c) && needs_help(c->valuedouble))
            return 1;
        if (c->child && tree_needs_help(c->child))
            return 1;
    }
    return 0;
}

/* Integers below 1e21 in full (where JavaScript switches to exponents);
 * anything else in the fewest of 16 or 17 significant digits that read
 * back exactly. */
static void exact_number(char *txt, size_t cap, double d)
{
    if (d == floor(d) && fabs(d) < 1e21) {
        snprintf(txt, cap, "%.0f", d);
        return;
    }
    snprintf(txt, cap, "%.16g", d);
    if (strtod(txt, NULL) != d)
        snprintf(txt, cap, "%.17g", d);
}

/* c and its siblings, with their descendants */
static int make_numbers_exact(cJSON *c)
{
    for (; c; c = c->next) {
        if (cJSON_IsNumber(c) && needs_help(c->valuedouble)) {
            char txt[40];
            size_t n;
            exact_number(txt, sizeof(txt), c->valuedouble);
            n = strlen(txt) + 1;
            c->valuestring = cJSON_malloc(n);
            if (!c->valuestring)
                return -1;
            memcpy(c->valuestring, txt, n);
            c->type = cJSON_Raw;
        }
        if (c->child && make_numbers_exact(c->child) < 0)
            return -1;
    }
    return 0;
}

static char *print_cjson(const cJSON *c, int pretty)
{
    cJSON *copy;
    char *txt;
    /* c alone: it may be a member of a larger tree, with siblings */
    if (!(cJSON_IsNumber(c) && needs_help(c->valuedouble)) && !tree_needs_help(c->child))
        return pretty ? cJSON_Print(c) : cJSON_PrintUnformatted(c);
    copy = cJSON_Duplicate(c, 1);
    if (!copy || make_numbers_exact(copy) < 0) {
        cJSON_Delete(copy);
        return NULL;
    }
    txt = pretty ? cJSON_Print(copy) : cJSON_PrintUnformatted(copy);
    cJSON_Delete(copy);
    return txt;
}

/*
 * cJSON prints integral numbers without a fraction.  Its pretty form
 * indents with tabs and puts a tab after each ':'; strings never contain a
 * raw tab (it is escaped), so every tab is layout and becomes two spaces,
 * or one space after a ':'.
 */
char *gq_json_print(const gq_json *j, int indent)
{
    char *txt, *out;
    size_t n = 0, tabs = 0, k = 0;

    if (!j)
        return NULL;
    if (indent == 0)
        return print_cjson(CC(j), 0);
    txt = print_cjson(CC(j), 1);
    if (!txt)
        return NULL;
    for (n = 0; txt[n]; n++)
        tabs += txt[n] == '\t';
    out = cJSON_malloc(n + tabs + 1);
    if (!out) {
        cJSON_free(txt);
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        if (txt[i] != '\t') {
            out[k++] = txt[i];
        } else if (i > 0 && txt[i - 1] == ':') {
            out[k++] = ' ';
        } else {
            out[k++] = ' ';
            out[k++] = ' ';
        }
    }
    out[k] = '\0';
    cJSON_free(txt);
    return out;
}

void gq_json_free_text(char *text)
{
    cJSON_free(text);
}
