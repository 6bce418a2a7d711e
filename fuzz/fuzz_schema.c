/*
 * Tool arguments against the catalog tools' input schemas, through
 * ngx_astralform_schema_check() (src/ngx_astralform_schema.c).
 *
 * Input: the first line names a catalog tool (an unknown name picks one by
 * hash), the rest are the arguments as JSON, parsed as the gateway parses
 * a request body (JSON_REJECT_DUPLICATES). A first line of "*" fuzzes the
 * schema too: "*\n%%\n<schema>\n%%\n<value>" (remote MCP servers publish
 * their own schemas).
 */


#include "fuzz_util.h"
#include "ngx_shim.h"
#include "ngx_astralform_schema.h"


#define FZ_ERR_SIZE  256        /* as ngx_astralform_call_resolved() */


static json_t     *fz_tools;    /* [name, input_schema] pairs */
static ngx_log_t   fz_log;


int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    size_t   i, j;
    json_t  *files, *def, *tool;

    fz_init();

    fz_log.log_level = NGX_LOG_DEBUG_ALL;
    fz_tools = json_array();

    files = fz_catalog_files();

    json_array_foreach(files, i, def) {
        json_array_foreach(json_object_get(def, "tools"), j, tool) {
            json_array_append_new(fz_tools,
                json_pack("[O,O]", json_object_get(tool, "name"),
                          json_object_get(tool, "input_schema")));
        }
    }

    json_decref(files);

    if (json_array_size(fz_tools) == 0) {
        fz_fail("the catalog has no tools");
    }

    return 0;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    u_char         *err;
    size_t          i, hash;
    json_t         *schema, *value, *pair;
    ngx_int_t       rc;
    ngx_str_t       line, rest;
    ngx_pool_t     *pool;
    fz_sections_t   sec;

    fz_split(data, size, &sec);
    fz_line(&sec.s[0], &line, &rest);

    schema = NULL;
    value = NULL;

    if (line.len == 1 && line.data[0] == '*') {
        if (sec.n < 3) {
            return 0;
        }

        schema = json_loadb((char *) sec.s[1].data, sec.s[1].len,
                            JSON_DECODE_ANY, NULL);
        value = json_loadb((char *) sec.s[2].data, sec.s[2].len,
                           JSON_DECODE_ANY, NULL);
        if (schema == NULL || value == NULL) {
            goto done;
        }

    } else {
        pair = NULL;

        json_array_foreach(fz_tools, i, pair) {
            if (json_string_length(json_array_get(pair, 0)) == line.len
                && memcmp(json_string_value(json_array_get(pair, 0)),
                          line.data, line.len) == 0)
            {
                break;
            }
        }

        if (i == json_array_size(fz_tools)) {
            for (hash = 0, i = 0; i < line.len; i++) {
                hash = hash * 31 + line.data[i];
            }
            pair = json_array_get(fz_tools, hash % json_array_size(fz_tools));
        }

        schema = json_incref(json_array_get(pair, 1));

        /* "arguments" of a tools/call body: an object, null or absent */
        value = rest.len
                ? json_loadb((char *) rest.data, rest.len,
                             JSON_REJECT_DUPLICATES|JSON_DECODE_ANY, NULL)
                : json_object();

        if (json_is_null(value)) {
            json_decref(value);
            value = json_object();
        }

        if (!json_is_object(value)) {
            goto done;
        }
    }

    pool = ngx_create_pool(1024, &fz_log);
    err = malloc(FZ_ERR_SIZE);
    if (pool == NULL || err == NULL) {
        fz_fail("out of memory");
    }

    rc = ngx_astralform_schema_check(pool, schema, value, err, FZ_ERR_SIZE);

    switch (rc) {

    case NGX_OK:
        break;

    case NGX_DECLINED:
        if (memchr(err, '\0', FZ_ERR_SIZE) == NULL) {
            fz_fail("schema_check: the error is not NUL-terminated");
        }

        if (strncmp((char *) err, "arguments", 9) != 0) {
            fz_fail("schema_check: the error \"%s\" does not name the "
                    "argument", err);
        }

        break;

    default:
        fz_fail("schema_check returned %ld", (long) rc);
    }

    if (fz_verbose) {
        fprintf(stderr, "rc=%ld err=%s\n", (long) rc,
                rc == NGX_OK ? "" : (char *) err);
    }

    free(err);
    ngx_destroy_pool(pool);

done:

    json_decref(schema);
    json_decref(value);

    return 0;
}
