/* libFuzzer harness: decode, and for every accepted input decode -> JSON -> encode -> decode,
 * which must reproduce the same events. The first input byte picks the schema. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ccsbus_exi.h"

static exi_doc doc1, doc2;
static exi_jtree tree;
static char json[1 << 19];
static uint8_t out[1 << 17], out2[1 << 17];

static int value_eq(const exi_doc *a, const exi_event *x, const exi_doc *b, const exi_event *y)
{
    const exi_dtype *t = &a->schema->dtypes[x->arg];
    switch (t->kind) {
    case EXI_T_STRING:
    case EXI_T_HEX:
    case EXI_T_BASE64:
        return x->len == y->len && memcmp(a->pool + x->v.off, b->pool + y->v.off, x->len) == 0;
    default:
        return x->v.u == y->v.u;
    }
}

static void same_events(const exi_doc *a, const exi_doc *b)
{
    uint32_t i;
    if (a->n_events != b->n_events) {
        fprintf(stderr, "event count %u != %u\n", a->n_events, b->n_events);
        abort();
    }
    for (i = 0; i < a->n_events; i++) {
        const exi_event *x = &a->ev[i], *y = &b->ev[i];
        if (x->kind != y->kind || x->name != y->name || x->arg != y->arg ||
            x->flags != y->flags) {
            fprintf(stderr, "event %u differs\n", i);
            abort();
        }
        if ((x->kind == EXI_EV_AT || x->kind == EXI_EV_CH) && !value_eq(a, x, b, y)) {
            fprintf(stderr, "value of event %u differs\n", i);
            abort();
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const ids[3] = {"apphand", "din", "iso2"};
    const exi_schema *s;
    exi_error err;
    size_t jlen, n, n2;
    if (size < 1)
        return 0;
    s = exi_schema_find(ids[data[0] % 3]);
    if (exi_decode(s, data + 1, size - 1, &doc1, &err) != EXI_OK) {
        if (err.code <= EXI_OK || err.code > EXI_E_SCHEMA || !err.message[0])
            abort(); /* every failure carries a code and a message */
        return 0;
    }
    if (exi_doc_to_json(&doc1, json, sizeof json, &jlen, &err) != EXI_OK)
        return 0; /* only EXI_E_OUTPUT is possible, for huge documents */
    if (exi_json_parse(json, jlen, &tree, &err) != EXI_OK) {
        if (err.code == EXI_E_CAPACITY)
            return 0;
        fprintf(stderr, "own JSON rejected: %s\n%s\n", err.message, json);
        abort();
    }
    if (exi_encode(s, &tree, 0, out, sizeof out, &n, &err) != EXI_OK) {
        if (err.code == EXI_E_CAPACITY || err.code == EXI_E_OUTPUT)
            return 0;
        /* the JSON mapping cannot carry interleaved repeats of one name (xmldsig only) */
        if (err.code == EXI_E_STRUCTURE && strstr(err.message, "unexpected"))
            return 0;
        fprintf(stderr, "re-encode failed: %s\n%s\n", err.message, json);
        abort();
    }
    if (exi_decode(s, out, n, &doc2, &err) != EXI_OK) {
        fprintf(stderr, "own output rejected: %s\n", err.message);
        abort();
    }
    same_events(&doc1, &doc2);
    if (exi_encode(s, &tree, 0, out2, sizeof out2, &n2, &err) != EXI_OK || n2 != n ||
        memcmp(out, out2, n) != 0)
        abort();
    return 0;
}
