// The README's "Request bodies" section, generated from docs/openapi.json
// (the one source of truth for the API's fields).
//
//   node scripts/readme-api.mjs            print the section
//   node scripts/readme-api.mjs --write    replace it in README.md
//   node scripts/readme-api.mjs --check    exit 1 when README.md differs

import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
const doc = JSON.parse(fs.readFileSync(path.join(root, 'docs',
                                                 'openapi.json'), 'utf8'));
const BEGIN = '<!-- request bodies: generated from docs/openapi.json by '
            + 'scripts/readme-api.mjs -->';
const END = '<!-- end of request bodies -->';

function type(s) {
    if (s.oneOf) return s.oneOf.map(type).join(' or ');
    if (s.const !== undefined) return JSON.stringify(s.const);
    if (s.enum) return s.enum.map((v) => JSON.stringify(v)).join(' | ');
    const t = [].concat(s.type || 'any');
    return t.map((x) => x === 'array'
        ? 'array of ' + type(s.items || {}) : x).join(' or ');
}

function section() {
    const out = [BEGIN, ''];
    for (const [p, item] of Object.entries(doc.paths)) {
        for (const [m, op] of Object.entries(item)) {
            const rb = op.requestBody;
            if (!rb) continue;
            const [ctype, body] = Object.entries(rb.content)[0];
            let s = body.schema;
            if (s.$ref) s = doc.components.schemas[s.$ref.split('/').pop()];
            // a free-form body (JSON-RPC): described in its own section
            if (!s.properties) continue;
            const req = new Set(s.required || []);
            const form = ctype === 'application/json' ? '' : `, \`${ctype}\``;
            out.push(`\`${m.toUpperCase()} ${p}\` (${op.summary}${form}):`,
                     '');
            out.push('| field | type | |', '|---|---|---|');
            for (const [f, fs_] of Object.entries(s.properties)) {
                const notes = [req.has(f) ? 'required' : 'optional'];
                if (fs_.pattern) notes.push('pattern `' + fs_.pattern + '`');
                if (fs_.default !== undefined)
                    notes.push('default `' + JSON.stringify(fs_.default)
                               + '`');
                if (fs_.description) notes.push(fs_.description);
                out.push(`| \`${f}\` | ${type(fs_)} | `
                         + notes.join('; ').replace(/\|/g, '\\|') + ' |');
            }
            out.push('');
            if (s.additionalProperties === false)
                out.push('Any other field is refused (400 '
                         + '`invalid_request`, naming it).', '');
        }
    }
    out.push(END);
    return out.join('\n');
}

const readme = path.join(root, 'README.md');
const text = section();
if (process.argv[2] === '--write' || process.argv[2] === '--check') {
    const now = fs.readFileSync(readme, 'utf8');
    const a = now.indexOf(BEGIN), b = now.indexOf(END);
    if (a < 0 || b < 0) {
        console.error('README.md has no generated request bodies section');
        process.exit(1);
    }
    const next = now.slice(0, a) + text + now.slice(b + END.length);
    if (process.argv[2] === '--check') {
        if (next !== now) {
            console.error('README.md request bodies differ from '
                          + 'docs/openapi.json: run node '
                          + 'scripts/readme-api.mjs --write');
            process.exit(1);
        }
        console.log('README.md request bodies match docs/openapi.json');
    } else {
        fs.writeFileSync(readme, next);
    }
} else {
    console.log(text);
}
