/* JSON text: rendering of decoded documents and a bounded parser for the encoder's input. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "ccsbus_exi.h"
#include "exi_utf8.h"

static int jfail(exi_error *err, int code, size_t off, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        err->code = code;
        err->offset = (uint32_t)off;
        va_start(ap, fmt);
        vsnprintf(err->message, sizeof err->message, fmt, ap);
        va_end(ap);
    }
    return code;
}

int exi_hex_upper(const uint8_t *bytes, uint32_t n, char *out, size_t cap)
{
    static const char hx[] = "0123456789ABCDEF";
    uint32_t i;
    if ((size_t)n * 2u >= cap)
        return -1;
    for (i = 0; i < n; i++) {
        out[2 * i] = hx[bytes[i] >> 4];
        out[2 * i + 1] = hx[bytes[i] & 15u];
    }
    out[2 * n] = 0;
    return 0;
}

/* ------------------------------------------------------------------ rendering */

typedef struct {
    char *out;
    size_t cap, len;
    const exi_doc *doc;
    exi_error *err;
} rbuf;

static int put(rbuf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap)
        return jfail(b->err, EXI_E_OUTPUT, 0, "JSON output buffer of %zu bytes too small",
                     b->cap);
    memcpy(b->out + b->len, s, n);
    b->len += n;
    b->out[b->len] = 0;
    return EXI_OK;
}

static int puts_(rbuf *b, const char *s) { return put(b, s, strlen(s)); }

static int put_jstring(rbuf *b, const char *s, size_t n)
{
    size_t i;
    int rc = put(b, "\"", 1);
    for (i = 0; i < n && !rc; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            rc = put(b, e, 2);
        } else if (c < 0x20u) {
            char e[8];
            snprintf(e, sizeof e, "\\u%04x", c);
            rc = put(b, e, 6);
        } else {
            rc = put(b, (const char *)&s[i], 1);
        }
    }
    return rc ? rc : put(b, "\"", 1);
}

static int put_value(rbuf *b, const exi_event *ev)
{
    const exi_schema *s = b->doc->schema;
    const exi_dtype *t = &s->dtypes[ev->arg];
    char num[32];
    switch (t->kind) {
    case EXI_T_BOOL:
        return puts_(b, ev->v.i ? "true" : "false");
    case EXI_T_NBIT:
    case EXI_T_INT:
        snprintf(num, sizeof num, "%lld", (long long)ev->v.i);
        return puts_(b, num);
    case EXI_T_UINT:
        snprintf(num, sizeof num, "%llu", (unsigned long long)ev->v.u);
        return puts_(b, num);
    case EXI_T_ENUM: {
        const char *name = s->enum_names[t->enum_first + ev->v.i];
        return put_jstring(b, name, strlen(name));
    }
    case EXI_T_STRING:
        return put_jstring(b, (const char *)b->doc->pool + ev->v.off, ev->len);
    case EXI_T_HEX:
    case EXI_T_BASE64: {
        int rc;
        if (b->len + 2u * ev->len + 3u > b->cap)
            return jfail(b->err, EXI_E_OUTPUT, 0, "JSON output buffer too small");
        rc = put(b, "\"", 1);
        exi_hex_upper(b->doc->pool + ev->v.off, ev->len, b->out + b->len, b->cap - b->len);
        b->len += 2u * ev->len;
        return rc ? rc : put(b, "\"", 1);
    }
    default:
        return jfail(b->err, EXI_E_UNSUPPORTED, 0, "datatype %u", t->kind);
    }
}

static int put_key(rbuf *b, const char *k, int *first)
{
    int rc = *first ? EXI_OK : put(b, ",", 1);
    *first = 0;
    rc = rc ? rc : put_jstring(b, k, strlen(k));
    return rc ? rc : put(b, ":", 1);
}

static int render_element(rbuf *b, uint32_t i);

