/* CPython binding ccsbus_exi._exi: builds dicts straight from the event array (no JSON text)
 * and reads dicts straight into the encoder's value tree. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <string.h>

#include "ccsbus_exi.h"

/* Buffers of one call. A static one serves every call; building Python objects can run a
 * finalizer that switches threads or calls the codec again, so a call that finds it taken
 * uses a heap copy instead. */
typedef struct {
    exi_doc doc;
    exi_jtree tree;
    uint8_t out[65536];
    char text[1 << 18];
} workspace;

static workspace g_ws;
static int g_ws_busy;

static workspace *ws_acquire(void)
{
    workspace *w;
    if (!g_ws_busy) {
        g_ws_busy = 1;
        return &g_ws;
    }
    w = PyMem_Malloc(sizeof *w);
    if (!w)
        PyErr_NoMemory();
    return w;
}

static void ws_release(workspace *w)
{
    if (w == &g_ws)
        g_ws_busy = 0;
    else
        PyMem_Free(w);
}
static PyObject *g_error; /* _exi.Error(code, offset, message) */

typedef struct {
    const exi_schema *s;
    PyObject **names; /* interned keys, built on first use */
    PyObject **enums;
} schema_cache;

static schema_cache g_cache[3];

static schema_cache *cache_for(const char *id)
{
    static const char *const ids[3] = {"apphand", "din", "iso2"};
    int i;
    for (i = 0; i < 3; i++) {
        if (strcmp(id, ids[i]) == 0) {
            schema_cache *c = &g_cache[i];
            if (!c->s) {
                uint32_t k;
                const exi_schema *s = exi_schema_find(id);
                uint32_t n_enums = 0;
                for (k = 0; k < s->n_dtypes; k++) {
                    uint32_t end = (uint32_t)s->dtypes[k].enum_first + s->dtypes[k].enum_count;
                    if (end > n_enums)
                        n_enums = end;
                }
                c->names = PyMem_Calloc(s->n_names, sizeof(PyObject *));
                c->enums = PyMem_Calloc(n_enums ? n_enums : 1, sizeof(PyObject *));
                if (!c->names || !c->enums) {
                    PyErr_NoMemory();
                    return NULL;
                }
                for (k = 0; k < s->n_names; k++)
                    if (!(c->names[k] = PyUnicode_InternFromString(s->names[k])))
                        return NULL;
                for (k = 0; k < n_enums; k++)
                    if (!(c->enums[k] = PyUnicode_InternFromString(s->enum_names[k])))
                        return NULL;
                c->s = s;
            }
            return c;
        }
    }
    PyErr_Format(PyExc_ValueError, "unknown EXI schema '%s' (apphand, din, iso2)", id);
    return NULL;
}

static PyObject *raise_exi(const exi_error *err)
{
    PyObject *args = Py_BuildValue("(iIs)", err->code, err->offset, err->message);
    if (args) {
        PyErr_SetObject(g_error, args);
        Py_DECREF(args);
    }
    return NULL;
}

/* ------------------------------------------------------------------ decode */

static PyObject *py_value(const schema_cache *c, const exi_doc *doc, const exi_event *ev)
{
    const exi_dtype *t = &c->s->dtypes[ev->arg];
    switch (t->kind) {
    case EXI_T_BOOL:
        return PyBool_FromLong((long)ev->v.i);
    case EXI_T_NBIT:
    case EXI_T_INT:
        return PyLong_FromLongLong(ev->v.i);
    case EXI_T_UINT:
        return PyLong_FromUnsignedLongLong(ev->v.u);
    case EXI_T_ENUM: {
        PyObject *o = c->enums[t->enum_first + ev->v.i];
        Py_INCREF(o);
        return o;
    }
    case EXI_T_STRING:
        return PyUnicode_DecodeUTF8((const char *)doc->pool + ev->v.off, ev->len, "strict");
    default: { /* HEX, BASE64 */
        PyObject *o = PyUnicode_New((Py_ssize_t)ev->len * 2, 127);
        if (o)
            exi_hex_upper(doc->pool + ev->v.off, ev->len, (char *)PyUnicode_DATA(o),
                          (size_t)ev->len * 2u + 1u);
        return o;
    }
    }
}

