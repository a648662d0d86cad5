/*
 * dynamic.h - per-module overrides in GPTQModel's `dynamic` grammar
 * (GPTQ-NOTES.md §3.2), as quantize_config.json / config.json carry them
 * and vLLM reads them:
 *
 *   {"<regex>": {overrides}, "+:<regex>": {overrides}, "-:<regex>": {}}
 *
 * A rule's regex is matched like Python's re.match: anchored at the start
 * of the full module name (e.g. "model.layers.12.mlp.down_proj"), not at
 * its end.  "-:" rules (negative) leave matching modules unquantized; "+:"
 * or no prefix (positive) override the base config with the keys given:
 * bits (2, 3, 4, 8), group_size (-1 or > 0), desc_act, sym, damp_percent
 * (0 < x < 1), static_groups, mse (number >= 0; 0 = off).  Negative rules
 * are tried first, then positive ones in the order written; the first
 * match wins (GPTQModel's dynamic_get).
 */
#ifndef GQ_DYNAMIC_H
#define GQ_DYNAMIC_H

#include "err.h"
#include "json.h"

/* What a positive rule overrides; has_* says whether the key was given. */
struct gptq_override {
    int has_bits, bits;
    int has_group_size, group_size;
    int has_desc_act, desc_act;
    int has_sym, sym;
    int has_damp_percent;
    double damp_percent;
    int has_static_groups, static_groups;
    int has_mse;
    double mse;
};

typedef struct dynamic_rules dynamic_rules;

/*
 * Parse an object of rules (NULL or JSON null: no rules, *out = NULL is
 * not returned; an empty rule set is).  GQ_EINVAL naming the rule for a
 * regex PCRE2 cannot compile, an unknown override key, a value of the
 * wrong type or range, a negative rule with overrides, or a value that is
 * not an object.  Free with dynamic_free (NULL-safe).
 */
int dynamic_parse(dynamic_rules **out, const gq_json *rules, gq_err *e);
void dynamic_free(dynamic_rules *d);
/* Number of rules. */
size_t dynamic_count(const dynamic_rules *d);

/*
 * The rule for module: -1 when a negative rule matches (leave it
 * unquantized), 1 when a positive rule matches (*ov filled), 0 when none
 * does (*ov zeroed).  d may be NULL (0).
 */
int dynamic_match(const dynamic_rules *d, const char *module, struct gptq_override *ov);

/* The rules as a JSON object, in their original spelling and order. */
int dynamic_to_json(gq_json **out, const dynamic_rules *d, gq_err *e);

#endif
