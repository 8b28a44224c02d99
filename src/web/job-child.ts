// The process a graft serve project job trains in (jobs.ts forks it): it takes one job over
// IPC, sends its events and its end back, and stops after the current batch when asked. It
// exits when the server goes away.

import { initBackend } from 'graft';
import { runProjectJob, type ProjectJobInput } from './project-job.js';

let stop = false;
process.on('disconnect', () => process.exit(0));
process.on('message', (m: { type: 'start'; input: ProjectJobInput } | { type: 'stop' }) => {
  if (m.type === 'stop') { stop = true; return; }
  void (async () => {
    await initBackend();
    await runProjectJob(m.input, (msg) => process.send?.(msg), () => stop);
    process.disconnect();
  })();
});
