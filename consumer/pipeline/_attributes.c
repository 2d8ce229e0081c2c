/* The compiled converter of DynamoDB items to JSON values: consumer.pipeline.attributes's
 * item_to_json for the attribute values almost every item consists of, in C.
 *
 * It converts S, N and NS (plainly spelt), B (base64 text, as GetRecords' JSON has it), SS, BOOL,
 * NULL, M and L itself, with exactly the Python rules of consumer/pipeline/attributes.py. Everything
 * else (B as bytes, BS, a number spelt otherwise, and every malformed value) goes to the Python
 * functions given to configure(), so the rare cases and every error message have one
 * implementation only. tests/unit/pipeline/test_attributes_compiled.py
 * holds the two equal on random items, malformed ones included.
 */
#include "_attributes.h"

PyObject *attribute_fallback;     /* attributes.attribute_to_json: one attribute value */
PyObject *dumps_fallback;         /* attributes.dumps_json: JSON values to JSON text */
static PyObject *item_fallback;   /* attributes.python_item_to_json: a whole item (a non-dict) */
static PyObject *number_fallback; /* attributes.number_to_json: one N string */
static PyObject *decimal_type;    /* decimal.Decimal */

static PyObject *convert_item(PyObject *item);
static PyObject *convert_list(PyObject *elements);

PlainNumber read_plain_number(const char *chars, Py_ssize_t length)
{
    PlainNumber number = {NOT_PLAIN, 0, 0, NULL, 0, NULL, 0};
    Py_ssize_t at = (length > 0 && chars[0] == '-') ? 1 : 0;
    Py_ssize_t whole_start = at;
    number.negative = at;
    while (at < length && chars[at] >= '0' && chars[at] <= '9')
        at++;
    number.spelt_digits = at - whole_start;
    if (number.spelt_digits == 0)
        return number;
    Py_ssize_t significant = whole_start;
    while (significant < at && chars[significant] == '0')
        significant++;
    number.whole = chars + significant;
    number.whole_length = at - significant;
    if (at == length) {
        number.kind = number.spelt_digits <= MAX_DIGITS ? PLAIN_INTEGER : NOT_PLAIN;
        return number;
    }
    if (chars[at] != '.')
        return number;
    Py_ssize_t fraction_start = ++at, fraction_end = at; /* fraction_end: after the last non-zero digit */
    while (at < length && chars[at] >= '0' && chars[at] <= '9')
        if (chars[at++] != '0')
            fraction_end = at;
    Py_ssize_t fraction = at - fraction_start;
    if (at != length || fraction_end == fraction_start || number.spelt_digits + fraction > DOUBLE_SAFE_DIGITS)
        return number;
    if (number.whole_length == 0 && fraction >= 5 && strncmp(chars + fraction_start, "00000", 5) == 0)
        return number; /* below 1e-5: orjson would write the float with an exponent */
    number.kind = PLAIN_DECIMAL;
    number.fraction = chars + fraction_start;
    number.fraction_length = fraction_end - fraction_start;
    return number;
}

/* The policy's value of a number spelt plainly: an integer of up to 18 digits (an int), a decimal of
 * up to 15 digits from 1e-5 up (a float), as _plain_number reads them; or an integer of 19 to 38
 * digits (an int within a long, else a Decimal of those digits, as number_to_json gives). NULL with
 * no error set: any other spelling, for number_to_json. */
static PyObject *plain_number(PyObject *text)
{
    Py_ssize_t length;
    const char *chars;
    if (!PyUnicode_IS_ASCII(text) || (chars = PyUnicode_AsUTF8AndSize(text, &length)) == NULL) {
        PyErr_Clear();
        return NULL;
    }
    PlainNumber number = read_plain_number(chars, length);
    if (number.kind == PLAIN_INTEGER) {
        PyObject *integer = PyLong_FromString(chars, NULL, 10);
        int overflow;
        if (number.spelt_digits <= LONG_SAFE_DIGITS || integer == NULL
            || (PyLong_AsLongLongAndOverflow(integer, &overflow), overflow == 0))
            return integer;
        Py_DECREF(integer);
        return PyObject_CallOneArg(decimal_type, text);
    }
    if (number.kind != PLAIN_DECIMAL)
        return NULL;
    double value = PyOS_string_to_double(chars, NULL, NULL); /* as float(text): correctly rounded */
    return value == -1.0 && PyErr_Occurred() ? NULL : PyFloat_FromDouble(value);
}

