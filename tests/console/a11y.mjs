// WCAG 2.2 AA checks with axe-core, run inside the page Chromium shows.
// `audit(page, label)` returns the violations as lines `label: rule (n nodes) selector`.
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';

const require = createRequire(import.meta.url);
const axeSource = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');
const tags = ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa'];

export async function audit(page, label) {
  await page.evaluate(axeSource);
  const found = await page.evaluate(async (runOnly) => {
    // eslint-disable-next-line no-undef
    const r = await axe.run(document, { runOnly: { type: 'tag', values: runOnly } });
    return r.violations.map((v) => `${v.id} (${v.nodes.length}) ${v.nodes.map((n) => n.target.join(' ')).slice(0, 3).join(', ')}`);
  }, tags);
  return found.map((v) => `${label}: ${v}`);
}
