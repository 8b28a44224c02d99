#!/usr/bin/env node
// The real-photo fixture: five classes of photographs with transparent backgrounds from
// Debian's tuxpaint-stamps-default package (GPL-2; not copied into this repository), with the
// fixed train/test split of test/fixtures/photos/manifest.json. Downloads the package with
// `apt-get download` (no root needed), checks every file's sha256, and writes
//   <dest>/train/<class>/<name>.png  and  <dest>/test/<class>/<name>.png
// Usage: node scripts/photo-fixture.mjs [dest]   (default data/photos; prints the folder)
// Already there and complete: nothing is downloaded.
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const manifest = JSON.parse(readFileSync(join(repo, 'test/fixtures/photos/manifest.json'), 'utf8'));
const dest = resolve(process.argv[2] ?? join(repo, 'data/photos'));
const sha = (buf) => createHash('sha256').update(buf).digest('hex');
const name = (p) => p.split('/').slice(-2).join('_').replace(/[^A-Za-z0-9_.-]/g, '_');

function planned() {
  const out = [];
  for (const [cls, split] of Object.entries(manifest.classes)) {
    for (const part of ['train', 'test']) for (const p of split[part]) out.push({ src: p, to: join(dest, part, cls, name(p)), hash: manifest.sha256[p] });
  }
  return out;
}

const files = planned();
const complete = files.every((f) => existsSync(f.to) && sha(readFileSync(f.to)) === f.hash);
if (!complete) {
  const work = mkdtempSync(join(tmpdir(), 'graft-photos-'));
  try {
    execFileSync('apt-get', ['download', manifest.package], { cwd: work, stdio: ['ignore', 'ignore', 'inherit'] });
    const deb = readdirSync(work).find((f) => f.endsWith('.deb'));
    if (!deb) throw new Error(`apt-get download ${manifest.package} wrote no .deb`);
    execFileSync('dpkg-deb', ['-x', join(work, deb), join(work, 'x')]);
    for (const f of files) {
      const buf = readFileSync(join(work, 'x', manifest.root, f.src));
      if (sha(buf) !== f.hash) {
        throw new Error(`${f.src} in ${deb} has another sha256 than the manifest (package version ${manifest.version}); the fixture would not be the one the docs measured.`);
      }
      mkdirSync(dirname(f.to), { recursive: true });
      writeFileSync(f.to, buf);
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}
console.log(dest);