static PyObject *convert_number(PyObject *text)
{
    PyObject *value = plain_number(text);
    if (value != NULL || PyErr_Occurred())
        return value;
    return PyObject_CallOneArg(number_fallback, text);
}

/* An SS of str members (sorted), an NS of plainly spelt members (their values, sorted by value,
 * which is their order as numbers), or a B of base64 text (itself); NULL with no error set for
 * anything else, which the Python converter takes. */
static PyObject *convert_string_set(PyObject *members)
{
    Py_ssize_t size = PyList_GET_SIZE(members);
    for (Py_ssize_t i = 0; i < size; i++)
        if (!PyUnicode_CheckExact(PyList_GET_ITEM(members, i)))
            return NULL;
    PyObject *sorted = PyList_GetSlice(members, 0, size);
    if (sorted != NULL && PyList_Sort(sorted) < 0)
        Py_CLEAR(sorted);
    return sorted;
}

static PyObject *convert_number_set(PyObject *members)
{
    Py_ssize_t size = PyList_GET_SIZE(members);
    PyObject *values = PyList_New(size);
    if (values == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < size; i++) {
        PyObject *member = PyList_GET_ITEM(members, i);
        PyObject *value = PyUnicode_CheckExact(member) ? plain_number(member) : NULL;
        if (value == NULL) {
            Py_DECREF(values);
            return NULL;
        }
        PyList_SET_ITEM(values, i, value);
    }
    if (PyList_Sort(values) < 0)
        Py_CLEAR(values);
    return values;
}

char tag_of(PyObject *tag)
{
    if (!PyUnicode_CheckExact(tag) || !PyUnicode_IS_ASCII(tag))
        return 0;
    const char *chars = (const char *)PyUnicode_DATA(tag);
    switch (PyUnicode_GET_LENGTH(tag)) {
    case 1:
        switch (chars[0]) {
        case 'S':
        case 'N':
        case 'M':
        case 'L':
        case 'B':
            return chars[0];
        default:
            return 0;
        }
    case 2:
        return memcmp(chars, "SS", 2) == 0 ? 's' : memcmp(chars, "NS", 2) == 0 ? 'n' : 0;
    case 4:
        return memcmp(chars, "BOOL", 4) == 0 ? 'b' : memcmp(chars, "NULL", 4) == 0 ? '0' : 0;
    default:
        return 0;
    }
}

/* A map's or a list's conversion, bounded by the interpreter's recursion limit */
static PyObject *convert_nested(PyObject *(*convert)(PyObject *), PyObject *value)
{
    if (Py_EnterRecursiveCall(" while converting a nested DynamoDB map or list"))
        return NULL;
    PyObject *converted = convert(value);
    Py_LeaveRecursiveCall();
    return converted;
}

static PyObject *convert_attribute(PyObject *attribute)
{
    PyObject *tag, *value, *converted;
    Py_ssize_t position = 0;
    if (!PyDict_CheckExact(attribute) || PyDict_GET_SIZE(attribute) != 1)
        return PyObject_CallOneArg(attribute_fallback, attribute);
    PyDict_Next(attribute, &position, &tag, &value);
    switch (tag_of(tag)) {
    case 'S':
        if (PyUnicode_CheckExact(value))
            return Py_NewRef(value);
        break;
    case 'N':
        if (PyUnicode_CheckExact(value))
            return convert_number(value);
        break;
    case 'M':
        if (PyDict_CheckExact(value))
            return convert_nested(convert_item, value);
        break;
    case 'L':
        if (PyList_CheckExact(value))
            return convert_nested(convert_list, value);
        break;
    case 'B':
        if (PyUnicode_CheckExact(value))
            return Py_NewRef(value);
        break;
    case 's':
    case 'n':
        if (PyList_CheckExact(value)) {
            converted = tag_of(tag) == 's' ? convert_string_set(value) : convert_number_set(value);
            if (converted != NULL || PyErr_Occurred())
                return converted;
        }
        break;
    case 'b':
        if (PyBool_Check(value))
            return Py_NewRef(value);
        break;
    case '0':
        if (PyBool_Check(value))
            Py_RETURN_NONE;
        break;
    }
    return PyObject_CallOneArg(attribute_fallback, attribute);
}

