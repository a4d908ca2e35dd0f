// The Kubernetes schemas that kubernetes-models validates with accept unknown fields (as the
// API server does without --validate=strict), so a misspelt key (`readinesProbe`) would pass
// and be dropped. This walks an object along the models' type declarations (their .d.ts
// interfaces: every field of every API type, and the type of each) and names every key
// that the type it sits in does not have.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

const require = createRequire(import.meta.url);

type FieldType = { ref?: string; shape: 'one' | 'array' | 'map' };
interface Interface {
  fields: Map<string, FieldType>;
}

const cache = new Map<string, Interface | null>();

/** The .d.ts of an import specifier seen in `fromFile`. */
function resolveDts(spec: string, fromFile: string): string {
  if (spec.startsWith('.')) return join(dirname(fromFile), spec.replace(/\.js$/, '.d.ts'));
  const pkg = spec.split('/').slice(0, 2).join('/');
  const root = dirname(require.resolve(`${pkg}/package.json`));
  return join(root, spec.slice(pkg.length + 1) + '.d.ts');
}

/** The exported interface of a models .d.ts, or null when the file declares a plain type (a string, a quantity). */
function readInterface(file: string): Interface | null {
  if (cache.has(file)) return cache.get(file)!;
  const text = readFileSync(file, 'utf8').replace(/\/\*\*[\s\S]*?\*\//g, '');
  const imports = new Map<string, string>();
  for (const m of text.matchAll(/^import \{ (\w+) \} from "([^"]+)";$/gm)) imports.set(m[1], resolveDts(m[2], file));
  const body = /^export interface \w+(?: extends [\w, ]+)? \{\n([\s\S]*?)^\}/m.exec(text);
  if (!body) {
    cache.set(file, null);
    return null;
  }
  const fields = new Map<string, FieldType>();
  // Properties at the interface's own indentation; a map's value type is on the next line.
  for (const m of body[1].matchAll(/^ {4}"([^"]+)"\??: ([^;\n]*)(?:\n {8}\[key: string\]: ([^;]+);)?/gm)) {
    const [, name, type, mapValue] = m;
    const arr = /^Array<(\w+)>$/.exec(type);
    const t = mapValue ?? arr?.[1] ?? type;
    fields.set(name, { ref: imports.get(t), shape: mapValue !== undefined ? 'map' : arr ? 'array' : 'one' });
  }
  const iface = { fields };
  cache.set(file, iface);
  return iface;
}

/** The .d.ts of apiVersion/kind in kubernetes-models. */
export function modelDts(apiVersion: string, kind: string): string {
  const [group, version] = apiVersion.includes('/') ? apiVersion.split('/') : ['', apiVersion];
  return join(dirname(require.resolve('kubernetes-models/package.json')), group, version, `${kind}.d.ts`);
}

/** Paths (a.b[0].c) of every key of `value` that its type lacks, walking from the type in `file`. */
export function unknownFields(value: unknown, file: string, path = ''): string[] {
  const iface = readInterface(file);
  if (!iface || value === null || typeof value !== 'object' || Array.isArray(value)) return [];
  const out: string[] = [];
  for (const [key, v] of Object.entries(value)) {
    const at = path ? `${path}.${key}` : key;
    const f = iface.fields.get(key);
    if (!f) {
      out.push(at);
      continue;
    }
    if (!f.ref) continue;
    if (f.shape === 'array' && Array.isArray(v)) v.forEach((x, i) => out.push(...unknownFields(x, f.ref!, `${at}[${i}]`)));
    else if (f.shape === 'map' && v && typeof v === 'object') for (const [k, x] of Object.entries(v)) out.push(...unknownFields(x, f.ref, `${at}.${k}`));
    else if (f.shape === 'one') out.push(...unknownFields(v, f.ref, at));
  }
  return out;
}
