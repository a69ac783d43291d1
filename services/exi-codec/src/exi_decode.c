/* Table-driven decoder: EXI bit stream -> flat event array. No heap, bounded everything. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "ccsbus_exi.h"
#include "exi_bits.h"
#include "exi_schemas.h"
#include "exi_utf8.h"

const exi_schema *exi_schema_find(const char *id)
{
    if (!id)
        return NULL;
    if (strcmp(id, "din") == 0)
        return &exi_schema_din;
    if (strcmp(id, "iso2") == 0)
        return &exi_schema_iso2;
    if (strcmp(id, "apphand") == 0)
        return &exi_schema_apphand;
    return NULL;
}

const char *exi_status_name(int code)
{
    static const char *const n[] = {"ok", "truncated", "header", "event", "unsupported",
                                    "value", "capacity", "depth", "json", "structure",
                                    "output", "schema"};
    if (code < 0 || code > EXI_E_SCHEMA)
        return "unknown";
    return n[code];
}

static int fail(exi_error *err, int code, size_t offset, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        err->code = code;
        err->offset = (uint32_t)offset;
        va_start(ap, fmt);
        vsnprintf(err->message, sizeof err->message, fmt, ap);
        va_end(ap);
    }
    return code;
}

/* bit offset of a decoder, for error reports */
#define DPOS(dp) exi_rpos(&(dp)->r)

typedef struct {
    exi_reader r;
    exi_doc *doc;
    const exi_schema *s;
    exi_error *err;
    const char *where; /* name of the element being decoded, for messages */
} dec;

/* The value readers are inlined into the event loop so that the reader can stay in registers. */
#if defined(__GNUC__)
#define EXI_HOT static inline __attribute__((always_inline))
#else
#define EXI_HOT static inline
#endif

EXI_HOT int rd_uint(dec *d, uint64_t *out)
{
    uint64_t v = 0;
    unsigned shift = 0;
    for (;;) {
        uint32_t b;
        if (exi_rd(&d->r, 8, &b))
            return fail(d->err, EXI_E_TRUNCATED, DPOS(d), "truncated unsigned integer in %s",
                        d->where);
        if (shift == 63 && (b & 0x7fu) > 1u)
            return fail(d->err, EXI_E_VALUE, DPOS(d), "unsigned integer over 64 bits in %s",
                        d->where);
        v |= (uint64_t)(b & 0x7fu) << shift;
        if (!(b & 0x80u))
            break;
        shift += 7;
        if (shift > 63)
            return fail(d->err, EXI_E_VALUE, DPOS(d), "unsigned integer over 64 bits in %s",
                        d->where);
    }
    *out = v;
    return EXI_OK;
}

static int pool_put(dec *d, uint8_t byte)
{
    if (d->doc->pool_used >= EXI_MAX_POOL)
        return fail(d->err, EXI_E_CAPACITY, DPOS(d), "value pool full (%u bytes) in %s",
                    EXI_MAX_POOL, d->where);
    d->doc->pool[d->doc->pool_used++] = byte;
    return EXI_OK;
}

