// Small SVG helpers: escaping, elements, and a document wrapper. Every picture Graft draws
// is a self-contained SVG string that validates as XML.

export function esc(text: string | number): string {
  return String(text).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

type Attrs = Record<string, string | number | undefined>;

export function el(name: string, attrs: Attrs, children = ''): string {
  const a = Object.entries(attrs).filter(([, v]) => v !== undefined).map(([k, v]) => ` ${k}="${esc(v!)}"`).join('');
  return children === '' && name !== 'text' && name !== 'title' ? `<${name}${a}/>` : `<${name}${a}>${children}</${name}>`;
}

export function text(x: number, y: number, content: string, attrs: Attrs = {}): string {
  return el('text', { x, y, ...attrs }, esc(content));
}

export function svgDoc(width: number, height: number, body: string, title: string, extraDefs = ''): string {
  return `<svg xmlns="http://www.w3.org/2000/svg" data-generator="graft" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" role="img" aria-label="${esc(title)}" font-family="DejaVu Sans, Arial, sans-serif" font-size="12">`
    + `<title>${esc(title)}</title><defs>${extraDefs}</defs>${body}</svg>`;
}

export const fmtInt = (n: number) => n.toLocaleString('en-US');
