// Progress of large model downloads on stderr: redrawn on a terminal, a line per quarter
// elsewhere; nothing for small files or with --json.

const LARGE = 8 * 1024 * 1024;

export function downloadProgress(quiet: boolean, stream: NodeJS.WriteStream = process.stderr): ((url: string, received: number, total: number | undefined) => void) | undefined {
  if (quiet) return undefined;
  const shown = new Map<string, number>();
  return (url, received, total) => {
    if ((total ?? received) < LARGE) return;
    const mb = (n: number) => (n / 1024 / 1024).toFixed(1);
    const done = total ? received / total : 0;
    if (stream.isTTY) {
      stream.write(`\r\x1b[2Kdownloading ${url}: ${mb(received)}${total ? ` of ${mb(total)}` : ''} MB`);
      if (total && received >= total) stream.write('\n');
      return;
    }
    const step = total ? Math.floor(done * 4) : Math.floor(received / (4 * LARGE));
    if (step > (shown.get(url) ?? -1)) {
      shown.set(url, step);
      stream.write(`downloading ${url}: ${mb(received)}${total ? ` of ${mb(total)}` : ''} MB\n`);
    }
  };
}