EXI_HOT int rd_value(dec *d, uint16_t dtype, exi_event *ev)
{
    const exi_dtype *t = &d->s->dtypes[dtype];
    uint32_t b = 0;
    uint64_t u = 0;
    int rc;
    /* BOOL, NBIT and ENUM are all nbits of (value - min) with an upper bound (the generator
     * gives BOOL [0, 1] and ENUM [0, count - 1]): one branch for the common case */
    if ((1u << t->kind) & ((1u << EXI_T_BOOL) | (1u << EXI_T_NBIT) | (1u << EXI_T_ENUM))) {
        if (exi_rd(&d->r, t->nbits, &b))
            goto trunc;
        ev->v.i = t->min + (int64_t)b;
        if (ev->v.i > t->max)
            return fail(d->err, EXI_E_VALUE, DPOS(d), "%s %lld above maximum %lld in %s",
                        t->kind == EXI_T_ENUM ? "enumeration index" : "value",
                        (long long)ev->v.i, (long long)t->max, d->where);
        return EXI_OK;
    }
    switch (t->kind) {
    case EXI_T_UINT:
        if ((rc = rd_uint(d, &u)))
            return rc;
        if (t->max >= 0 && u > (uint64_t)t->max && t->max != INT64_MAX)
            return fail(d->err, EXI_E_VALUE, DPOS(d), "value %llu above maximum %lld in %s",
                        (unsigned long long)u, (long long)t->max, d->where);
        ev->v.u = u;
        return EXI_OK;
    case EXI_T_INT:
        if (exi_rd(&d->r, 1, &b))
            goto trunc;
        if ((rc = rd_uint(d, &u)))
            return rc;
        if (u > (uint64_t)INT64_MAX)
            return fail(d->err, EXI_E_VALUE, DPOS(d), "integer out of 64-bit range in %s",
                        d->where);
        ev->v.i = b ? -(int64_t)u - 1 : (int64_t)u;
        if (ev->v.i < t->min || ev->v.i > t->max)
            return fail(d->err, EXI_E_VALUE, DPOS(d), "value %lld outside [%lld, %lld] in %s",
                        (long long)ev->v.i, (long long)t->min, (long long)t->max, d->where);
        return EXI_OK;
    case EXI_T_HEX:
    case EXI_T_BASE64: {
        uint64_t i;
        if ((rc = rd_uint(d, &u)))
            return rc;
        if (t->max_len && u > t->max_len)
            return fail(d->err, EXI_E_VALUE, DPOS(d), "%llu bytes in %s, at most %u allowed",
                        (unsigned long long)u, d->where, (unsigned)t->max_len);
        if (u > exi_rleft(&d->r) / 8u)
            goto trunc;
        if (u > EXI_MAX_POOL - d->doc->pool_used)
            return fail(d->err, EXI_E_CAPACITY, DPOS(d), "binary value of %llu bytes in %s",
                        (unsigned long long)u, d->where);
        ev->v.off = d->doc->pool_used;
        ev->len = (uint32_t)u;
        for (i = 0; i < u; i++) {
            exi_rd(&d->r, 8, &b);
            d->doc->pool[d->doc->pool_used++] = (uint8_t)b;
        }
        return EXI_OK;
    }
    case EXI_T_STRING: {
        uint64_t i, n;
        if ((rc = rd_uint(d, &u)))
            return rc;
        if (u < 2)
            return fail(d->err, EXI_E_VALUE, DPOS(d),
                        "string table hit in %s (the value table is empty)", d->where);
        n = u - 2;
        if (t->max_len && n > t->max_len)
            return fail(d->err, EXI_E_VALUE, DPOS(d),
                        "%llu characters in %s, at most %u allowed", (unsigned long long)n,
                        d->where, (unsigned)t->max_len);
        if (n > exi_rleft(&d->r) / 8u)
            goto trunc;
        ev->v.off = d->doc->pool_used;
        for (i = 0; i < n; i++) {
            uint64_t cp = 0;
            if ((rc = rd_uint(d, &cp)))
                return rc;
            if (cp > 0x10FFFFu || (cp >= 0xD800u && cp <= 0xDFFFu) || cp == 0)
                return fail(d->err, EXI_E_VALUE, DPOS(d), "invalid code point %llu in %s",
                            (unsigned long long)cp, d->where);
            {
                uint8_t u8[4];
                unsigned k, nb = exi_utf8_put((uint32_t)cp, u8);
                for (k = 0, rc = EXI_OK; k < nb && !rc; k++)
                    rc = pool_put(d, u8[k]);
            }
            if (rc)
                return rc;
        }
        ev->len = d->doc->pool_used - ev->v.off;
        return EXI_OK;
    }
    default:
        return fail(d->err, EXI_E_UNSUPPORTED, DPOS(d), "datatype %u in %s", t->kind,
                    d->where);
    }
trunc:
    return fail(d->err, EXI_E_TRUNCATED, DPOS(d), "input ends inside a value of %s", d->where);
}

static const char *where_of(const dec *d, unsigned depth, const uint32_t *se_at)
{
    return depth ? d->s->names[d->doc->ev[se_at[depth - 1]].name] : "document";
}

