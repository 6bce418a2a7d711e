// Checks real answers against docs/openapi.json: the row (path + method),
// the status among the row's documented answers, the content type, and the
// JSON body against the answer's schema (JSON Schema 2020-12, ajv).
//
//   import { openapiChecker } from './openapi-check.mjs';
//   const check = openapiChecker();            // throws if a schema is bad
//   check('GET', '/v1/health', 200, 'application/json', text) -> [problems]
//
//   node openapi-check.mjs ANSWERS.jsonl       // one answer a line:
//       {"method","path","status","type","body"}; exits 1 on any problem

import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Ajv2020 from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';

const here = path.dirname(fileURLToPath(import.meta.url));
export const openapiFile = path.join(here, '..', '..', 'docs',
                                     'openapi.json');

export function openapiChecker(file = openapiFile) {
    const doc = JSON.parse(fs.readFileSync(file, 'utf8'));
    if (!/^3\.1\./.test(doc.openapi)) throw new Error('not OpenAPI 3.1');
    const ajv = new Ajv2020({ strict: false, allErrors: true });
    addFormats(ajv);
    ajv.addSchema({ $id: 'oa', components: doc.components });

    const rows = Object.entries(doc.paths).map(([tpl, item]) => ({
        tpl, item,
        re: new RegExp('^' + tpl.replace(/[.]/g, '\\.')
                               .replace(/\{[^}]+\}/g, '[^/]+') + '$'),
        literal: !tpl.includes('{'),
    })).sort((a, b) => b.literal - a.literal);

    const compiled = new Map();
    function validator(schema) {
        const key = JSON.stringify(schema);
        if (!compiled.has(key)) {
            const s = JSON.parse(key.replace(/"#\/components\//g,
                                             '"oa#/components/'));
            compiled.set(key, ajv.compile(s));
        }
        return compiled.get(key);
    }

    // every schema compiles, every answer has a description
    for (const r of rows) {
        for (const [m, op] of Object.entries(r.item)) {
            if (m === 'parameters') continue;
            for (const [st, a] of Object.entries(op.responses || {})) {
                if (!a.description) throw new Error(`${m} ${r.tpl} ${st}: `
                                                    + 'no description');
                for (const c of Object.values(a.content || {}))
                    if (c.schema) validator(c.schema);
            }
            const rb = op.requestBody;
            for (const c of Object.values((rb && rb.content) || {}))
                validator(c.schema);
        }
    }

    // the codes of errors nginx answers itself (src/ngx_astralform_errors.c)
    const NGINX_OWN = new Set(['bad_request', 'unauthorized', 'forbidden',
        'not_found', 'method_not_allowed', 'request_timeout',
        'length_required', 'body_too_large', 'uri_too_long',
        'unsupported_media_type', 'too_many_requests', 'internal_error',
        'not_implemented', 'bad_gateway', 'unavailable', 'gateway_timeout',
        'http_error']);

    function check(method, url, status, type, body) {
        const p = url.split('?')[0];
        const row = rows.find((r) => r.re.test(p));
        if (!row) {
            // no row: the only right answers are 404 not_found and an
            // error nginx itself answered there (a deny, a limit) in the
            // module's envelope (no body for HEAD)
            let j = null;
            try { j = JSON.parse(body); } catch (e) { /* below */ }
            const nginxOwn = status >= 400 && (j ? NGINX_OWN.has(j.error)
                                                 : method === 'HEAD');
            return (status === 404 && j && j.error === 'not_found') || nginxOwn
                ? []
                : [`${method} ${p}: no such row in docs/openapi.json`];
        }
        const m = (method === 'HEAD' ? 'get' : method.toLowerCase());
        const op = row.item[m];
        if (!op) {
            return status === 405 ? []
                : [`${method} ${row.tpl}: method not described`];
        }
        const ans = op.responses[String(status)];
        if (!ans) return [`${method} ${row.tpl}: status ${status} not `
                          + 'described'];
        if (!ans.content || method === 'HEAD' || status === 304) return [];
        const t = (type || '').split(';')[0].trim();
        const c = ans.content[t];
        if (!c) return [`${method} ${row.tpl} ${status}: content type `
                        + `"${t}" not described`];
        if (t !== 'application/json' || !c.schema) return [];
        let json;
        try { json = JSON.parse(body); } catch (e) {
            return [`${method} ${row.tpl} ${status}: body is not JSON`];
        }
        const v = validator(c.schema);
        if (v(json)) return [];
        return [`${method} ${url} ${status}: ` + v.errors.map((e) =>
            `${e.instancePath || '/'} ${e.message}`).join('; ')];
    }

    check.doc = doc;
    check.rows = rows.map((r) => r.tpl);
    return check;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
    const check = openapiChecker();
    const file = process.argv[2];
    let n = 0, bad = 0;
    const seen = new Set();
    const lines = file && fs.existsSync(file)
        ? fs.readFileSync(file, 'utf8').split('\n').filter(Boolean) : [];
    for (const line of lines) {
        const a = JSON.parse(line);
        if (!a.path.startsWith('/v1/')) continue;
        n++;
        const problems = check(a.method, a.path, a.status, a.type, a.body);
        for (const p of problems) { console.log('not ok: ' + p); bad++; }
        seen.add(a.method + ' ' + a.path.split('?')[0]);
    }
    console.log(`${n} answers checked, ${bad} problems`);
    process.exit(bad ? 1 : 0);
}
