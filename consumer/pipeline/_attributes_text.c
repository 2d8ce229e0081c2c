/* The JSON text of item_to_json(item), written straight from the DynamoDB item without building the
 * JSON values first, byte for byte what dumps_json would write of them (orjson: keys in the item's
 * order, no spaces, the same escapes, numbers as the policy of consumer/pipeline/attributes.py spells
 * them): attributes.python_item_json, the definition. item_lines writes it inside the _bulk lines of
 * indexing it.
 *
 * It writes what the value converter in _attributes.c converts itself; every other value (B as bytes,
 * BS, a number spelt otherwise, an NS with long numbers, every malformed value) is converted by the
 * Python attribute_to_json and written by dumps_json, so errors are raised with the same message and
 * in the same order as item_to_json raises them. It answers None, for the caller's Python path to
 * decide, when the item is not a dict, when a top-level attribute name is in ``reserved``, when a
 * string is not valid Unicode or a name not a str (dumps_json refuses them), and beyond MAX_DEPTH
 * nested maps and lists (orjson's own limit is 255).
 * tests/unit/pipeline/test_attributes_compiled.py holds it equal to dumps_json(item_to_json(item))
 * on random items, malformed ones included, and item_lines to encode_action.
 */
#include "_attributes.h"

#define MAX_DEPTH 64

static Written write_attribute(Text *text, PyObject *attribute, int depth);

/* orjson's escapes: the two-character ones where JSON has them, \u00XX for other control characters,
 * everything else (non-ASCII included) as it is */
int append_escaped(Text *text, const unsigned char *chars, Py_ssize_t length)
{
    static const char hex[] = "0123456789abcdef";
    if (reserve(text, length + 2) < 0)
        return -1;
    text->data[text->length++] = '"';
    Py_ssize_t run = 0; /* start of the characters not yet copied */
    for (Py_ssize_t i = 0; i < length; i++) {
        uint64_t word;
        while (i + 8 <= length && (memcpy(&word, chars + i, 8), !needs_escape(word)))
            i += 8; /* nearly every string: eight characters at a time, none to escape */
        if (i >= length)
            break;
        unsigned char c = chars[i];
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        if (append(text, (const char *)chars + run, i - run) < 0 || reserve(text, 6 + length - i) < 0)
            return -1;
        char *out = text->data + text->length;
        const char *short_escape = c == '"' ? "\\\"" : c == '\\' ? "\\\\" : c == '\n' ? "\\n" : c == '\r' ? "\\r"
                                 : c == '\t' ? "\\t" : c == '\b' ? "\\b" : c == '\f' ? "\\f" : NULL;
        if (short_escape != NULL) {
            memcpy(out, short_escape, 2);
            text->length += 2;
        } else {
            memcpy(out, "\\u00", 4);
            out[4] = hex[c >> 4];
            out[5] = hex[c & 0xf];
            text->length += 6;
        }
        run = i + 1;
    }
    if (append(text, (const char *)chars + run, length - run) < 0)
        return -1;
    return append_char(text, '"');
}

static Written write_string(Text *text, PyObject *string)
{
    Py_ssize_t length;
    const char *chars;
    if (PyUnicode_IS_COMPACT_ASCII(string)) /* nearly every string: its characters are its UTF-8 */
        return append_escaped(text, PyUnicode_DATA(string), PyUnicode_GET_LENGTH(string)) < 0 ? FAILED : WRITTEN;
    chars = PyUnicode_AsUTF8AndSize(string, &length);
    if (chars == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_UnicodeEncodeError))
            return FAILED;
        PyErr_Clear(); /* a lone surrogate: dumps_json refuses the whole item, unless conversion fails first */
        return PYTHON_DECIDES;
    }
    return append_escaped(text, (const unsigned char *)chars, length) < 0 ? FAILED : WRITTEN;
}

/* The policy's spelling of a plain number: what orjson writes of the int, float or Decimal it is */
int append_number(Text *text, const PlainNumber *number)
{
    int zero = number->whole_length == 0;
    if (number->kind == PLAIN_INTEGER && zero)
        return append_char(text, '0');
    if ((number->negative && append_char(text, '-') < 0)
        || (zero ? append_char(text, '0') : append(text, number->whole, number->whole_length)) < 0)
        return -1;
    if (number->kind == PLAIN_INTEGER)
        return 0;
    if (append_char(text, '.') < 0)
        return -1;
    return append(text, number->fraction, number->fraction_length);
}

