/* Grammar-driven encoder: JSON value tree -> EXI bit stream.
 *
 * At every grammar state the first production whose element/attribute is still pending in the
 * JSON object is taken; EE is taken when nothing is pending. The content models are
 * deterministic, so member order in the JSON object does not matter.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "ccsbus_exi.h"
#include "exi_bits.h"
#include "exi_utf8.h"

typedef struct {
    exi_writer w;
    const exi_schema *s;
    const exi_jtree *t;
    exi_error *err;
} enc;

static int efail(enc *e, int code, const char *fmt, ...)
{
    if (e->err) {
        va_list ap;
        e->err->code = code;
        e->err->offset = (uint32_t)e->w.pos;
        va_start(ap, fmt);
        vsnprintf(e->err->message, sizeof e->err->message, fmt, ap);
        va_end(ap);
    }
    return code;
}

static int wr(enc *e, unsigned n, uint32_t v)
{
    if (exi_wr(&e->w, n, v))
        return efail(e, EXI_E_OUTPUT, "output buffer of %zu bytes too small", e->w.cap);
    return EXI_OK;
}

static int wr_uint(enc *e, uint64_t v)
{
    int rc;
    do {
        uint32_t b = (uint32_t)(v & 0x7fu);
        v >>= 7;
        if (v)
            b |= 0x80u;
        if ((rc = wr(e, 8, b)))
            return rc;
    } while (v);
    return EXI_OK;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static int wr_value(enc *e, uint16_t dtype, const exi_jnode *v, const char *where)
{
    const exi_dtype *t = &e->s->dtypes[dtype];
    int rc;
    switch (t->kind) {
    case EXI_T_BOOL:
        if (v->type != EXI_J_TRUE && v->type != EXI_J_FALSE)
            return efail(e, EXI_E_STRUCTURE, "%s: expected true or false", where);
        return wr(e, 1, v->type == EXI_J_TRUE);
    case EXI_T_NBIT:
    case EXI_T_INT:
    case EXI_T_UINT: {
        if (v->type != EXI_J_INT)
            return efail(e, EXI_E_STRUCTURE, "%s: expected an integer", where);
        if (t->kind == EXI_T_UINT) {
            if (v->neg && v->mag)
                return efail(e, EXI_E_VALUE, "%s: negative value for an unsigned type", where);
            if (t->max >= 0 && t->max != INT64_MAX && v->mag > (uint64_t)t->max)
                return efail(e, EXI_E_VALUE, "%s: %llu above maximum %lld", where,
                             (unsigned long long)v->mag, (long long)t->max);
            return wr_uint(e, v->mag);
        } else {
            int64_t x;
            if ((!v->neg && v->mag > (uint64_t)INT64_MAX) ||
                (v->neg && v->mag > (uint64_t)INT64_MAX + 1u))
                return efail(e, EXI_E_VALUE, "%s: integer out of 64-bit range", where);
            x = v->neg ? (int64_t)(0 - v->mag) : (int64_t)v->mag;
            if (x < t->min || x > t->max)
                return efail(e, EXI_E_VALUE, "%s: %lld outside [%lld, %lld]", where,
                             (long long)x, (long long)t->min, (long long)t->max);
            if (t->kind == EXI_T_NBIT)
                return wr(e, t->nbits, (uint32_t)(x - t->min));
            if (x < 0) {
                if ((rc = wr(e, 1, 1)))
                    return rc;
                return wr_uint(e, (uint64_t)(-(x + 1)));
            }
            if ((rc = wr(e, 1, 0)))
                return rc;
            return wr_uint(e, (uint64_t)x);
        }
    }
    case EXI_T_ENUM: {
        uint16_t i;
        if (v->type != EXI_J_STR)
            return efail(e, EXI_E_STRUCTURE, "%s: expected an enumeration name", where);
        for (i = 0; i < t->enum_count; i++) {
            const char *n = e->s->enum_names[t->enum_first + i];
            if (strlen(n) == v->len && memcmp(n, v->str, v->len) == 0)
                return wr(e, t->nbits, i);
        }
        return efail(e, EXI_E_VALUE, "%s: '%.*s' is not a value of the enumeration", where,
                     (int)(v->len > 40 ? 40 : v->len), v->str);
    }
    case EXI_T_HEX:
    case EXI_T_BASE64: {
        uint32_t i;
        if (v->type != EXI_J_STR || (v->len & 1u))
            return efail(e, EXI_E_STRUCTURE, "%s: expected a hex string of even length", where);
        for (i = 0; i < v->len; i++)
            if (hexval(v->str[i]) < 0)
                return efail(e, EXI_E_VALUE, "%s: '%c' is not a hex digit", where, v->str[i]);
        if (t->max_len && v->len / 2u > t->max_len)
            return efail(e, EXI_E_VALUE, "%s: %u bytes, at most %u allowed", where,
                         (unsigned)(v->len / 2u), (unsigned)t->max_len);
        if ((rc = wr_uint(e, v->len / 2u)))
            return rc;
        for (i = 0; i < v->len; i += 2)
            if ((rc = wr(e, 8, (uint32_t)(hexval(v->str[i]) << 4 | hexval(v->str[i + 1])))))
                return rc;
        return EXI_OK;
    }
    case EXI_T_STRING: {
        const unsigned char *p = (const unsigned char *)v->str;
        size_t i = 0, n = 0;
        uint32_t cp = 0;
        if (v->type != EXI_J_STR)
            return efail(e, EXI_E_STRUCTURE, "%s: expected a string", where);
        while (i < v->len) {
            unsigned k = exi_utf8_next(p + i, v->len - i, &cp);
            if (!k || cp == 0)
                return efail(e, EXI_E_VALUE, "%s: invalid UTF-8 or NUL in string", where);
            i += k;
            n++;
        }
        if (t->max_len && n > t->max_len)
            return efail(e, EXI_E_VALUE, "%s: %zu characters, at most %u allowed", where, n,
                         (unsigned)t->max_len);
        if ((rc = wr_uint(e, (uint64_t)n + 2u)))
            return rc;
        for (i = 0; i < v->len;) {
            i += exi_utf8_next(p + i, v->len - i, &cp);
            if ((rc = wr_uint(e, cp)))
                return rc;
        }
        return EXI_OK;
    }
    default:
        return efail(e, EXI_E_UNSUPPORTED, "%s: datatype %u", where, t->kind);
    }
}

static int key_is(const exi_jnode *n, const char *name)
{
    size_t l = strlen(name);
    return n->key_len == l && memcmp(n->key, name, l) == 0;
}

static const exi_jnode *nth_child(const exi_jtree *t, const exi_jnode *arr, uint32_t k)
{
    uint32_t c = arr->first;
    while (k--)
        c = t->nodes[c].next;
    return &t->nodes[c];
}

static int enc_element(enc *e, uint16_t gi, const exi_jnode *val, const char *where,
                       unsigned depth)
{
    const exi_schema *s = e->s;
    const exi_grammar *g = &s->grammars[gi];
    const exi_jnode *mem[EXI_MAX_MEMBERS];
    uint32_t used[EXI_MAX_MEMBERS];
    uint32_t nmem = 0, m, c;
    uint16_t state = g->init;
    int rc;

    if (depth >= EXI_MAX_DEPTH)
        return efail(e, EXI_E_DEPTH, "nesting deeper than %u at %s", EXI_MAX_DEPTH, where);
    if (g->kind == EXI_G_SIMPLE) {
        const exi_state *st = &s->states[state];
        const exi_prod *p = &s->prods[st->first];
        /* state 0: CH; then EE */
        if (st->n < 1 || p->kind != EXI_P_CH)
            return efail(e, EXI_E_STRUCTURE, "%s: simple grammar without CH", where);
        if ((rc = wr(e, st->bits, 0)) || (rc = wr_value(e, p->arg, val, where)))
            return rc;
        st = &s->states[p->next];
        for (c = 0; c < st->n; c++)
            if (s->prods[st->first + c].kind == EXI_P_EE)
                return wr(e, st->bits, c);
        return efail(e, EXI_E_STRUCTURE, "%s: no end after the value", where);
    }
    if (val->type != EXI_J_OBJ)
        return efail(e, EXI_E_STRUCTURE, "%s: expected an object", where);
    for (c = val->len ? val->first : 0, m = 0; m < val->len; m++, c = e->t->nodes[c].next) {
        if (nmem >= EXI_MAX_MEMBERS)
            return efail(e, EXI_E_CAPACITY, "%s: more than %u members", where,
                         EXI_MAX_MEMBERS);
        mem[nmem] = &e->t->nodes[c];
        used[nmem++] = 0;
    }
    for (;;) {
        const exi_state *st = &s->states[state];
        const exi_prod *p = NULL;
        int ee = -1, chosen = -1;
        uint32_t k, hit = 0;
        for (k = 0; k < st->n && chosen < 0; k++) {
            const exi_prod *q = &s->prods[st->first + k];
            const char *nm;
            if (q->kind == EXI_P_EE) {
                ee = (int)k;
                continue;
            }
            if (q->kind != EXI_P_SE && q->kind != EXI_P_AT && q->kind != EXI_P_CH)
                continue;
            nm = q->kind == EXI_P_CH ? "value" : s->names[q->name];
            for (m = 0; m < nmem; m++) {
                if (!key_is(mem[m], nm))
                    continue;
                if (mem[m]->type == EXI_J_ARR && q->kind == EXI_P_SE && (q->flags & EXI_F_ARRAY)
                        ? used[m] < mem[m]->len
                        : used[m] == 0) {
                    chosen = (int)k;
                    hit = m;
                }
                break;
            }
        }
        if (chosen < 0) {
            if (ee < 0) {
                const char *want = "content";
                for (k = 0; k < st->n; k++) {
                    const exi_prod *q = &s->prods[st->first + k];
                    if (q->kind == EXI_P_SE || q->kind == EXI_P_AT) {
                        want = s->names[q->name];
                        break;
                    }
                }
                return efail(e, EXI_E_STRUCTURE, "%s: missing %s", where, want);
            }
            for (m = 0; m < nmem; m++) {
                uint32_t need = mem[m]->type == EXI_J_ARR ? mem[m]->len : 1;
                if (used[m] < need)
                    return efail(e, EXI_E_STRUCTURE, "%s: unexpected '%.*s' here", where,
                                 (int)(mem[m]->key_len > 60 ? 60 : mem[m]->key_len),
                                 mem[m]->key);
            }
            return wr(e, st->bits, (uint32_t)ee);
        }
        p = &s->prods[st->first + (uint32_t)chosen];
        if ((rc = wr(e, st->bits, (uint32_t)chosen)))
            return rc;
        {
            const exi_jnode *item = mem[hit];
            if (item->type == EXI_J_ARR && p->kind == EXI_P_SE && (p->flags & EXI_F_ARRAY))
                item = nth_child(e->t, item, used[hit]);
            else if (item->type == EXI_J_ARR)
                return efail(e, EXI_E_STRUCTURE, "%s: '%s' may occur only once here", where,
                             p->kind == EXI_P_CH ? "value" : s->names[p->name]);
            used[hit]++;
            if (p->kind == EXI_P_SE)
                rc = enc_element(e, p->arg, item, s->names[p->name], depth + 1);
            else
                rc = wr_value(e, p->arg, item, p->kind == EXI_P_CH ? where : s->names[p->name]);
            if (rc)
                return rc;
        }
        state = p->next;
    }
}

