/* readable_id(keys, key_attributes): the readable document id of consumer.pipeline.doc_ids, in C, for
 * the keys nearly every record has: S values, plainly spelt N values and B values as base64 text.
 * None for everything else (B as bytes, a number spelt otherwise, a missing or mistyped attribute, an
 * id longer than MAX_ID_BYTES, a string that is not valid Unicode), which doc_ids's Python decides,
 * with its errors and hashed ids. tests/unit/pipeline/test_doc_ids.py holds the two equal on random
 * keys. */
#include "_attributes.h"

#define MAX_ID_BYTES 512 /* doc_ids.MAX_ID_BYTES: OpenSearch's cap on _id */

/* S: "\" and "|" escaped with "\"; N: the canonical text; B: the base64 text. 0: written; 1: for Python */
static int write_part(char *id, Py_ssize_t *length, char type, PyObject *value)
{
    Py_ssize_t size;
    const char *chars;
    if (!PyUnicode_CheckExact(value))
        return 1;
    if (type == 'N') {
        PlainNumber number;
        if (!PyUnicode_IS_ASCII(value))
            return 1;
        chars = (const char *)PyUnicode_DATA(value);
        number = read_plain_number(chars, PyUnicode_GET_LENGTH(value));
        if (number.kind == NOT_PLAIN)
            return 1;
        Py_ssize_t needed = 2 + number.whole_length + 1 + number.fraction_length;
        if (*length + needed > MAX_ID_BYTES)
            return 1;
        char *out = id + *length;
        if (number.whole_length == 0 && number.kind == PLAIN_INTEGER) {
            *out++ = '0';
        } else {
            if (number.negative)
                *out++ = '-';
            if (number.whole_length == 0)
                *out++ = '0';
            memcpy(out, number.whole, number.whole_length);
            out += number.whole_length;
            if (number.kind == PLAIN_DECIMAL) {
                *out++ = '.';
                memcpy(out, number.fraction, number.fraction_length);
                out += number.fraction_length;
            }
        }
        *length = out - id;
        return 0;
    }
    if ((chars = PyUnicode_AsUTF8AndSize(value, &size)) == NULL) {
        PyErr_Clear(); /* a lone surrogate: Python decides */
        return 1;
    }
    for (Py_ssize_t i = 0; i < size; i++) {
        char c = chars[i];
        int escaped = type == 'S' && (c == '\\' || c == '|');
        if (*length + 1 + escaped > MAX_ID_BYTES)
            return 1;
        if (escaped)
            id[(*length)++] = '\\';
        id[(*length)++] = c;
    }
    return 0;
}

PyObject *readable_id(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    char id[MAX_ID_BYTES + 1];
    Py_ssize_t length = 0;
    if (nargs != 2 || !PyTuple_CheckExact(args[1])) {
        PyErr_SetString(PyExc_TypeError, "readable_id(keys, key_attributes: a tuple of (name, type))");
        return NULL;
    }
    PyObject *keys = args[0], *attributes = args[1];
    if (!PyDict_CheckExact(keys))
        Py_RETURN_NONE;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(attributes); i++) {
        PyObject *pair = PyTuple_GET_ITEM(attributes, i), *name, *type, *attribute, *value;
        if (!PyTuple_CheckExact(pair) || PyTuple_GET_SIZE(pair) != 2)
            Py_RETURN_NONE;
        name = PyTuple_GET_ITEM(pair, 0);
        type = PyTuple_GET_ITEM(pair, 1);
        attribute = PyDict_GetItemWithError(keys, name);
        if (attribute == NULL && PyErr_Occurred())
            return NULL;
        if (attribute == NULL || !PyDict_CheckExact(attribute) || PyDict_GET_SIZE(attribute) != 1)
            Py_RETURN_NONE; /* missing or malformed: Python's error */
        value = PyDict_GetItemWithError(attribute, type);
        if (value == NULL && PyErr_Occurred())
            return NULL;
        char tag = value == NULL ? 0 : tag_of(type);
        if (tag != 'S' && tag != 'N' && tag != 'B')
            Py_RETURN_NONE;
        if (i > 0)
            id[length++] = '|'; /* the loop's bound checks leave room for it */
        if (length > MAX_ID_BYTES || write_part(id, &length, tag, value) != 0)
            Py_RETURN_NONE;
        if (length >= MAX_ID_BYTES)
            Py_RETURN_NONE;
    }
    if (length > 0 && id[0] == '#')
        Py_RETURN_NONE; /* escaped by Python: readable ids never start with "#" */
    return PyUnicode_DecodeUTF8(id, length, "strict");
}