static uint32_t next_sibling(const exi_doc *doc, uint32_t k)
{
    return doc->ev[k].kind == EXI_EV_SE ? doc->ev[k].len + 1 : k + 1;
}

static PyObject *py_content(const schema_cache *c, const exi_doc *doc, uint32_t se)
{
    const exi_event *evs = doc->ev;
    uint32_t j = se + 1, end = evs[se].len;
    PyObject *d;
    if (c->s->grammars[evs[se].arg].kind == EXI_G_SIMPLE) {
        if (j < end && evs[j].kind == EXI_EV_CH)
            return py_value(c, doc, &evs[j]);
        Py_RETURN_NONE;
    }
    d = PyDict_New();
    if (!d)
        return NULL;
    while (j < end) {
        const exi_event *ev = &evs[j];
        PyObject *v = NULL;
        PyObject *key;
        if (ev->kind == EXI_EV_AT || ev->kind == EXI_EV_CH) {
            static PyObject *value_key;
            if (!value_key && !(value_key = PyUnicode_InternFromString("value")))
                goto fail;
            key = ev->kind == EXI_EV_AT ? c->names[ev->name] : value_key;
            v = py_value(c, doc, ev);
            j++;
        } else if (ev->kind == EXI_EV_SE) {
            key = c->names[ev->name];
            if (ev->flags & EXI_F_ARRAY) {
                PyObject *lst = PyDict_GetItemWithError(d, key);
                if (!lst) {
                    if (PyErr_Occurred())
                        goto fail;
                    if (!(lst = PyList_New(0)))
                        goto fail;
                    if (PyDict_SetItem(d, key, lst) < 0) {
                        Py_DECREF(lst);
                        goto fail;
                    }
                    Py_DECREF(lst);
                }
                if (!(v = py_content(c, doc, j)))
                    goto fail;
                if (PyList_Append(lst, v) < 0) {
                    Py_DECREF(v);
                    goto fail;
                }
                Py_DECREF(v);
                j = ev->len + 1;
                continue;
            }
            v = py_content(c, doc, j);
            j = next_sibling(doc, j);
        } else {
            j++;
            continue;
        }
        if (!v || PyDict_SetItem(d, key, v) < 0) {
            Py_XDECREF(v);
            goto fail;
        }
        Py_DECREF(v);
    }
    return d;
fail:
    Py_DECREF(d);
    return NULL;
}

static PyObject *py_decode(PyObject *self, PyObject *args)
{
    const char *schema;
    Py_buffer buf;
    exi_error err;
    schema_cache *c;
    workspace *w;
    PyObject *inner, *top = NULL;
    int rc;
    (void)self;
    if (!PyArg_ParseTuple(args, "sy*", &schema, &buf))
        return NULL;
    c = cache_for(schema);
    w = c ? ws_acquire() : NULL;
    if (!w) {
        PyBuffer_Release(&buf);
        return NULL;
    }
    rc = exi_decode(c->s, buf.buf, (size_t)buf.len, &w->doc, &err);
    PyBuffer_Release(&buf);
    if (rc) {
        ws_release(w);
        return raise_exi(&err);
    }
    inner = py_content(c, &w->doc, 0);
    if (inner) {
        top = PyDict_New();
        if (top && PyDict_SetItem(top, c->names[w->doc.ev[0].name], inner) < 0)
            Py_CLEAR(top);
        Py_DECREF(inner);
    }
    ws_release(w);
    return top;
}

static PyObject *py_decode_json(PyObject *self, PyObject *args)
{
    const char *schema;
    Py_buffer buf;
    exi_error err;
    size_t n;
    const exi_schema *s;
    workspace *w;
    PyObject *res;
    int rc;
    (void)self;
    if (!PyArg_ParseTuple(args, "sy*", &schema, &buf))
        return NULL;
    s = exi_schema_find(schema);
    if (!s) {
        PyBuffer_Release(&buf);
        return PyErr_Format(PyExc_ValueError, "unknown EXI schema '%s'", schema);
    }
    if (!(w = ws_acquire())) {
        PyBuffer_Release(&buf);
        return NULL;
    }
    rc = exi_decode(s, buf.buf, (size_t)buf.len, &w->doc, &err);
    PyBuffer_Release(&buf);
    if (!rc)
        rc = exi_doc_to_json(&w->doc, w->text, sizeof w->text, &n, &err);
    res = rc ? raise_exi(&err) : PyUnicode_DecodeUTF8(w->text, (Py_ssize_t)n, "strict");
    ws_release(w);
    return res;
}

