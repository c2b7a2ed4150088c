/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * bus-introspect.c: D-Bus introspection XML from an sd-bus vtable, without
 * a bus connection (`hugepaged --bus-introspect`, and through it the
 * interface listing of org.hugepaged1(5)). Follows the layout of sd-bus's
 * own Introspect replies. Pure: reads the vtable, writes to a FILE.
 */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "bus.h"

/* Length of the first complete type in signature s (0 if malformed). */
static size_t complete_type_len(const char *s)
{
        size_t n;

        switch (*s) {
        case 'a':
                n = complete_type_len(s + 1);
                return n ? n + 1 : 0;
        case '(':
        case '{': {
                char close = *s == '(' ? ')' : '}';
                size_t i = 1;
                while (s[i] && s[i] != close) {
                        n = complete_type_len(s + i);
                        if (!n)
                                return 0;
                        i += n;
                }
                return s[i] ? i + 1 : 0;
        }
        case '\0':
                return 0;
        default:
                return strchr("ybnqiuxtdhsogv", *s) ? 1 : 0;
        }
}

/* Print one <arg/> per complete type of sig, naming them from the NUL-separated names. */
static const char *print_args(FILE *f, const char *sig, const char *names, const char *direction)
{
        for (const char *p = sig ? sig : ""; *p;) {
                size_t n = complete_type_len(p);
                if (!n)
                        break;
                fprintf(f, "   <arg type=\"%.*s\"", (int)n, p);
                if (names && *names) {
                        fprintf(f, " name=\"%s\"", names);
                        names += strlen(names) + 1;
                }
                if (direction)
                        fprintf(f, " direction=\"%s\"", direction);
                fputs("/>\n", f);
                p += n;
        }
        return names;
}

static void print_flags(FILE *f, uint64_t flags, bool property)
{
        if (flags & SD_BUS_VTABLE_DEPRECATED)
                fputs("   <annotation name=\"org.freedesktop.DBus.Deprecated\" value=\"true\"/>\n", f);
        if (flags & SD_BUS_VTABLE_METHOD_NO_REPLY)
                fputs("   <annotation name=\"org.freedesktop.DBus.Method.NoReply\" value=\"true\"/>\n", f);
        if (!property)
                return;
        if (flags & SD_BUS_VTABLE_PROPERTY_CONST)
                fputs("   <annotation name=\"org.freedesktop.DBus.Property.EmitsChangedSignal\" value=\"const\"/>\n", f);
        else if (flags & SD_BUS_VTABLE_PROPERTY_EMITS_INVALIDATION)
                fputs("   <annotation name=\"org.freedesktop.DBus.Property.EmitsChangedSignal\" value=\"invalidates\"/>\n", f);
        else if (!(flags & SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE))
                fputs("   <annotation name=\"org.freedesktop.DBus.Property.EmitsChangedSignal\" value=\"false\"/>\n", f);
}

void bus_introspect_interface(FILE *f, const char *interface, const sd_bus_vtable *v)
{
        fprintf(f, " <interface name=\"%s\">\n", interface);
        for (; v->type != _SD_BUS_VTABLE_END; v++) {
                switch (v->type) {
                case _SD_BUS_VTABLE_METHOD: {
                        fprintf(f, "  <method name=\"%s\">\n", v->x.method.member);
                        const char *names = print_args(f, v->x.method.signature, v->x.method.names, "in");
                        print_args(f, v->x.method.result, names, "out");
                        print_flags(f, v->flags, false);
                        fputs("  </method>\n", f);
                        break;
                }
                case _SD_BUS_VTABLE_SIGNAL:
                        fprintf(f, "  <signal name=\"%s\">\n", v->x.signal.member);
                        print_args(f, v->x.signal.signature, v->x.signal.names, NULL);
                        print_flags(f, v->flags, false);
                        fputs("  </signal>\n", f);
                        break;
                case _SD_BUS_VTABLE_PROPERTY:
                case _SD_BUS_VTABLE_WRITABLE_PROPERTY:
                        fprintf(f, "  <property name=\"%s\" type=\"%s\" access=\"%s\">\n", v->x.property.member,
                                v->x.property.signature,
                                v->type == _SD_BUS_VTABLE_WRITABLE_PROPERTY ? "readwrite" : "read");
                        print_flags(f, v->flags, true);
                        fputs("  </property>\n", f);
                        break;
                default:
                        break;
                }
        }
        fputs(" </interface>\n", f);
}