int exi_decode(const exi_schema *s, const uint8_t *data, size_t len, exi_doc *doc,
               exi_error *err)
{
    dec d;
    uint32_t code, header;
    uint16_t state[EXI_MAX_DEPTH];
    uint32_t se_at[EXI_MAX_DEPTH];
    unsigned depth = 0;
    uint16_t cur;
    exi_event *ev;
    int rc;

    if (err) {
        err->code = EXI_OK;
        err->offset = 0;
        err->message[0] = 0;
    }
    if (!s)
        return fail(err, EXI_E_SCHEMA, 0, "unknown schema");
    if (len > (SIZE_MAX >> 4))
        return fail(err, EXI_E_CAPACITY, 0, "input too large");
    exi_rinit(&d.r, data, len);
    d.doc = doc;
    d.s = s;
    d.err = err;
    d.where = "document";
    doc->schema = s;
    doc->n_events = 0;
    doc->pool_used = 0;

    if (exi_rd(&d.r, 8, &header))
        return fail(err, EXI_E_TRUNCATED, 0, "empty input");
    if (header != 0x80u)
        return fail(err, EXI_E_HEADER, 0,
                    "EXI header 0x%02X, expected 0x80 (no cookie, no options, version 1)",
                    (unsigned)header);
    if (exi_rd(&d.r, s->doc_bits, &code))
        return fail(err, EXI_E_TRUNCATED, DPOS(&d), "input ends before the root element");
    if (code >= s->n_doc)
        return fail(err, code == s->n_doc ? EXI_E_UNSUPPORTED : EXI_E_EVENT, DPOS(&d),
                    "root element code %u is not a declared %s element", (unsigned)code, s->id);
    {
        const exi_prod *p = &s->doc_prods[code];
        ev = &doc->ev[doc->n_events++];
        ev->kind = EXI_EV_SE;
        ev->flags = 0;
        ev->name = p->name;
        ev->arg = p->arg;
        ev->len = 0;
        ev->v.i = 0;
        state[0] = s->grammars[p->arg].init;
        se_at[0] = 0;
        depth = 1;
    }
    cur = state[0];
    while (depth) {
        const exi_state *st = &s->states[cur];
        const exi_prod *p;
        if (exi_rd(&d.r, st->bits, &code))
            return fail(err, EXI_E_TRUNCATED, DPOS(&d), "input ends inside %s",
                        where_of(&d, depth, se_at));
        if (code >= st->n)
            return fail(err, code == st->n ? EXI_E_UNSUPPORTED : EXI_E_EVENT, DPOS(&d),
                        code == st->n ? "second-level event (xsi:type, xsi:nil or undeclared "
                                        "content) in %s"
                                      : "event code out of range in %s",
                        where_of(&d, depth, se_at));
        p = &s->prods[st->first + code];
        cur = p->next;
        if (doc->n_events >= EXI_MAX_EVENTS)
            return fail(err, EXI_E_CAPACITY, DPOS(&d), "more than %u events (in %s)",
                        EXI_MAX_EVENTS, where_of(&d, depth, se_at));
        ev = &doc->ev[doc->n_events++];
        ev->flags = 0;
        ev->name = p->name;
        ev->arg = p->arg;
        ev->len = 0;
        ev->v.i = 0;
        switch (p->kind) {
        case EXI_P_SE:
            if (depth >= EXI_MAX_DEPTH)
                return fail(err, EXI_E_DEPTH, DPOS(&d), "nesting deeper than %u at %s",
                            EXI_MAX_DEPTH, s->names[p->name]);
            ev->kind = EXI_EV_SE;
            ev->flags = p->flags;
            if (s->grammars[p->arg].kind == EXI_G_SIMPLE) {
                /* simple type: the generator guarantees state 0 = [CH], state 1 = [EE] */
                const exi_state *s0 = &s->states[s->grammars[p->arg].init];
                const exi_prod *ch = &s->prods[s0->first];
                uint32_t se = doc->n_events - 1;
                exi_event *cv;
                d.where = s->names[p->name];
                if (doc->n_events + 2u > EXI_MAX_EVENTS)
                    return fail(err, EXI_E_CAPACITY, DPOS(&d), "more than %u events (in %s)",
                                EXI_MAX_EVENTS, d.where);
                if (exi_rd(&d.r, s0->bits, &code))
                    return fail(err, EXI_E_TRUNCATED, DPOS(&d), "input ends inside %s", d.where);
                if (code != 0)
                    return fail(err, code == s0->n ? EXI_E_UNSUPPORTED : EXI_E_EVENT, DPOS(&d),
                                "second-level or unknown event in %s", d.where);
                cv = &doc->ev[doc->n_events++];
                cv->kind = EXI_EV_CH;
                cv->flags = 0;
                cv->name = 0;
                cv->arg = ch->arg;
                cv->len = 0;
                cv->v.i = 0;
                if ((rc = rd_value(&d, ch->arg, cv)))
                    return rc;
                s0 = &s->states[ch->next];
                if (exi_rd(&d.r, s0->bits, &code))
                    return fail(err, EXI_E_TRUNCATED, DPOS(&d), "input ends inside %s", d.where);
                if (code != 0)
                    return fail(err, code == s0->n ? EXI_E_UNSUPPORTED : EXI_E_EVENT, DPOS(&d),
                                "second-level or unknown event at the end of %s", d.where);
                cv = &doc->ev[doc->n_events++];
                memset(cv, 0, sizeof *cv);
                cv->kind = EXI_EV_EE;
                doc->ev[se].len = doc->n_events - 1;
                break;
            }
            state[depth - 1] = cur;
            se_at[depth] = doc->n_events - 1;
            cur = s->grammars[p->arg].init;
            depth++;
            break;
        case EXI_P_AT:
        case EXI_P_CH:
            ev->kind = p->kind == EXI_P_AT ? EXI_EV_AT : EXI_EV_CH;
            d.where = s->names[doc->ev[se_at[depth - 1]].name];
            if ((rc = rd_value(&d, p->arg, ev)))
                return rc;
            break;
        case EXI_P_EE:
            ev->kind = EXI_EV_EE;
            ev->name = 0;
            ev->arg = 0;
            depth--;
            doc->ev[se_at[depth]].len = doc->n_events - 1;
            if (depth)
                cur = state[depth - 1];
            break;
        default:
            return fail(err, EXI_E_UNSUPPORTED, DPOS(&d), "wildcard content in %s",
                        where_of(&d, depth, se_at));
        }
    }
    /* DocEnd has ED as its only production: zero bits. The rest is padding. */
    return EXI_OK;
}