static int read_number(PyObject *string, PlainNumber *number, const char **chars)
{
    Py_ssize_t length;
    if (!PyUnicode_CheckExact(string) || !PyUnicode_IS_ASCII(string))
        return 0;
    *chars = (const char *)PyUnicode_DATA(string);
    length = PyUnicode_GET_LENGTH(string);
    *number = read_plain_number(*chars, length);
    return number->kind != NOT_PLAIN;
}

/* One member of a number set: its value for sorting, its spelling for writing */
typedef struct {
    PlainNumber number;
    long long integer; /* a PLAIN_INTEGER: of at most LONG_SAFE_DIGITS digits */
    double decimal;    /* a PLAIN_DECIMAL: below 1e15 in magnitude */
} Member;

#define EXACT_IN_DOUBLE (1LL << 53)

/* As Python compares an int and a float: exactly. A decimal is below 2**53 in magnitude, so an
 * integer beyond it is greater (or less) whatever the decimal; within it, the double is exact. */
static int compare_members(const void *left, const void *right)
{
    const Member *a = left, *b = right;
    if (a->number.kind == PLAIN_INTEGER && b->number.kind == PLAIN_INTEGER)
        return (a->integer > b->integer) - (a->integer < b->integer);
    if (a->number.kind == PLAIN_INTEGER && (a->integer > EXACT_IN_DOUBLE || a->integer < -EXACT_IN_DOUBLE))
        return a->integer > 0 ? 1 : -1;
    if (b->number.kind == PLAIN_INTEGER && (b->integer > EXACT_IN_DOUBLE || b->integer < -EXACT_IN_DOUBLE))
        return b->integer > 0 ? -1 : 1;
    double x = a->number.kind == PLAIN_INTEGER ? (double)a->integer : a->decimal;
    double y = b->number.kind == PLAIN_INTEGER ? (double)b->integer : b->decimal;
    return (x > y) - (x < y);
}

Written write_number_set(Text *text, void *members, Py_ssize_t size, Spelling spelling, Written otherwise)
{
    Member *sorted = PyMem_Malloc(sizeof(Member) * (size > 0 ? size : 1));
    if (sorted == NULL) {
        PyErr_NoMemory();
        return FAILED;
    }
    Written written = WRITTEN;
    for (Py_ssize_t i = 0; i < size && written == WRITTEN; i++) {
        Py_ssize_t length;
        const char *chars = spelling(members, i, &length);
        Member *member = &sorted[i];
        member->number = chars != NULL ? read_plain_number(chars, length) : (PlainNumber){NOT_PLAIN};
        if (member->number.kind == NOT_PLAIN
            || (member->number.kind == PLAIN_INTEGER && member->number.spelt_digits > LONG_SAFE_DIGITS)) {
            written = otherwise;
        } else if (member->number.kind == PLAIN_INTEGER) {
            member->integer = 0;
            for (Py_ssize_t d = 0; d < member->number.whole_length; d++)
                member->integer = member->integer * 10 + (member->number.whole[d] - '0');
            member->integer = member->number.negative ? -member->integer : member->integer;
        } else {
            char terminated[32]; /* a plain decimal has at most 15 digits, a sign and a point */
            memcpy(terminated, chars, length);
            terminated[length] = '\0';
            if ((member->decimal = PyOS_string_to_double(terminated, NULL, NULL)) == -1.0 && PyErr_Occurred())
                written = FAILED;
        }
    }
    if (written == WRITTEN) {
        qsort(sorted, size, sizeof(Member), compare_members); /* equal values are spelt alike: unstable is fine */
        written = append_char(text, '[') < 0 ? FAILED : WRITTEN;
        for (Py_ssize_t i = 0; i < size && written == WRITTEN; i++)
            if ((i > 0 && append_char(text, ',') < 0) || append_number(text, &sorted[i].number) < 0)
                written = FAILED;
        if (written == WRITTEN && append_char(text, ']') < 0)
            written = FAILED;
    }
    PyMem_Free(sorted);
    return written;
}

/* The spelling of a list's member, when an ASCII str */
static const char *listed_spelling(void *members, Py_ssize_t i, Py_ssize_t *length)
{
    PyObject *member = PyList_GET_ITEM((PyObject *)members, i);
    if (!PyUnicode_CheckExact(member) || !PyUnicode_IS_ASCII(member))
        return NULL;
    *length = PyUnicode_GET_LENGTH(member);
    return (const char *)PyUnicode_DATA(member);
}

