/*
 * pulsegate.http._wire: the common upstream response head, scanned and classified in one C pass.
 *
 * Why: through llhttp every response costs a Python call per header, one per message event and
 * the classification loop in response.py; about 1 us for a five-header answer, a quarter of the
 * proxy's per-request Python (docs/benchmarks.md). Most answers are plain: a status line, a few
 * headers, Content-Length, a body. scan_response() accepts exactly that, strictly, and returns
 * None for anything else (chunked, 1xx/101/204/304, no Content-Length, a Connection header naming
 * other headers, an incomplete head, any byte llhttp might read differently); the caller then
 * feeds llhttp as before. So this is a fast path, never a second HTTP parser with its own
 * opinions: every head it accepts, llhttp accepts with the same result, which the differential
 * test in tests/http/test_wire.py checks on generated and mutated heads.
 *
 * The result matches ResponseParser.on_headers_complete: end-to-end fields serialized in order
 * and spelling, values without leading whitespace and with trailing whitespace (as llhttp reports
 * them); Content-Length, Connection, Keep-Alive, TE, Trailer and X-Request-Id removed; Via lifted
 * out.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

/* More headers than this go to llhttp: the spans live on the stack. */
#define MAX_HEADERS 64

enum { K_KEEP, K_CL, K_CONN, K_DROP, K_VIA, K_REFUSE };

/* tchar (RFC 9110 5.6.2) */
static unsigned char TOKEN[256];
/* field-value bytes llhttp accepts: HTAB, SP, VCHAR, obs-text (not DEL, not other controls) */
static unsigned char VALUE[256];

static void init_tables(void)
{
    const char *extra = "!#$%&'*+-.^_`|~";
    for (int c = 0; c < 256; c++) {
        TOKEN[c] = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
        VALUE[c] = c == '\t' || (c >= 0x20 && c != 0x7f);
    }
    for (const char *p = extra; *p; p++)
        TOKEN[(unsigned char)*p] = 1;
}

/* Case-insensitive compare of a token against a lower-case literal of letters and '-'. For token
 * bytes, (c | 0x20) equals a lower-case letter only for that letter in either case, and equals '-'
 * only for '-', so the cheap fold is exact here. */
static int token_is(const unsigned char *p, Py_ssize_t n, const char *lit, Py_ssize_t len)
{
    if (n != len)
        return 0;
    for (Py_ssize_t i = 0; i < n; i++)
        if ((p[i] | 0x20) != (unsigned char)lit[i])
            return 0;
    return 1;
}

#define IS(lit) token_is(name, n, lit, (Py_ssize_t)sizeof(lit) - 1)

static int classify(const unsigned char *name, Py_ssize_t n)
{
    switch (n) {
    case 2:
        return IS("te") ? K_DROP : K_KEEP;
    case 3:
        return IS("via") ? K_VIA : K_KEEP;
    case 7:
        if (IS("trailer"))
            return K_DROP;
        return IS("upgrade") ? K_REFUSE : K_KEEP;
    case 10:
        if (IS("connection"))
            return K_CONN;
        return IS("keep-alive") ? K_DROP : K_KEEP;
    case 12:
        return IS("x-request-id") ? K_DROP : K_KEEP;
    case 14:
        return IS("content-length") ? K_CL : K_KEEP;
    case 16:
        /* llhttp reads it like Connection (keep-alive flags): leave that to llhttp */
        return IS("proxy-connection") ? K_REFUSE : K_KEEP;
    case 17:
        return IS("transfer-encoding") ? K_REFUSE : K_KEEP;
    default:
        return K_KEEP;
    }
}

/* Trailing SP/HTAB are part of a value as llhttp reports it, but not of a token we compare. */
static Py_ssize_t trim_end(const unsigned char *v, Py_ssize_t n)
{
    while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t'))
        n--;
    return n;
}

typedef struct {
    Py_ssize_t name, name_len, value, value_len;
    int kind;
} Span;

PyDoc_STRVAR(scan_response_doc,
"scan_response(data, /)\n--\n\n"
"Scan a complete, plain response head at the start of ``data``.\n\n"
"Returns ``(status, fields, content_length, keep_alive, via, head_end)`` or ``None`` when the\n"
"head is incomplete or not one this fast path takes (the caller then uses llhttp).\n\n"
">>> scan_response(b'HTTP/1.1 200 OK\\r\\nServer: x\\r\\nContent-Length: 2\\r\\n\\r\\nhi')\n"
"(200, b'Server: x\\r\\n', 2, True, None, 49)\n");

