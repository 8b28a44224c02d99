#!/usr/bin/env node
// docs/api.md's reference part, generated from the types: every name each entry point
// (package.json "exports") exports, its kind, signature and first doc sentence. The part
// above the marker is written by hand. `node scripts/api-docs.mjs` rewrites the file;
// `--check` exits 1 when it is out of step (src/api.test.ts runs that).
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
export const MARKER = '<!-- Reference: generated from the types by `node scripts/api-docs.mjs`; edit above this line. -->';
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));

/** Entry points: import specifier and source file, from package.json's exports. */
export function entries() {
  return Object.entries(pkg.exports).filter(([k]) => k !== './package.json').map(([k, v]) => ({
    spec: k === '.' ? 'graft' : `graft/${k.slice(2)}`,
    source: join(root, v.import.replace('./dist/src/', 'src/').replace(/\.js$/, '.ts')),
  }));
}

const oneLine = (s) => s.replace(/\s+/g, ' ').trim();
const firstSentence = (s) => { const t = oneLine(s); const m = /^(.+?[.:])(\s|$)/.exec(t); return (m ? m[1] : t).replace(/\|/g, '\\|'); };

/** name -> { kind, signature, doc } for each entry point. */
export function exportsOf() {
  const list = entries();
  const program = ts.createProgram(list.map((e) => e.source), { module: ts.ModuleKind.NodeNext, moduleResolution: ts.ModuleResolutionKind.NodeNext, target: ts.ScriptTarget.ES2022, strict: true, skipLibCheck: true });
  const checker = program.getTypeChecker();
  return list.map((e) => {
    const sf = program.getSourceFile(e.source);
    const mod = checker.getSymbolAtLocation(sf);
    const names = checker.getExportsOfModule(mod).map((sym) => {
      const target = sym.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(sym) : sym;
      const f = target.flags;
      const kind = f & ts.SymbolFlags.Class ? 'class' : f & ts.SymbolFlags.Function ? 'function' : f & ts.SymbolFlags.Interface ? 'interface'
        : f & ts.SymbolFlags.TypeAlias ? 'type' : f & ts.SymbolFlags.Variable ? 'const' : 'other';
      const decl = target.declarations?.[0];
      let signature = '';
      if (kind === 'function' && decl) {
        const sig = checker.getSignaturesOfType(checker.getTypeOfSymbolAtLocation(target, decl), ts.SignatureKind.Call)[0];
        signature = sig ? oneLine(checker.signatureToString(sig, undefined, ts.TypeFormatFlags.NoTruncation)) : '';
      }
      const doc = firstSentence(ts.displayPartsToString(target.getDocumentationComment(checker)));
      return { name: sym.getName(), kind, signature, doc };
    }).sort((a, b) => a.name.localeCompare(b.name));
    return { ...e, names };
  });
}

export function reference() {
  const out = [MARKER, '', '## Reference', ''];
  for (const e of exportsOf()) {
    out.push(`### \`${e.spec}\``, '', `${e.names.length} names.`, '', '| name | kind | signature and description |', '| --- | --- | --- |');
    for (const n of e.names) {
      const sig = n.signature ? `\`${n.signature.replace(/\|/g, '\\|')}\`` : '';
      out.push(`| \`${n.name}\` | ${n.kind} | ${[sig, n.doc].filter(Boolean).join('<br>')} |`);
    }
    out.push('');
  }
  return out.join('\n');
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const file = join(root, 'docs', 'api.md');
  const text = readFileSync(file, 'utf8');
  const at = text.indexOf(MARKER);
  const hand = at < 0 ? text.trimEnd() + '\n\n' : text.slice(0, at);
  const next = hand + reference();
  if (process.argv.includes('--check')) {
    if (next !== text) { console.error('docs/api.md is out of step with the exports: run node scripts/api-docs.mjs'); process.exit(1); }
    console.log('docs/api.md is in step with the exports');
  } else {
    writeFileSync(file, next);
    console.log(`wrote ${file}`);
  }
}