/* An SS of str members: sorted, written */
static Written write_string_set(Text *text, PyObject *members)
{
    Py_ssize_t size = PyList_GET_SIZE(members);
    for (Py_ssize_t i = 0; i < size; i++)
        if (!PyUnicode_CheckExact(PyList_GET_ITEM(members, i)))
            return PYTHON_WRITES;
    PyObject *sorted = PyList_GetSlice(members, 0, size);
    if (sorted == NULL || PyList_Sort(sorted) < 0) {
        Py_XDECREF(sorted);
        return FAILED;
    }
    Written written = append_char(text, '[') < 0 ? FAILED : WRITTEN;
    for (Py_ssize_t i = 0; i < size && written == WRITTEN; i++)
        if (i > 0 && append_char(text, ',') < 0)
            written = FAILED;
        else
            written = write_string(text, PyList_GET_ITEM(sorted, i));
    Py_DECREF(sorted);
    return written == WRITTEN && append_char(text, ']') < 0 ? FAILED : written;
}

/* A map's attributes as a JSON object; PYTHON_DECIDES at a top-level name in ``reserved`` (NULL: none) */
static Written write_map(Text *text, PyObject *map, PyObject *reserved, int depth)
{
    PyObject *name, *attribute;
    Py_ssize_t position = 0, size = PyDict_GET_SIZE(map), written_names = 0;
    if (append_char(text, '{') < 0)
        return FAILED;
    while (PyDict_Next(map, &position, &name, &attribute)) {
        if (!PyUnicode_CheckExact(name))
            return PYTHON_DECIDES; /* dumps_json refuses it, unless conversion fails first */
        if (reserved != NULL) {
            int found = PySet_Contains(reserved, name);
            if (found != 0)
                return found < 0 ? FAILED : PYTHON_DECIDES;
        }
        if (written_names++ > 0 && append_char(text, ',') < 0)
            return FAILED;
        Written written = write_string(text, name);
        if (written == WRITTEN && append_char(text, ':') < 0)
            return FAILED;
        if (written != WRITTEN)
            return written;
        Py_INCREF(attribute);
        written = write_attribute(text, attribute, depth);
        Py_DECREF(attribute);
        if (written != WRITTEN)
            return written;
        if (PyDict_GET_SIZE(map) != size) {
            PyErr_SetString(PyExc_RuntimeError, "a DynamoDB item changed while it was converted");
            return FAILED;
        }
    }
    return append_char(text, '}') < 0 ? FAILED : WRITTEN;
}

static Written write_list(Text *text, PyObject *elements, int depth)
{
    if (append_char(text, '[') < 0)
        return FAILED;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(elements); i++) { /* a fallback's Python may change it */
        if (i > 0 && append_char(text, ',') < 0)
            return FAILED;
        PyObject *element = PyList_GET_ITEM(elements, i);
        Py_INCREF(element);
        Written written = write_attribute(text, element, depth);
        Py_DECREF(element);
        if (written != WRITTEN)
            return written;
    }
    return append_char(text, ']') < 0 ? FAILED : WRITTEN;
}

/* A value the writer leaves to Python: converted by ``convert`` (raising what item_to_json raises),
 * written by dumps_json. PYTHON_DECIDES when dumps_json refuses it (it refuses the whole item then):
 * the caller's Python path raises what the whole item's conversion raises first. */
static Written write_in_python(Text *text, PyObject *convert, PyObject *value)
{
    PyObject *converted = PyObject_CallOneArg(convert, value);
    if (converted == NULL)
        return FAILED;
    PyObject *json = PyObject_CallOneArg(dumps_fallback, converted);
    Py_DECREF(converted);
    if (json == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_TypeError)) /* orjson.JSONEncodeError is a TypeError */
            return FAILED;
        PyErr_Clear();
        return PYTHON_DECIDES;
    }
    int failed = append(text, PyBytes_AS_STRING(json), PyBytes_GET_SIZE(json)) < 0;
    Py_DECREF(json);
    return failed ? FAILED : WRITTEN;
}

