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

/* Events as order-free fingerprints: kind, name, datatype, flags and value. */
static uint64_t h1[EXI_MAX_EVENTS], h2[EXI_MAX_EVENTS];

static uint64_t fingerprint(const exi_doc *d, const exi_event *e)
{
    uint64_t h = 1469598103934665603ull;
    uint32_t i;
    h = (h ^ e->kind) * 1099511628211ull;
    h = (h ^ e->name) * 1099511628211ull;
    h = (h ^ e->arg) * 1099511628211ull;
    h = (h ^ e->flags) * 1099511628211ull;
    if (e->kind == EXI_EV_AT || e->kind == EXI_EV_CH) {
        uint8_t k = d->schema->dtypes[e->arg].kind;
        if (k == EXI_T_STRING || k == EXI_T_HEX || k == EXI_T_BASE64)
            for (i = 0; i < e->len; i++)
                h = (h ^ d->pool[e->v.off + i]) * 1099511628211ull;
        else
            h = (h ^ e->v.u) * 1099511628211ull;
    }
    return h;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The JSON mapping groups same-named elements of a repeated choice group (xmldsig only), so a
 * round trip may reorder siblings there; it must not lose, add or change any event. */
static void same_content(const exi_doc *a, const exi_doc *b)
{
    uint32_t i;
    if (a->n_events != b->n_events)
        abort();
    for (i = 0; i < a->n_events; i++) {
        h1[i] = fingerprint(a, &a->ev[i]);
        h2[i] = fingerprint(b, &b->ev[i]);
    }
    qsort(h1, a->n_events, sizeof h1[0], cmp_u64);
    qsort(h2, b->n_events, sizeof h2[0], cmp_u64);
    if (memcmp(h1, h2, a->n_events * sizeof h1[0]) != 0) {
        fprintf(stderr, "round trip changed the content\n");
        abort();
    }
}

static exi_doc doc3;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const ids[3] = {"apphand", "din", "iso2"};
    const exi_schema *s;
    exi_error err;
    size_t jlen, n, n2;
    uint32_t k;
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
    same_content(&doc1, &doc2);
    for (k = 0; k < doc1.n_events; k++) {
        const exi_event *x = &doc1.ev[k], *y = &doc2.ev[k];
        if (x->kind == y->kind && x->name == y->name)
            continue;
        /* the first difference must be a sibling that may repeat (a reordered group) */
        if (x->kind != EXI_EV_SE || y->kind != EXI_EV_SE || !(x->flags & EXI_F_ARRAY) ||
            !(y->flags & EXI_F_ARRAY)) {
            fprintf(stderr, "event %u moved outside a repeated group\n", (unsigned)k);
            abort();
        }
        break;
    }
    /* after one round the mapping is stable: the same events and the same bytes again */
    if (exi_doc_to_json(&doc2, json, sizeof json, &jlen, &err) != EXI_OK ||
        exi_json_parse(json, jlen, &tree, &err) != EXI_OK)
        abort();
    if (exi_encode(s, &tree, 0, out2, sizeof out2, &n2, &err) != EXI_OK || n2 != n ||
        memcmp(out, out2, n) != 0 || exi_decode(s, out2, n2, &doc3, &err) != EXI_OK)
        abort();
    same_events(&doc2, &doc3);
    return 0;
}