/* ------------------------------------------------------------------ encode */

static int tree_fail(const char *msg, PyObject *where)
{
    exi_error err;
    err.code = EXI_E_STRUCTURE;
    err.offset = 0;
    if (where)
        snprintf(err.message, sizeof err.message, "%s (%.60s)", msg, Py_TYPE(where)->tp_name);
    else
        snprintf(err.message, sizeof err.message, "%s", msg);
    raise_exi(&err);
    return -1;
}

static int build(exi_jtree *t, PyObject *o, uint32_t *out, unsigned depth)
{
    uint32_t n;
    exi_jnode *node;
    if (depth > 2u * EXI_MAX_DEPTH + 4u) {
        exi_error err = {EXI_E_DEPTH, 0, "tree nested too deeply"};
        raise_exi(&err);
        return -1;
    }
    n = exi_jtree_add(t, EXI_J_NULL);
    if (n == EXI_JNONE) {
        exi_error err = {EXI_E_CAPACITY, 0, "tree has too many values"};
        raise_exi(&err);
        return -1;
    }
    *out = n;
    node = &t->nodes[n];
    if (o == Py_None)
        return 0;
    if (PyBool_Check(o)) {
        node->type = o == Py_True ? EXI_J_TRUE : EXI_J_FALSE;
        return 0;
    }
    if (PyLong_Check(o)) {
        int overflow = 0;
        long long v = PyLong_AsLongLongAndOverflow(o, &overflow);
        node->type = EXI_J_INT;
        if (overflow > 0) {
            unsigned long long u = PyLong_AsUnsignedLongLong(o);
            if (PyErr_Occurred()) {
                PyErr_Clear();
                return tree_fail("integer too large", NULL);
            }
            node->mag = u;
        } else if (overflow < 0) {
            return tree_fail("integer too small", NULL);
        } else if (v < 0) {
            node->neg = 1;
            node->mag = (uint64_t)0 - (uint64_t)v;
        } else {
            node->mag = (uint64_t)v;
        }
        return 0;
    }
    if (PyUnicode_Check(o)) {
        Py_ssize_t len;
        const char *s = PyUnicode_AsUTF8AndSize(o, &len);
        if (!s)
            return -1;
        node->type = EXI_J_STR;
        node->str = s;
        node->len = (uint32_t)len;
        return 0;
    }
    if (PyFloat_Check(o)) {
        node->type = EXI_J_NUM;
        return 0;
    }
    if (PyDict_Check(o)) {
        Py_ssize_t pos = 0;
        PyObject *k, *v;
        uint32_t last = EXI_JNONE;
        node->type = EXI_J_OBJ;
        while (PyDict_Next(o, &pos, &k, &v)) {
            uint32_t child;
            Py_ssize_t klen;
            const char *ks;
            if (!PyUnicode_Check(k))
                return tree_fail("object keys must be strings", k);
            ks = PyUnicode_AsUTF8AndSize(k, &klen);
            if (!ks || build(t, v, &child, depth + 1) < 0)
                return -1;
            t->nodes[child].key = ks;
            t->nodes[child].key_len = (uint32_t)klen;
            if (last == EXI_JNONE)
                t->nodes[n].first = child;
            else
                t->nodes[last].next = child;
            last = child;
            t->nodes[n].len++;
        }
        return 0;
    }
    if (PyList_Check(o) || PyTuple_Check(o)) {
        Py_ssize_t i, len = PySequence_Fast_GET_SIZE(o);
        PyObject **items = PySequence_Fast_ITEMS(o);
        uint32_t last = EXI_JNONE;
        node->type = EXI_J_ARR;
        for (i = 0; i < len; i++) {
            uint32_t child;
            if (build(t, items[i], &child, depth + 1) < 0)
                return -1;
            if (last == EXI_JNONE)
                t->nodes[n].first = child;
            else
                t->nodes[last].next = child;
            last = child;
            t->nodes[n].len++;
        }
        return 0;
    }
    return tree_fail("unsupported value type", o);
}