int exi_encode(const exi_schema *s, const exi_jtree *t, uint32_t root, uint8_t *out, size_t cap,
               size_t *out_len, exi_error *err)
{
    enc e;
    const exi_jnode *r, *top;
    uint16_t i;
    int rc;
    e.w.buf = out;
    e.w.cap = cap;
    e.w.pos = 0;
    e.s = s;
    e.t = t;
    e.err = err;
    if (err) {
        err->code = EXI_OK;
        err->offset = 0;
        err->message[0] = 0;
    }
    if (!s)
        return efail(&e, EXI_E_SCHEMA, "unknown schema");
    if (root >= t->n)
        return efail(&e, EXI_E_STRUCTURE, "empty tree");
    r = &t->nodes[root];
    if (r->type != EXI_J_OBJ || r->len != 1)
        return efail(&e, EXI_E_STRUCTURE, "the root must be an object with exactly one member");
    top = &t->nodes[r->first];
    for (i = 0; i < s->n_doc; i++)
        if (key_is(top, s->names[s->doc_prods[i].name]))
            break;
    if (i == s->n_doc)
        return efail(&e, EXI_E_STRUCTURE, "'%.*s' is not a global element of %s",
                     (int)(top->key_len > 60 ? 60 : top->key_len), top->key, s->id);
    if ((rc = wr(&e, 8, 0x80u)) || (rc = wr(&e, s->doc_bits, i)))
        return rc;
    if ((rc = enc_element(&e, s->doc_prods[i].arg, top, s->names[s->doc_prods[i].name], 1)))
        return rc;
    /* ED: zero bits; pad to a byte with zeros (exi_wr zeroes each new byte) */
    if (out_len)
        *out_len = (e.w.pos + 7u) >> 3;
    return EXI_OK;
}