static int render_content(rbuf *b, uint32_t se)
{
    const exi_doc *d = b->doc;
    const exi_schema *s = d->schema;
    uint32_t j = se + 1, end = d->ev[se].len;
    int first = 1, rc;
    if (s->grammars[d->ev[se].arg].kind == EXI_G_SIMPLE) {
        if (j < end && d->ev[j].kind == EXI_EV_CH)
            return put_value(b, &d->ev[j]);
        return puts_(b, "null");
    }
    if ((rc = put(b, "{", 1)))
        return rc;
    while (j < end) {
        const exi_event *ev = &d->ev[j];
        if (ev->kind == EXI_EV_AT || ev->kind == EXI_EV_CH) {
            rc = put_key(b, ev->kind == EXI_EV_AT ? s->names[ev->name] : "value", &first);
            rc = rc ? rc : put_value(b, ev);
            j++;
        } else if (ev->kind == EXI_EV_SE && (ev->flags & EXI_F_ARRAY)) {
            /* all siblings of this name form one array, rendered at the first one */
            uint32_t k;
            int seen = 0, n = 0;
            for (k = se + 1; k < j; k = d->ev[k].kind == EXI_EV_SE ? d->ev[k].len + 1 : k + 1)
                if (d->ev[k].kind == EXI_EV_SE && d->ev[k].name == ev->name)
                    seen = 1;
            if (!seen) {
                rc = put_key(b, s->names[ev->name], &first);
                rc = rc ? rc : put(b, "[", 1);
                for (k = j; k < end && !rc;
                     k = d->ev[k].kind == EXI_EV_SE ? d->ev[k].len + 1 : k + 1) {
                    if (d->ev[k].kind == EXI_EV_SE && d->ev[k].name == ev->name) {
                        rc = n++ ? put(b, ",", 1) : EXI_OK;
                        rc = rc ? rc : render_content(b, k);
                    }
                }
                rc = rc ? rc : put(b, "]", 1);
            }
            j = ev->len + 1;
        } else if (ev->kind == EXI_EV_SE) {
            rc = put_key(b, s->names[ev->name], &first);
            rc = rc ? rc : render_content(b, j);
            j = ev->len + 1;
        } else {
            j++;
        }
        if (rc)
            return rc;
    }
    return put(b, "}", 1);
}

static int render_element(rbuf *b, uint32_t i)
{
    int first = 1;
    int rc = put(b, "{", 1);
    rc = rc ? rc : put_key(b, b->doc->schema->names[b->doc->ev[i].name], &first);
    rc = rc ? rc : render_content(b, i);
    return rc ? rc : put(b, "}", 1);
}

int exi_doc_to_json(const exi_doc *doc, char *out, size_t cap, size_t *out_len, exi_error *err)
{
    rbuf b;
    int rc;
    b.out = out;
    b.cap = cap;
    b.len = 0;
    b.doc = doc;
    b.err = err;
    if (cap == 0)
        return jfail(err, EXI_E_OUTPUT, 0, "JSON output buffer of 0 bytes");
    out[0] = 0;
    if (doc->n_events == 0)
        return jfail(err, EXI_E_STRUCTURE, 0, "empty document");
    rc = render_element(&b, 0);
    if (out_len)
        *out_len = b.len;
    return rc;
}

/* ------------------------------------------------------------------ parsing */

typedef struct {
    const char *p, *start, *end;
    exi_jtree *t;
    exi_error *err;
} jparse;

uint32_t exi_jtree_add(exi_jtree *t, uint8_t type)
{
    exi_jnode *n;
    if (t->n >= EXI_MAX_JNODES)
        return EXI_JNONE;
    n = &t->nodes[t->n];
    memset(n, 0, sizeof *n);
    n->type = type;
    return t->n++;
}

static void skip_ws(jparse *j)
{
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
        j->p++;
}

static int perr(jparse *j, const char *what)
{
    return jfail(j->err, EXI_E_JSON, (size_t)(j->p - j->start), "JSON: %s at byte %ld", what,
                 (long)(j->p - j->start));
}

