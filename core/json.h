/*
 * json.h - the JSON documents core/ reads and writes: safetensors headers,
 * config.json, tokenizer.json, Hub API replies, the checkpoint's metadata.
 *
 * core/ owns this small interface and never includes cJSON.h; its one
 * implementation, over cJSON (the project's JSON library), is
 * api/json_doc.c, which every program and test links.  Nothing here is a
 * hand-written parser.
 *
 * Reading: gq_json_parse() builds a tree owned by its root (free with
 * gq_json_free).  Node pointers stay valid until the root is freed.
 * Accessors are NULL-safe: asking a missing node for a member gives NULL,
 * so lookups chain without checks until the value is used.  Containers are
 * walked with gq_json_first / gq_json_next (O(1) per step); an object's
 * members carry their key.  Duplicate keys are kept (gq_json_get returns the
 * first); callers that must reject them walk the members.
 *
 * Writing: build a tree with the gq_json_new_* and gq_json_add functions
 * and print it.  Every constructor returns NULL when out of memory, and
 * adding a NULL child fails, so a whole build can be checked at the end.
 */
#ifndef GQ_JSON_H
#define GQ_JSON_H

#include <stddef.h>

#include "err.h"

typedef struct gq_json gq_json;

typedef enum {
    GQ_JSON_INVALID = 0,
    GQ_JSON_NULL,
    GQ_JSON_BOOL,
    GQ_JSON_NUMBER,
    GQ_JSON_STRING,
    GQ_JSON_ARRAY,
    GQ_JSON_OBJECT
} gq_json_type;

/*
 * Parse len bytes of text (no NUL needed).  On a syntax error: GQ_EINVAL
 * with "invalid JSON at byte N" and a short excerpt.  Trailing non-space
 * bytes are an error.  Nesting deeper than 1000 levels is refused.
 */
int gq_json_parse(gq_json **out, const char *text, size_t len, gq_err *e);
void gq_json_free(gq_json *root);

gq_json_type gq_json_type_of(const gq_json *j);
const char *gq_json_type_name(gq_json_type t);

/* Object member by key (first match), or NULL. */
gq_json *gq_json_get(const gq_json *obj, const char *key);
/* Children of an array or object, in document order. */
gq_json *gq_json_first(const gq_json *container);
gq_json *gq_json_next(const gq_json *item);
/* Number of children (0 for scalars). */
size_t gq_json_size(const gq_json *container);
/* Key of an object member, or NULL. */
const char *gq_json_key(const gq_json *member);

/* Values: the string (NUL-terminated; NULL unless a string). */
const char *gq_json_string(const gq_json *j);
/* The number (NaN unless a number). */
double gq_json_number(const gq_json *j);
/* 1 true, 0 false, -1 not a boolean. */
int gq_json_bool(const gq_json *j);
int gq_json_is_null(const gq_json *j);

/*
 * An integer in [min, max]: 0, or GQ_EINVAL naming what (a field name
 * given by the caller) when j is missing, not a number, not integral, or
 * out of range.
 */
int gq_json_int(long long *out, const gq_json *j, long long min, long long max, const char *what,
                gq_err *e);

/* ---- writing ---- */
gq_json *gq_json_new_object(void);
gq_json *gq_json_new_array(void);
gq_json *gq_json_new_string(const char *s);
gq_json *gq_json_new_number(double v);
gq_json *gq_json_new_bool(int v);
gq_json *gq_json_new_null(void);
/* Deep copy of any node (a new root). */
gq_json *gq_json_copy(const gq_json *j);

/*
 * Add child to obj under key (replacing an existing member of that key) or
 * append it to an array (key NULL).  Takes ownership of child in every
 * case (it is freed when adding fails).  0 or GQ_ENOMEM / GQ_EINVAL.
 */
int gq_json_add(gq_json *container, const char *key, gq_json *child);
/*
 * Append a member to obj without looking for an existing key: O(1), for
 * callers that build objects with many members whose keys they know to be
 * unique (gq_json_add searches first, which is quadratic).  Same ownership
 * and results as gq_json_add.
 */
int gq_json_append(gq_json *obj, const char *key, gq_json *child);

/* Detach and free the member key of obj, if present. */
void gq_json_remove(gq_json *obj, const char *key);

/*
 * Text of j: indent 0 = compact, otherwise pretty with that many spaces
 * (only 0 and 2 are supported).  Caller frees with gq_json_free_text.
 * Numbers that are integers print without a fraction.  NULL when out of
 * memory.
 */
char *gq_json_print(const gq_json *j, int indent);
void gq_json_free_text(char *text);

#endif
