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

enum { K_KEEP, K_CL, K_CONN, K_DROP, K_VIA, K_REFUSE, K_HOST, K_RID, K_XFF, K_COUNT };

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

/* The headers an intermediary does not forward as they came, and what each side does with them
 * (response.py's and request.py's _SPECIAL): K_REFUSE leaves the head to llhttp and the Python
 * checks (Upgrade, Expect, Transfer-Encoding), and Proxy-Connection, which llhttp reads like
 * Connection. */
typedef struct {
    const char *name;
    Py_ssize_t len;
    int response, request;
} Special;

#define SPECIAL_ENTRY(lit, response, request) {lit, (Py_ssize_t)sizeof(lit) - 1, response, request}

static const Special SPECIAL[] = {
    SPECIAL_ENTRY("te", K_DROP, K_DROP),
    SPECIAL_ENTRY("via", K_VIA, K_VIA),
    SPECIAL_ENTRY("host", K_KEEP, K_HOST),
    SPECIAL_ENTRY("expect", K_KEEP, K_REFUSE),
    SPECIAL_ENTRY("trailer", K_DROP, K_DROP),
    SPECIAL_ENTRY("upgrade", K_REFUSE, K_REFUSE),
    SPECIAL_ENTRY("connection", K_CONN, K_CONN),
    SPECIAL_ENTRY("keep-alive", K_DROP, K_DROP),
    SPECIAL_ENTRY("x-request-id", K_DROP, K_RID),
    SPECIAL_ENTRY("content-length", K_CL, K_CL),
    SPECIAL_ENTRY("x-forwarded-for", K_KEEP, K_XFF),
    SPECIAL_ENTRY("proxy-connection", K_REFUSE, K_REFUSE),
    SPECIAL_ENTRY("x-forwarded-host", K_KEEP, K_DROP),
    SPECIAL_ENTRY("transfer-encoding", K_REFUSE, K_REFUSE),
    SPECIAL_ENTRY("x-forwarded-proto", K_KEEP, K_DROP),
};
#define N_SPECIAL ((int)(sizeof(SPECIAL) / sizeof(SPECIAL[0])))