static PyObject *py_encode(PyObject *self, PyObject *args)
{
    const char *schema;
    PyObject *tree, *res;
    exi_error err;
    size_t n;
    uint32_t root;
    const exi_schema *s;
    workspace *w;
    (void)self;
    if (!PyArg_ParseTuple(args, "sO", &schema, &tree))
        return NULL;
    s = exi_schema_find(schema);
    if (!s)
        return PyErr_Format(PyExc_ValueError, "unknown EXI schema '%s'", schema);
    if (!(w = ws_acquire()))
        return NULL;
    w->tree.n = 0;
    w->tree.str_used = 0;
    if (build(&w->tree, tree, &root, 0) < 0)
        res = NULL;
    else if (exi_encode(s, &w->tree, root, w->out, sizeof w->out, &n, &err))
        res = raise_exi(&err);
    else
        res = PyBytes_FromStringAndSize((const char *)w->out, (Py_ssize_t)n);
    ws_release(w);
    return res;
}

static PyObject *py_encode_json(PyObject *self, PyObject *args)
{
    const char *schema, *text;
    Py_ssize_t len;
    exi_error err;
    size_t n;
    const exi_schema *s;
    workspace *w;
    PyObject *res;
    (void)self;
    if (!PyArg_ParseTuple(args, "ss#", &schema, &text, &len))
        return NULL;
    s = exi_schema_find(schema);
    if (!s)
        return PyErr_Format(PyExc_ValueError, "unknown EXI schema '%s'", schema);
    if (!(w = ws_acquire()))
        return NULL;
    if (exi_json_parse(text, (size_t)len, &w->tree, &err) ||
        exi_encode(s, &w->tree, 0, w->out, sizeof w->out, &n, &err))
        res = raise_exi(&err);
    else
        res = PyBytes_FromStringAndSize((const char *)w->out, (Py_ssize_t)n);
    ws_release(w);
    return res;
}

static PyMethodDef methods[] = {
    {"decode", py_decode, METH_VARARGS, "decode(schema, data) -> dict"},
    {"encode", py_encode, METH_VARARGS, "encode(schema, tree) -> bytes"},
    {"decode_json", py_decode_json, METH_VARARGS, "decode(schema, data) -> JSON text (C)"},
    {"encode_json", py_encode_json, METH_VARARGS, "encode(schema, json_text) -> bytes (C)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_exi",
                                    "EXI codec core (see ccsbus_exi)", -1, methods,
                                    NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__exi(void)
{
    PyObject *m = PyModule_Create(&module);
    if (!m)
        return NULL;
    g_error = PyErr_NewException("ccsbus_exi._exi.Error", NULL, NULL);
    if (!g_error || PyModule_AddObject(m, "Error", g_error) < 0) {
        Py_XDECREF(g_error);
        Py_DECREF(m);
        return NULL;
    }
    Py_INCREF(g_error);
    {
        PyObject *names = PyTuple_New(EXI_E_SCHEMA + 1);
        int i;
        for (i = 0; names && i <= EXI_E_SCHEMA; i++) {
            PyObject *n = PyUnicode_FromString(exi_status_name(i));
            if (!n) {
                Py_CLEAR(names);
                break;
            }
            PyTuple_SET_ITEM(names, i, n);
        }
        if (!names || PyModule_AddObject(m, "STATUS_NAMES", names) < 0) {
            Py_XDECREF(names);
            Py_DECREF(m);
            return NULL;
        }
    }
    PyModule_AddIntConstant(m, "MAX_EVENTS", EXI_MAX_EVENTS);
    PyModule_AddIntConstant(m, "MAX_DEPTH", EXI_MAX_DEPTH);
    return m;
}