static int sbuf_put(jparse *j, char c)
{
    if (j->t->str_used >= EXI_MAX_JSTR)
        return jfail(j->err, EXI_E_CAPACITY, 0, "JSON strings exceed %u bytes", EXI_MAX_JSTR);
    j->t->strbuf[j->t->str_used++] = c;
    return EXI_OK;
}

static int hex4(jparse *j, unsigned *out)
{
    unsigned v = 0;
    int i;
    if (j->end - j->p < 4)
        return perr(j, "short \\u escape");
    for (i = 0; i < 4; i++) {
        char c = *j->p++;
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (unsigned)(c - 'A' + 10);
        else
            return perr(j, "bad \\u escape");
    }
    *out = v;
    return EXI_OK;
}

static int parse_string(jparse *j, const char **s, uint32_t *len)
{
    uint32_t begin = j->t->str_used;
    int rc = EXI_OK;
    j->p++; /* opening quote */
    while (j->p < j->end && *j->p != '"' && !rc) {
        char c = *j->p++;
        if ((unsigned char)c < 0x20u)
            return perr(j, "control character in string");
        if (c != '\\') {
            rc = sbuf_put(j, c);
            continue;
        }
        if (j->p >= j->end)
            return perr(j, "unterminated escape");
        c = *j->p++;
        switch (c) {
        case '"': case '\\': case '/': rc = sbuf_put(j, c); break;
        case 'b': rc = sbuf_put(j, '\b'); break;
        case 'f': rc = sbuf_put(j, '\f'); break;
        case 'n': rc = sbuf_put(j, '\n'); break;
        case 'r': rc = sbuf_put(j, '\r'); break;
        case 't': rc = sbuf_put(j, '\t'); break;
        case 'u': {
            unsigned cp, lo;
            if ((rc = hex4(j, &cp)))
                return rc;
            if (cp >= 0xD800u && cp <= 0xDBFFu) {
                if (j->end - j->p < 6 || j->p[0] != '\\' || j->p[1] != 'u')
                    return perr(j, "lone surrogate");
                j->p += 2;
                if ((rc = hex4(j, &lo)))
                    return rc;
                if (lo < 0xDC00u || lo > 0xDFFFu)
                    return perr(j, "bad surrogate pair");
                cp = 0x10000u + ((cp - 0xD800u) << 10) + (lo - 0xDC00u);
            } else if (cp >= 0xDC00u && cp <= 0xDFFFu) {
                return perr(j, "lone surrogate");
            }
            {
                uint8_t u8[4];
                unsigned k, nb = exi_utf8_put(cp, u8);
                for (k = 0; k < nb && !rc; k++)
                    rc = sbuf_put(j, (char)u8[k]);
            }
            break;
        }
        default:
            return perr(j, "bad escape");
        }
    }
    if (rc)
        return rc;
    if (j->p >= j->end)
        return perr(j, "unterminated string");
    j->p++;
    *s = j->t->strbuf + begin;
    *len = j->t->str_used - begin;
    return EXI_OK;
}

static int parse_value(jparse *j, uint32_t *idx, unsigned depth);

static int parse_container(jparse *j, uint32_t self, int obj, unsigned depth)
{
    uint32_t last = EXI_JNONE;
    int rc;
    j->p++;
    skip_ws(j);
    if (j->p < j->end && *j->p == (obj ? '}' : ']')) {
        j->p++;
        return EXI_OK;
    }
    for (;;) {
        const char *key = NULL;
        uint32_t klen = 0, child;
        skip_ws(j);
        if (obj) {
            if (j->p >= j->end || *j->p != '"')
                return perr(j, "expected a key");
            if ((rc = parse_string(j, &key, &klen)))
                return rc;
            skip_ws(j);
            if (j->p >= j->end || *j->p != ':')
                return perr(j, "expected ':'");
            j->p++;
        }
        if ((rc = parse_value(j, &child, depth + 1)))
            return rc;
        j->t->nodes[child].key = key;
        j->t->nodes[child].key_len = klen;
        if (last == EXI_JNONE)
            j->t->nodes[self].first = child;
        else
            j->t->nodes[last].next = child;
        last = child;
        j->t->nodes[self].len++;
        skip_ws(j);
        if (j->p < j->end && *j->p == ',') {
            j->p++;
            continue;
        }
        if (j->p < j->end && *j->p == (obj ? '}' : ']')) {
            j->p++;
            return EXI_OK;
        }
        return perr(j, obj ? "expected ',' or '}'" : "expected ',' or ']'");
    }
}

