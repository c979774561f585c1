// The extension's cost while a pupil types, for tests/benches/extension.rs:
// 60 s of homework typed at 10 keys/s into a text area, once in a browser
// without the extension (the baseline) and once with it. Prints one line
// `CPU <json>`: the CPU seconds of all the browser's processes over each run,
// and of the extension's own process. Environment as extension.mjs, and
// SECONDS (default 60).
import http from 'node:http';
import fs from 'node:fs';
import { launch, waitFor } from './extension-browser.mjs';

const seconds = Number(process.env.SECONDS || 60);
const HOMEWORK = 'The water cycle describes how water moves between the oceans, the air and the land. '
  + 'Water evaporates from the sea when the sun warms it, rises as vapour and cools to form clouds. '
  + 'When the droplets in a cloud grow heavy they fall as rain, snow or hail. '
  + 'Rivers carry the water back to the sea and the cycle starts again. '
  + 'Plants also release water through their leaves, which is called transpiration. '
  + 'In my diagram I will label evaporation, condensation, precipitation and collection. '
  + 'Next lesson we compare rainfall in Cardiff and London using the data table. ';

const server = http.createServer((req, res) => {
  res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
  res.end('<!doctype html><title>Homework</title><textarea id="essay" rows="20" cols="80"></textarea>');
});
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const port = server.address().port;
const hosts = ['pages.test'];
const TICKS = 100;

// Every process below this one (the browser and its children): pid -> [ticks, cmdline].
function processes() {
  const parent = new Map();
  const info = new Map();
  for (const pid of fs.readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      parent.set(pid, fields[1]);
      const cmd = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      info.set(pid, [Number(fields[11]) + Number(fields[12]), cmd]);
    } catch { /* ended */ }
  }
  const ours = new Map();
  for (const [pid, value] of info) {
    for (let p = pid; p && p !== '1'; p = parent.get(p)) {
      if (p === String(process.pid)) { if (pid !== String(process.pid)) ours.set(pid, value); break; }
    }
  }
  return ours;
}

function cpuSince(before) {
  let total = 0;
  let extension = 0;
  for (const [pid, [ticks, cmd]] of processes()) {
    const used = (ticks - (before.get(pid)?.[0] ?? 0)) / TICKS;
    total += used;
    if (cmd.includes('--extension-process')) extension += used;
  }
  return { total, extension };
}

async function run(withExtension) {
  const profileDir = `${process.env.PROFILE_DIR}-${withExtension ? 'with' : 'without'}`;
  const { context, worker } = await launch({
    extensionDir: process.env.EXTENSION_DIR, profileDir, port, hosts, withExtension,
  });
  if (worker) await waitFor(worker, 'enrolment and rules', (s) => s.enrolled && s.rules_version >= 1);
  const page = await context.newPage();
  await page.goto(`http://pages.test:${port}/`);
  await page.click('#essay');
  await page.waitForTimeout(2000);
  let text = '';
  while (text.length < seconds * 10) text += HOMEWORK;
  text = text.slice(0, seconds * 10);
  const before = processes();
  const started = Date.now();
  await page.keyboard.type(text, { delay: 100 });
  const wall = (Date.now() - started) / 1000;
  const cpu = cpuSince(before);
  await context.close();
  return { wall_s: wall, cpu_s: cpu.total, extension_process_cpu_s: cpu.extension };
}

const without = await run(false);
const withExtension = await run(true);
server.close();
console.log(`CPU ${JSON.stringify({ without, with: withExtension })}`);
process.exit(0);
