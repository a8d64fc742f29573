/*
 * The device-selector grammar shared by CLSA_DEVICE, clsa-bench and every other tool:
 *   ""            the first GPU, else the first device
 *   "N"           device N over all platforms' devices, in enumeration order
 *   "P:D"         on platform P, device D; each part an index or a case-insensitive substring
 *                 (P of the platform's name or vendor, D of the device's name); an empty part
 *                 means index 0
 *   "NAME"        the one device whose name contains NAME, case-insensitively
 * A name part that matches more than one candidate is an error that lists them.
 */
#include "internal.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct candidate {
    cl_device_id device;
    cl_uint platform_index, device_index; /* device_index: within its platform */
    char platform_name[256], device_name[256];
} candidate;

static bool contains_nocase(const char *hay, const char *needle)
{
    const size_t n = strlen(needle);
    for (; *hay; ++hay) {
        size_t i = 0;
        while (i < n && hay[i] && tolower((unsigned char)hay[i]) == tolower((unsigned char)needle[i]))
            ++i;
        if (i == n)
            return true;
    }
    return n == 0;
}

static bool all_digits(const char *s, size_t n)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; ++i)
        if (!isdigit((unsigned char)s[i]))
            return false;
    return true;
}

/* Every device of every platform, in enumeration order. */
static clsa_status list_candidates(candidate **out, cl_uint *count)
{
    *out = NULL, *count = 0;
    cl_uint nplat = 0;
    cl_int err = clGetPlatformIDs(0, NULL, &nplat);
    if (err == -1001 /* CL_PLATFORM_NOT_FOUND_KHR */ || (!err && nplat == 0))
        return CLSA_ERR_NO_DEVICE;
    if (err)
        return (clsa_status)err;
    cl_platform_id *plats = calloc(nplat, sizeof *plats);
    if (!plats)
        return CLSA_ERR_OUT_OF_HOST_MEMORY;
    err = clGetPlatformIDs(nplat, plats, NULL);
    candidate *all = NULL;
    cl_uint total = 0;
    for (cl_uint p = 0; !err && p < nplat; ++p) {
        cl_uint n = 0;
        cl_int e = clGetDeviceIDs(plats[p], CL_DEVICE_TYPE_ALL, 0, NULL, &n);
        if (e == CL_DEVICE_NOT_FOUND || (!e && n == 0))
            continue;
        cl_device_id *ids = e ? NULL : calloc(n, sizeof *ids);
        candidate *grown = ids ? realloc(all, sizeof *all * (total + n)) : NULL;
        if (e || !ids || !grown) {
            err = e ? e : CL_OUT_OF_HOST_MEMORY;
            free(ids);
            break;
        }
        all = grown;
        if ((err = clGetDeviceIDs(plats[p], CL_DEVICE_TYPE_ALL, n, ids, NULL)) != CL_SUCCESS) {
            free(ids);
            break;
        }
        char pname[128] = "", pvendor[120] = "";
        clGetPlatformInfo(plats[p], CL_PLATFORM_NAME, sizeof pname, pname, NULL);
        clGetPlatformInfo(plats[p], CL_PLATFORM_VENDOR, sizeof pvendor, pvendor, NULL);
        for (cl_uint d = 0; d < n; ++d) {
            candidate *c = &all[total + d];
            memset(c, 0, sizeof *c);
            c->device = ids[d], c->platform_index = p, c->device_index = d;
            snprintf(c->platform_name, sizeof c->platform_name, "%s (%s)", pname, pvendor);
            clGetDeviceInfo(ids[d], CL_DEVICE_NAME, sizeof c->device_name, c->device_name, NULL);
        }
        total += n;
        free(ids);
    }
    free(plats);
    if (err) {
        free(all);
        return err == CL_OUT_OF_HOST_MEMORY ? CLSA_ERR_OUT_OF_HOST_MEMORY : (clsa_status)err;
    }
    if (!total)
        return CLSA_ERR_NO_DEVICE;
    *out = all, *count = total;
    return CLSA_SUCCESS;
}

/* Appends "  [i] platform: device" lines for the candidates kept[]. */
static void list_into(char *why, size_t size, const candidate *all, cl_uint count, const bool *kept)
{
    for (cl_uint i = 0; i < count; ++i) {
        if (!kept[i])
            continue;
        const size_t used = strlen(why);
        if (used + 1 >= size)
            return;
        snprintf(why + used, size - used, "\n  %u = %u:%u  %s: %s", i, all[i].platform_index, all[i].device_index,
                 all[i].platform_name, all[i].device_name);
    }
}