static int classify(const unsigned char *name, Py_ssize_t n, int request)
{
    for (int k = 0; k < N_SPECIAL; k++) {
        const Special *sp = &SPECIAL[k];
        if (sp->len == n && token_is(name, n, sp->name, n))
            return request ? sp->request : sp->response;
    }
    return K_KEEP;
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

/* The header lines from ``i`` to the blank line: their spans, and the offset after the blank line;
 * -1 if the head is incomplete or anything in it is not plain (then llhttp decides). */
static Py_ssize_t scan_lines(const unsigned char *s, Py_ssize_t n, Py_ssize_t i, Span *spans, int *count)
{
    for (;;) {
        if (i + 1 >= n)
            return -1; /* incomplete */
        if (s[i] == '\r') {
            if (s[i + 1] != '\n')
                return -1;
            return i + 2;
        }
        Py_ssize_t name = i;
        while (i < n && TOKEN[s[i]])
            i++;
        /* empty name: also obs-fold (a line starting with SP/HTAB), which llhttp refuses */
        if (i == name || i >= n || s[i] != ':')
            return -1;
        Py_ssize_t name_len = i - name;
        i++;
        while (i < n && (s[i] == ' ' || s[i] == '\t'))
            i++;
        Py_ssize_t value = i;
        while (i < n && VALUE[s[i]])
            i++;
        if (i + 1 >= n || s[i] != '\r' || s[i + 1] != '\n' || *count == MAX_HEADERS)
            return -1;
        Span *sp = &spans[(*count)++];
        sp->name = name;
        sp->name_len = name_len;
        sp->value = value;
        sp->value_len = i - value;
        i += 2;
    }
}

/* A Content-Length value: digits (then OWS, as llhttp reads it); -1 for anything else. */
static long long parse_length(const unsigned char *v, Py_ssize_t vn)
{
    Py_ssize_t digits = trim_end(v, vn);
    if (digits == 0 || digits > 18)
        return -1;
    long long length = 0;
    for (Py_ssize_t k = 0; k < digits; k++) {
        if (v[k] < '0' || v[k] > '9')
            return -1;
        length = length * 10 + (v[k] - '0');
    }
    return length;
}

/* A Connection value's effect on keep-alive: 0 for close, 1 for keep-alive, -1 for anything else
 * (several tokens, or names of other headers: left to llhttp and request.py/response.py). */
static int connection_keep(const unsigned char *v, Py_ssize_t vn)
{
    Py_ssize_t tn = trim_end(v, vn);
    if (token_is(v, tn, "close", 5))
        return 0;
    if (token_is(v, tn, "keep-alive", 10))
        return 1;
    return -1;
}

/* ``Name: value\r\n`` for every K_KEEP span, in order and spelling. */
static PyObject *serialize_kept(const unsigned char *s, const Span *spans, int count, Py_ssize_t size)
{
    PyObject *fields = PyBytes_FromStringAndSize(NULL, size);
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
    return fields;
}

/* A span's value as bytes, or None (a new reference either way; NULL on error). */
static PyObject *value_or_none(const unsigned char *s, const Span *spans, int h)
{
    if (h < 0)
        return Py_NewRef(Py_None);
    return PyBytes_FromStringAndSize((const char *)s + spans[h].value, spans[h].value_len);
}

/* Releases the references made so far (the rest are NULL); returns NULL for the error. */
static PyObject *release(PyObject **items, Py_ssize_t n)
{
    for (Py_ssize_t k = 0; k < n; k++)
        Py_XDECREF(items[k]);
    return NULL;
}

/* A tuple of ``n`` new references (all non-NULL), or NULL with them released. */
static PyObject *pack(PyObject **items, Py_ssize_t n)
{
    PyObject *result = PyTuple_New(n);
    if (result == NULL)
        return release(items, n);
    for (Py_ssize_t k = 0; k < n; k++)
        PyTuple_SET_ITEM(result, k, items[k]);
    return result;
}

/* What the header lines amount to, for either side. */
typedef struct {
    long long length; /* Content-Length, -1 without one */
    int keep_alive;
    Py_ssize_t fields_len; /* bytes of the forwarded fields */
    int at[K_COUNT];       /* the span of each lifted header (Via, Host, ...), -1 if absent */
} Head;

/* Sort the spans into ``head``; -1 when the head is not plain (a refused header, a second
 * Content-Length, Connection or lifted header, an odd value): llhttp decides then. */
static int classify_spans(const unsigned char *s, Span *spans, int count, int request, int minor, Head *head)
{
    int connection = 0;
    head->length = -1;
    head->keep_alive = minor == 1;
    head->fields_len = 0;
    for (int k = 0; k < K_COUNT; k++)
        head->at[k] = -1;
    for (int h = 0; h < count; h++) {
        Span *sp = &spans[h];
        const unsigned char *v = s + sp->value;
        sp->kind = classify(s + sp->name, sp->name_len, request);
        switch (sp->kind) {
        case K_KEEP:
            head->fields_len += sp->name_len + 2 + sp->value_len + 2;
            break;
        case K_DROP:
            break;
        case K_REFUSE:
            return -1;
        case K_CL:
            if (head->length >= 0 || (head->length = parse_length(v, sp->value_len)) < 0)
                return -1;
            break;
        case K_CONN:
            if (connection++ || (head->keep_alive = connection_keep(v, sp->value_len)) < 0)
                return -1;
            break;
        default: /* lifted: one of each */
            if (head->at[sp->kind] >= 0)
                return -1;
            head->at[sp->kind] = h;
            break;
        }
    }
    return 0;
}

static int check_bytes(PyObject *arg, const char *who)
{
    if (PyBytes_CheckExact(arg))
        return 1;
    PyErr_Format(PyExc_TypeError, "%s() needs bytes, not %.100s", who, Py_TYPE(arg)->tp_name);
    return 0;
}

PyDoc_STRVAR(scan_response_doc,
"scan_response(data, /)\n--\n\n"
"Scan a complete, plain response head at the start of ``data``.\n\n"
"Returns ``(status, fields, content_length, keep_alive, via, head_end)`` or ``None`` when the\n"
"head is incomplete or not one this fast path takes (the caller then uses llhttp); keep_alive\n"
"is always True, as a response that closes the connection is left to llhttp.\n\n"
">>> scan_response(b'HTTP/1.1 200 OK\\r\\nServer: x\\r\\nContent-Length: 2\\r\\n\\r\\nhi')\n"
"(200, b'Server: x\\r\\n', 2, True, None, 49)\n");

static PyObject *scan_response(PyObject *module, PyObject *arg)
{
    (void)module;
    if (!check_bytes(arg, "scan_response"))
        return NULL;
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

    Span spans[MAX_HEADERS];
    int count = 0;
    Py_ssize_t head_end = scan_lines(s, n, i + 2, spans, &count);
    if (head_end < 0)
        Py_RETURN_NONE;

    Head head;
    if (classify_spans(s, spans, count, 0, minor, &head) < 0 || head.length < 0)
        Py_RETURN_NONE; /* not plain, or close-delimited: llhttp tracks it */
    if (!head.keep_alive)
        Py_RETURN_NONE; /* llhttp refuses anything after it: let it see the response */
    PyObject *items[6] = {NULL};
    /* one at a time: no C-API call may run with an exception pending */
    if ((items[0] = PyLong_FromLong(status)) == NULL ||
        (items[1] = serialize_kept(s, spans, count, head.fields_len)) == NULL ||
        (items[2] = PyLong_FromLongLong(head.length)) == NULL || (items[3] = Py_NewRef(Py_True)) == NULL ||
        (items[4] = value_or_none(s, spans, head.at[K_VIA])) == NULL ||
        (items[5] = PyLong_FromSsize_t(head_end)) == NULL)
        return release(items, 6);
    return pack(items, 6);
}

/* Methods taken here, as shared bytes objects: heads of other methods go to llhttp. */
static const char *METHOD_NAMES[] = {"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"};
#define N_METHODS ((int)(sizeof(METHOD_NAMES) / sizeof(METHOD_NAMES[0])))
static PyObject *METHODS[N_METHODS];

PyDoc_STRVAR(scan_request_doc,
"scan_request(data, /)\n--\n\n"
"Scan a complete, plain, bodiless request head at the start of ``data``.\n\n"
"Returns ``(method, target, minor, fields, host, keep_alive, request_id, forwarded_for, via,\n"
"content_length, head_end)`` or ``None`` when the head is incomplete or not one this fast path\n"
"takes: a body, Expect, Upgrade, Transfer-Encoding, several Host headers, another method, a\n"
"target not in origin form (the caller then uses llhttp).\n\n"
">>> scan_request(b'GET /a HTTP/1.1\\r\\nHost: h\\r\\nAccept: */*\\r\\n\\r\\n')\n"
"(b'GET', b'/a', 1, b'Accept: */*\\r\\n', b'h', True, None, None, None, None, 41)\n");

static PyObject *scan_request(PyObject *module, PyObject *arg)
{
    (void)module;
    if (!check_bytes(arg, "scan_request"))
        return NULL;
    const unsigned char *s = (const unsigned char *)PyBytes_AS_STRING(arg);
    Py_ssize_t n = PyBytes_GET_SIZE(arg);
    int method = -1;
    Py_ssize_t i = 0;
    for (int m = 0; m < N_METHODS; m++) {
        size_t len = strlen(METHOD_NAMES[m]);
        if ((Py_ssize_t)len < n && memcmp(s, METHOD_NAMES[m], len) == 0 && s[len] == ' ') {
            method = m;
            i = (Py_ssize_t)len + 1;
            break;
        }
    }
    if (method < 0 || i >= n || s[i] != '/')
        Py_RETURN_NONE;
    Py_ssize_t target = i;
    /* what llhttp takes in a target (VCHAR), less '#': a fragment is no business of ours */
    while (i < n && s[i] > 0x20 && s[i] < 0x7f && s[i] != '#')
        i++;
    Py_ssize_t target_len = i - target;
    if (i + 10 > n || memcmp(s + i, " HTTP/1.", 8) != 0 || (s[i + 8] != '0' && s[i + 8] != '1'))
        Py_RETURN_NONE;
    int minor = s[i + 8] - '0';
    if (s[i + 9] != '\r' || i + 10 >= n || s[i + 10] != '\n')
        Py_RETURN_NONE;

    Span spans[MAX_HEADERS];
    int count = 0;
    Py_ssize_t head_end = scan_lines(s, n, i + 11, spans, &count);
    if (head_end < 0)
        Py_RETURN_NONE;

    Head head;
    if (classify_spans(s, spans, count, 1, minor, &head) < 0 || head.length > 0)
        Py_RETURN_NONE; /* not plain, or a body: llhttp frames it */
    int host = head.at[K_HOST];
    if (host < 0 ? minor == 1 : spans[host].value_len == 0)
        Py_RETURN_NONE; /* HTTP/1.1 without Host, or an empty one: request.py answers 400 */
    PyObject *items[11] = {NULL};
    /* one at a time: no C-API call may run with an exception pending */
    if ((items[0] = Py_NewRef(METHODS[method])) == NULL ||
        (items[1] = PyBytes_FromStringAndSize((const char *)s + target, target_len)) == NULL ||
        (items[2] = PyLong_FromLong(minor)) == NULL ||
        (items[3] = serialize_kept(s, spans, count, head.fields_len)) == NULL ||
        (items[4] = host >= 0 ? value_or_none(s, spans, host) : PyBytes_FromStringAndSize(NULL, 0)) == NULL ||
        (items[5] = Py_NewRef(head.keep_alive ? Py_True : Py_False)) == NULL ||
        (items[6] = value_or_none(s, spans, head.at[K_RID])) == NULL ||
        (items[7] = value_or_none(s, spans, head.at[K_XFF])) == NULL ||
        (items[8] = value_or_none(s, spans, head.at[K_VIA])) == NULL ||
        (items[9] = head.length == 0 ? PyLong_FromLong(0) : Py_NewRef(Py_None)) == NULL ||
        (items[10] = PyLong_FromSsize_t(head_end)) == NULL)
        return release(items, 11);
    return pack(items, 11);
}

static PyMethodDef methods[] = {
    {"scan_response", scan_response, METH_O, scan_response_doc},
    {"scan_request", scan_request, METH_O, scan_request_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    "pulsegate.http._wire",
    "C fast paths for the HTTP wire format (see scan_response and scan_request).",
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
    for (int m = 0; m < N_METHODS; m++) {
        if (METHODS[m] == NULL) {
            METHODS[m] = PyBytes_FromString(METHOD_NAMES[m]);
            if (METHODS[m] == NULL)
                return NULL;
        }
    }
    return PyModule_Create(&module_def);
}