static int parse_value(jparse *j, uint32_t *idx, unsigned depth)
{
    uint32_t n;
    exi_jnode *node;
    skip_ws(j);
    if (depth > 2u * EXI_MAX_DEPTH + 4u)
        return jfail(j->err, EXI_E_DEPTH, (size_t)(j->p - j->start), "JSON nested too deeply");
    if (j->p >= j->end)
        return perr(j, "unexpected end");
    if (*j->p == '{' || *j->p == '[') {
        int obj = *j->p == '{';
        n = exi_jtree_add(j->t, obj ? EXI_J_OBJ : EXI_J_ARR);
        if (n == EXI_JNONE)
            return jfail(j->err, EXI_E_CAPACITY, 0, "more than %u JSON values", EXI_MAX_JNODES);
        *idx = n;
        return parse_container(j, n, obj, depth);
    }
    n = exi_jtree_add(j->t, EXI_J_NULL);
    if (n == EXI_JNONE)
        return jfail(j->err, EXI_E_CAPACITY, 0, "more than %u JSON values", EXI_MAX_JNODES);
    *idx = n;
    node = &j->t->nodes[n];
    if (*j->p == '"') {
        node->type = EXI_J_STR;
        return parse_string(j, &node->str, &node->len);
    }
    if (j->end - j->p >= 4 && memcmp(j->p, "true", 4) == 0) {
        node->type = EXI_J_TRUE;
        j->p += 4;
        return EXI_OK;
    }
    if (j->end - j->p >= 5 && memcmp(j->p, "false", 5) == 0) {
        node->type = EXI_J_FALSE;
        j->p += 5;
        return EXI_OK;
    }
    if (j->end - j->p >= 4 && memcmp(j->p, "null", 4) == 0) {
        j->p += 4;
        return EXI_OK;
    }
    if (*j->p == '-' || (*j->p >= '0' && *j->p <= '9')) {
        uint64_t mag = 0;
        int digits = 0;
        node->type = EXI_J_INT;
        if (*j->p == '-') {
            node->neg = 1;
            j->p++;
        }
        while (j->p < j->end && *j->p >= '0' && *j->p <= '9') {
            unsigned dg = (unsigned)(*j->p - '0');
            if (mag > (UINT64_MAX - dg) / 10u)
                return perr(j, "integer too large");
            mag = mag * 10u + dg;
            digits++;
            j->p++;
        }
        if (!digits)
            return perr(j, "bad number");
        node->mag = mag;
        if (j->p < j->end && (*j->p == '.' || *j->p == 'e' || *j->p == 'E')) {
            node->type = EXI_J_NUM;
            j->p++;
            while (j->p < j->end && ((*j->p >= '0' && *j->p <= '9') || *j->p == '-' ||
                                     *j->p == '+' || *j->p == 'e' || *j->p == 'E'))
                j->p++;
        }
        return EXI_OK;
    }
    return perr(j, "unexpected character");
}

int exi_json_parse(const char *text, size_t len, exi_jtree *t, exi_error *err)
{
    jparse j;
    uint32_t root;
    int rc;
    j.p = j.start = text;
    j.end = text + len;
    j.t = t;
    j.err = err;
    t->n = 0;
    t->str_used = 0;
    if ((rc = parse_value(&j, &root, 0)))
        return rc;
    skip_ws(&j);
    if (j.p != j.end)
        return perr(&j, "trailing characters");
    return EXI_OK;
}