static clsa_status choose(const char *sel, const candidate *all, cl_uint count, cl_uint *chosen, char *why, size_t size)
{
    bool *kept = calloc(count, sizeof *kept);
    if (!kept)
        return CLSA_ERR_OUT_OF_HOST_MEMORY;
    const char *colon = strchr(sel, ':');
    const size_t len = strlen(sel);
    cl_uint matches = 0;
    clsa_status st = CLSA_SUCCESS;
    if (!colon && all_digits(sel, len)) {
        const unsigned long index = strtoul(sel, NULL, 10);
        if (index < count)
            kept[index] = true, matches = 1;
    } else if (!colon) {
        for (cl_uint i = 0; i < count; ++i)
            matches += kept[i] = contains_nocase(all[i].device_name, sel);
    } else {
        /* Platform part first: an index, or a substring that must name one platform. */
        char platform[256] = "";
        snprintf(platform, sizeof platform, "%.*s", (int)(colon - sel), sel);
        const char *device = colon + 1;
        const bool p_index = all_digits(platform, strlen(platform)), d_index = all_digits(device, strlen(device));
        cl_uint chosen_platform = UINT32_MAX;
        bool several = false;
        for (cl_uint i = 0; i < count; ++i) {
            const bool p_ok = !*platform ? all[i].platform_index == 0
                              : p_index  ? all[i].platform_index == strtoul(platform, NULL, 10)
                                         : contains_nocase(all[i].platform_name, platform);
            kept[i] = p_ok;
            if (p_ok && chosen_platform == UINT32_MAX)
                chosen_platform = all[i].platform_index;
            else if (p_ok && all[i].platform_index != chosen_platform)
                several = true;
        }
        if (several) {
            snprintf(why, size, "device selector \"%s\": \"%s\" matches more than one platform:", sel, platform);
            list_into(why, size, all, count, kept);
            free(kept);
            return CLSA_ERR_INVALID_OPTION;
        }
        for (cl_uint i = 0; i < count; ++i) {
            const bool d_ok = all[i].platform_index == chosen_platform &&
                              (!*device ? all[i].device_index == 0
                               : d_index ? all[i].device_index == strtoul(device, NULL, 10)
                                         : contains_nocase(all[i].device_name, device));
            matches += kept[i] = d_ok;
        }
    }
    if (matches == 1) {
        for (cl_uint i = 0; i < count; ++i)
            if (kept[i])
                *chosen = i;
    } else {
        st = CLSA_ERR_INVALID_OPTION;
        snprintf(why, size, matches ? "device selector \"%s\" is ambiguous; it matches:"
                                    : "device selector \"%s\" matches no device; the devices are:", sel);
        if (!matches)
            for (cl_uint i = 0; i < count; ++i)
                kept[i] = true;
        list_into(why, size, all, count, kept);
    }
    free(kept);
    return st;
}

clsa_status clsa_select_device(const char *selector, cl_device_id *out, char *why, size_t why_size)
{
    char scratch[8];
    if (!why || why_size == 0)
        why = scratch, why_size = sizeof scratch;
    why[0] = '\0';
    if (!out) {
        snprintf(why, why_size, "out is NULL");
        return CLSA_ERR_NULL_ARGUMENT;
    }
    *out = NULL;
    candidate *all = NULL;
    cl_uint count = 0;
    clsa_status st = list_candidates(&all, &count);
    if (st == CLSA_ERR_NO_DEVICE)
        snprintf(why, why_size, "no OpenCL device found (no platform, or no device on any platform)");
    else if (st)
        snprintf(why, why_size, "%s: listing the OpenCL platforms and devices failed", clsa_status_string(st));
    if (st)
        return st;
    cl_uint chosen = 0;
    if (selector && *selector) {
        st = choose(selector, all, count, &chosen, why, why_size);
    } else {
        for (cl_uint i = count; i-- > 0;) { /* the first GPU, else device 0 */
            cl_device_type type = 0;
            if (clGetDeviceInfo(all[i].device, CL_DEVICE_TYPE, sizeof type, &type, NULL) == CL_SUCCESS &&
                (type & CL_DEVICE_TYPE_GPU))
                chosen = i;
        }
    }
    if (!st)
        *out = all[chosen].device;
    free(all);
    return st;
}