static PyObject *convert_list(PyObject *elements)
{
    Py_ssize_t size = PyList_GET_SIZE(elements);
    PyObject *converted = PyList_New(size);
    if (converted == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < size; i++) {
        /* the list can change under a fallback's Python code: re-check the bound */
        if (i >= PyList_GET_SIZE(elements)) {
            Py_DECREF(converted);
            PyErr_SetString(PyExc_RuntimeError, "a DynamoDB list changed while it was converted");
            return NULL;
        }
        PyObject *element = PyList_GET_ITEM(elements, i);
        Py_INCREF(element);
        PyObject *value = convert_attribute(element);
        Py_DECREF(element);
        if (value == NULL) {
            Py_DECREF(converted);
            return NULL;
        }
        PyList_SET_ITEM(converted, i, value);
    }
    return converted;
}

/* A dict sized for ``size`` items: CPython's presized constructor is private API, used only on the
   versions known to export it; elsewhere the dict grows as it fills (same result, a little slower). */
static PyObject *new_dict(Py_ssize_t size)
{
#if PY_VERSION_HEX < 0x030D0000
    return _PyDict_NewPresized(size);
#else
    (void)size;
    return PyDict_New();
#endif
}

static PyObject *convert_item(PyObject *item)
{
    PyObject *name, *attribute;
    Py_ssize_t position = 0;
    if (!PyDict_CheckExact(item))
        return PyObject_CallOneArg(item_fallback, item);
    PyObject *document = new_dict(PyDict_GET_SIZE(item));
    if (document == NULL)
        return NULL;
    Py_ssize_t size = PyDict_GET_SIZE(item);
    while (PyDict_Next(item, &position, &name, &attribute)) {
        Py_INCREF(name);
        Py_INCREF(attribute);
        PyObject *value = convert_attribute(attribute);
        int failed = value == NULL || PyDict_SetItem(document, name, value) < 0;
        Py_XDECREF(value);
        Py_DECREF(attribute);
        Py_DECREF(name);
        if (failed) {
            Py_DECREF(document);
            return NULL;
        }
        if (PyDict_GET_SIZE(item) != size) {
            Py_DECREF(document);
            PyErr_SetString(PyExc_RuntimeError, "a DynamoDB item changed while it was converted");
            return NULL;
        }
    }
    return document;
}

static PyObject *item_to_json(PyObject *module, PyObject *item)
{
    if (attribute_fallback == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "configure() the Python fallbacks first");
        return NULL;
    }
    return convert_item(item);
}

static PyObject *configure(PyObject *module, PyObject *args)
{
    PyObject *attribute, *number, *item, *decimal, *dumps;
    if (!PyArg_ParseTuple(args, "OOOOO:configure", &attribute, &number, &item, &decimal, &dumps))
        return NULL;
    Py_XSETREF(dumps_fallback, Py_NewRef(dumps));
    Py_XSETREF(decimal_type, Py_NewRef(decimal));
    Py_XSETREF(attribute_fallback, Py_NewRef(attribute));
    Py_XSETREF(number_fallback, Py_NewRef(number));
    Py_XSETREF(item_fallback, Py_NewRef(item));
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"item_to_json", item_to_json, METH_O, "A DynamoDB item (attribute name -> AttributeValue) as a JSON object."},
    {"configure", configure, METH_VARARGS,
     "configure(attribute_to_json, number_to_json, item_to_json, Decimal, dumps_json): the Python of the rare cases."},
    {"item_lines", (PyCFunction)(void (*)(void))item_lines, METH_FASTCALL,
     "item_lines(item, reserved, head, doc_id, version): the _bulk lines indexing the item as it is; None when the "
     "Python path must decide."},
    {"read_record", read_record, METH_O,
     "read_record(raw): StreamRecord's fields of a plain GetRecords record, as a dict; None when Python must decide."},
    {"register_image_text", register_image_text, METH_O,
     "register_image_text(type): the type of an image left as text, which read_record accepts."},
    {"cut_images", cut_images, METH_O,
     "cut_images(answer): (text, [(record, name, image), ...]), a GetRecords answer with each OldImage and "
     "NewImage cut out; None when the answer is to be parsed whole."},
    {"image_lines", (PyCFunction)(void (*)(void))image_lines, METH_FASTCALL,
     "image_lines(text, reserved, head, doc_id, version): item_lines of an image cut out of an answer, from its "
     "text; None when the Python path must decide."},
    {"readable_id", (PyCFunction)(void (*)(void))readable_id, METH_FASTCALL,
     "readable_id(keys, ((name, type), ...)): doc_ids's readable id of plain keys; None when Python must decide."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef definition = {
    PyModuleDef_HEAD_INIT, "_attributes", "The compiled converter of DynamoDB items to JSON values.", -1, methods,
};

PyMODINIT_FUNC PyInit__attributes(void)
{
    if (init_read_record() < 0)
        return NULL;
    return PyModule_Create(&definition);
}