static Written write_attribute(Text *text, PyObject *attribute, int depth)
{
    PyObject *tag, *value;
    Py_ssize_t position = 0, start = text->length;
    if (!PyDict_CheckExact(attribute) || PyDict_GET_SIZE(attribute) != 1)
        return write_in_python(text, attribute_fallback, attribute);
    PyDict_Next(attribute, &position, &tag, &value);
    Written written = PYTHON_WRITES; /* unless written below */
    switch (tag_of(tag)) {
    case 'S':
    case 'B':
        if (PyUnicode_CheckExact(value))
            written = write_string(text, value);
        break;
    case 'N': {
        PlainNumber number;
        const char *chars;
        if (read_number(value, &number, &chars))
            written = append_number(text, &number) < 0 ? FAILED : WRITTEN;
        break;
    }
    case 'M':
    case 'L':
        if (depth >= MAX_DEPTH)
            return PYTHON_DECIDES; /* rather than write it again at every level above */
        if (PyDict_CheckExact(value) && tag_of(tag) == 'M')
            written = write_map(text, value, NULL, depth + 1);
        else if (PyList_CheckExact(value) && tag_of(tag) == 'L')
            written = write_list(text, value, depth + 1);
        break;
    case 's':
        if (PyList_CheckExact(value))
            written = write_string_set(text, value);
        break;
    case 'n':
        if (PyList_CheckExact(value))
            written = write_number_set(text, value, PyList_GET_SIZE(value), listed_spelling, PYTHON_WRITES);
        break;
    case 'b':
        if (PyBool_Check(value))
            written = append(text, value == Py_True ? "true" : "false", value == Py_True ? 4 : 5) < 0 ? FAILED : WRITTEN;
        break;
    case '0':
        if (PyBool_Check(value))
            written = append(text, "null", 4) < 0 ? FAILED : WRITTEN;
        break;
    }
    if (written != PYTHON_WRITES)
        return written;
    /* B as bytes, BS, a number or a set member spelt otherwise, a malformed value: the Python
       converter takes the whole attribute (and raises for a malformed one) */
    text->length = start;
    return write_in_python(text, attribute_fallback, attribute);
}

static int configured(void)
{
    if (dumps_fallback != NULL)
        return 1;
    PyErr_SetString(PyExc_RuntimeError, "configure() the Python fallbacks first");
    return 0;
}

int begin_lines(const char *signature, PyObject *const *args, Py_ssize_t nargs, Text *text)
{
    static const char tail[] = ",\"version_type\":\"external\"}}\n";
    if (nargs != 5 || !PyFrozenSet_CheckExact(args[1]) || !PyBytes_CheckExact(args[2])
        || !PyUnicode_CheckExact(args[3]) || !PyLong_CheckExact(args[4])) {
        PyErr_SetString(PyExc_TypeError, signature);
        return -1;
    }
    if (!configured())
        return -1;
    int overflow;
    long long version = PyLong_AsLongLongAndOverflow(args[4], &overflow);
    if (overflow != 0)
        return 1;
    char digits[24], *first = digits + sizeof digits; /* the version's digits, written backwards */
    unsigned long long magnitude = version < 0 ? 0ULL - (unsigned long long)version : (unsigned long long)version;
    do
        *--first = (char)('0' + magnitude % 10);
    while ((magnitude /= 10) != 0);
    if (version < 0)
        *--first = '-';
    if ((text->data = PyMem_Malloc(2048)) == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    text->length = 0;
    text->capacity = 2048;
    Written written = append(text, PyBytes_AS_STRING(args[2]), PyBytes_GET_SIZE(args[2])) < 0 ? FAILED : WRITTEN;
    if (written == WRITTEN)
        written = write_string(text, args[3]);
    if (written == WRITTEN
        && (append(text, ",\"version\":", 11) < 0 || append(text, first, digits + sizeof digits - first) < 0
            || append(text, tail, sizeof tail - 1) < 0))
        written = FAILED;
    if (written != WRITTEN)
        PyMem_Free(text->data);
    return written == WRITTEN ? 0 : written == PYTHON_DECIDES ? 1 : -1;
}

PyObject *end_lines(Text *text, Written written)
{
    if (written == WRITTEN && append_char(text, '\n') < 0)
        written = FAILED;
    PyObject *lines = written == WRITTEN ? PyBytes_FromStringAndSize(text->data, text->length) : NULL;
    PyMem_Free(text->data);
    if (written == PYTHON_DECIDES)
        Py_RETURN_NONE;
    return lines;
}

/* item_lines(item, reserved, head, doc_id, version): the _bulk lines of indexing the item's text under
 * doc_id at an external version, with the metadata line's ``head`` (its text up to the id:
 * bulk.meta_head), byte for byte what encode_action writes of the action; None (above) where the
 * caller's Python path decides, and for an id that is not valid Unicode or a version beyond 64 bits. */
PyObject *item_lines(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Text text;
    int begun = begin_lines(
        "item_lines(item, reserved: frozenset, head: bytes, doc_id: str, version: int)", args, nargs, &text);
    if (begun != 0)
        return begun < 0 ? NULL : Py_NewRef(Py_None);
    if (!PyDict_CheckExact(args[0]))
        return end_lines(&text, PYTHON_DECIDES);
    return end_lines(&text, write_map(&text, args[0], args[1], 0));
}
