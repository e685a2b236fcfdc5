/* config_keys - prints the configuration's key tables (lb/config/keys.c) as JSON, for the
 * test that compares them with config/twlb.schema.json (tests/package/test_schema.py).
 * Linked with config/, os/ and the core only: no runtime.
 *
 * {"tables": {"<table>": [{"name", "type", "required", "reloadable", "store",
 *   "minimum"/"maximum" (integers), "minLength"/"maxLength" (strings with a length bound),
 *   "default", "enum" (words), "table" (objects and arrays of objects)}, ...]}, ...} */
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "config/keys.h"

static const char *type_name(enum key_type t)
{
    switch (t) {
    case KT_STR: return "string";
    case KT_INT: return "integer";
    case KT_OBJ: return "object";
    case KT_ARR: return "array";
    case KT_BOOL: return "boolean";
    case KT_INT_OR_AUTO: return "integer|string";
    case KT_STR_OR_NULL: return "string|null";
    }
    return "?";
}

static const char *store_name(enum key_store s)
{
    switch (s) {
    case KS_NONE: return "none";
    case KS_U32: return "u32";
    case KS_STR: return "string";
    case KS_NAME: return "name";
    case KS_ADDR: return "address";
    case KS_PARSE: return "parse";
    case KS_BOOL: return "bool";
    }
    return "?";
}

static json_t *dump_key(const struct key *k)
{
    json_t *o = json_pack("{s:s, s:s, s:b, s:b, s:s}", "name", k->name, "type",
                          type_name(k->type), "required", k->required, "reloadable",
                          k->reloadable, "store", store_name(k->store));
    if (k->type == KT_STR_OR_NULL)
        json_object_set_new(o, "type", json_pack("[s, s]", "string", "null"));
    if (k->type == KT_INT_OR_AUTO) { /* an integer in bounds, or "auto" (the default) */
        json_object_set_new(o, "type", json_pack("[s, s]", "integer", "string"));
        json_object_set_new(o, "minimum", json_integer(k->min));
        json_object_set_new(o, "maximum", json_integer(k->max));
        json_object_set_new(o, "pattern", json_string("^auto$"));
        json_object_set_new(o, "default", json_string(k->def));
    } else if (k->store == KS_U32) {
        json_object_set_new(o, "minimum", json_integer(k->min));
        json_object_set_new(o, "maximum", json_integer(k->max));
        json_object_set_new(o, "default", json_integer(k->dint));
    } else if (k->store == KS_BOOL && k->def) {
        json_object_set_new(o, "default", json_boolean(!strcmp(k->def, "true")));
    } else if (k->def) {
        json_object_set_new(o, "default", json_string(k->def));
    }
    if (k->store == KS_STR && k->min)
        json_object_set_new(o, "minLength", json_integer(k->min));
    if (k->store == KS_STR && k->max)
        json_object_set_new(o, "maxLength", json_integer(k->max));
    if (k->store == KS_NAME) {
        json_object_set_new(o, "minLength", json_integer(1));
        json_object_set_new(o, "maxLength", json_integer(CFG_NAME_MAX));
    }
    if (k->words) {
        json_t *w = json_array();
        for (size_t i = 0; k->words[i]; i++)
            json_array_append_new(w, json_string(k->words[i]));
        json_object_set_new(o, "enum", w);
    }
    if (k->sub)
        json_object_set_new(o, "table", json_string(k->sub->name));
    return o;
}

int main(void)
{
    json_t *tables = json_object();
    for (size_t t = 0; t < keys_all_n; t++) {
        json_t *keys = json_array();
        for (size_t i = 0; i < keys_all[t]->n; i++)
            json_array_append_new(keys, dump_key(&keys_all[t]->keys[i]));
        json_object_set_new(tables, keys_all[t]->name, keys);
    }
    json_t *root = json_pack("{s:o}", "tables", tables);
    int rc = json_dumpf(root, stdout, JSON_INDENT(1)) == 0 && printf("\n") > 0 ? 0 : 1;
    json_decref(root);
    return rc;
}