static PyObject *scan_response(PyObject *module, PyObject *arg)
{
    (void)module;
    if (!PyBytes_CheckExact(arg)) {
        PyErr_Format(PyExc_TypeError, "scan_response() needs bytes, not %.100s", Py_TYPE(arg)->tp_name);
        return NULL;
    }
    const unsigned char *s = (const unsigned char *)PyBytes_AS_STRING(arg);
    Py_ssize_t n = PyBytes_GET_SIZE(arg);
    /* "HTTP/1.x NNN" then SP reason or nothing, CRLF */
    if (n < 16 || memcmp(s, "HTTP/1.", 7) != 0 || (s[7] != '0' && s[7] != '1') || s[8] != ' ')
        Py_RETURN_NONE;
    int minor = s[7] - '0';
    if (s[9] < '2' || s[9] > '5' || s[10] < '0' || s[10] > '9' || s[11] < '0' || s[11] > '9')
        Py_RETURN_NONE;
    int status = (s[9] - '0') * 100 + (s[10] - '0') * 10 + (s[11] - '0');
    if (status == 204 || status == 304)
        Py_RETURN_NONE; /* bodiless whatever they announce: llhttp's rules */
    Py_ssize_t i = 12;
    if (s[i] == ' ') {
        i++;
        while (i < n && VALUE[s[i]])
            i++;
    }
    if (i + 1 >= n || s[i] != '\r' || s[i + 1] != '\n')
        Py_RETURN_NONE;
    i += 2;

    Span spans[MAX_HEADERS];
    int count = 0;
    for (;;) {
        if (i + 1 >= n)
            Py_RETURN_NONE; /* incomplete */
        if (s[i] == '\r') {
            if (s[i + 1] != '\n')
                Py_RETURN_NONE;
            i += 2;
            break;
        }
        Py_ssize_t name = i;
        while (i < n && TOKEN[s[i]])
            i++;
        /* empty name: also obs-fold (a line starting with SP/HTAB), which llhttp refuses */
        if (i == name || i >= n || s[i] != ':')
            Py_RETURN_NONE;
        Py_ssize_t name_len = i - name;
        i++;
        while (i < n && (s[i] == ' ' || s[i] == '\t'))
            i++;
        Py_ssize_t value = i;
        while (i < n && VALUE[s[i]])
            i++;
        if (i + 1 >= n || s[i] != '\r' || s[i + 1] != '\n')
            Py_RETURN_NONE;
        if (count == MAX_HEADERS)
            Py_RETURN_NONE;
        spans[count].name = name;
        spans[count].name_len = name_len;
        spans[count].value = value;
        spans[count].value_len = i - value;
        count++;
        i += 2;
    }
    Py_ssize_t head_end = i;

    long long length = -1;
    int keep_alive = minor == 1;
    int connection_seen = 0;
    int via = -1;
    Py_ssize_t fields_len = 0;
    for (int h = 0; h < count; h++) {
        Span *sp = &spans[h];
        const unsigned char *v = s + sp->value;
        Py_ssize_t vn = sp->value_len;
        sp->kind = classify(s + sp->name, sp->name_len);
        switch (sp->kind) {
        case K_KEEP:
            fields_len += sp->name_len + 2 + vn + 2;
            break;
        case K_CL: {
            Py_ssize_t digits = trim_end(v, vn);
            if (length >= 0 || digits == 0 || digits > 18)
                Py_RETURN_NONE; /* duplicates and oddities: llhttp decides */
            length = 0;
            for (Py_ssize_t k = 0; k < digits; k++) {
                if (v[k] < '0' || v[k] > '9')
                    Py_RETURN_NONE;
                length = length * 10 + (v[k] - '0');
            }
            break;
        }
        case K_CONN: {
            Py_ssize_t tn = trim_end(v, vn);
            if (connection_seen)
                Py_RETURN_NONE;
            connection_seen = 1;
            if (token_is(v, tn, "close", 5))
                keep_alive = 0;
            else if (token_is(v, tn, "keep-alive", 10))
                keep_alive = 1;
            else
                Py_RETURN_NONE; /* names other headers, or several tokens */
            break;
        }
        case K_VIA:
            if (via >= 0)
                Py_RETURN_NONE;
            via = h;
            break;
        case K_REFUSE:
            Py_RETURN_NONE;
        default:
            break;
        }
    }
    if (length < 0)
        Py_RETURN_NONE; /* close-delimited: llhttp tracks it */

    PyObject *fields = PyBytes_FromStringAndSize(NULL, fields_len);
    if (fields == NULL)
        return NULL;
    char *out = PyBytes_AS_STRING(fields);
    for (int h = 0; h < count; h++) {
        const Span *sp = &spans[h];
        if (sp->kind != K_KEEP)
            continue;
        memcpy(out, s + sp->name, (size_t)sp->name_len);
        out += sp->name_len;
        *out++ = ':';
        *out++ = ' ';
        memcpy(out, s + sp->value, (size_t)sp->value_len);
        out += sp->value_len;
        *out++ = '\r';
        *out++ = '\n';
    }
    PyObject *via_obj;
    if (via >= 0) {
        via_obj = PyBytes_FromStringAndSize((const char *)s + spans[via].value, spans[via].value_len);
        if (via_obj == NULL) {
            Py_DECREF(fields);
            return NULL;
        }
    } else {
        via_obj = Py_NewRef(Py_None);
    }
    PyObject *result = PyTuple_New(6);
    PyObject *status_obj = PyLong_FromLong(status);
    PyObject *length_obj = PyLong_FromLongLong(length);
    PyObject *end_obj = PyLong_FromSsize_t(head_end);
    if (result == NULL || status_obj == NULL || length_obj == NULL || end_obj == NULL) {
        Py_XDECREF(result);
        Py_XDECREF(status_obj);
        Py_XDECREF(length_obj);
        Py_XDECREF(end_obj);
        Py_DECREF(fields);
        Py_DECREF(via_obj);
        return NULL;
    }
    PyTuple_SET_ITEM(result, 0, status_obj);
    PyTuple_SET_ITEM(result, 1, fields);
    PyTuple_SET_ITEM(result, 2, length_obj);
    PyTuple_SET_ITEM(result, 3, Py_NewRef(keep_alive ? Py_True : Py_False));
    PyTuple_SET_ITEM(result, 4, via_obj);
    PyTuple_SET_ITEM(result, 5, end_obj);
    return result;
}

static PyMethodDef methods[] = {
    {"scan_response", scan_response, METH_O, scan_response_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    "pulsegate.http._wire",
    "C fast paths for the HTTP wire format (see scan_response).",
    -1,
    methods,
    NULL,
    NULL,
    NULL,
    NULL,
};

PyMODINIT_FUNC PyInit__wire(void)
{
    init_tables();
    return PyModule_Create(&module_def);
}
