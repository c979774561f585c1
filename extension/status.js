// The extension's own page: what a technician needs to see when the
// extension is not working (missing or wrong managed configuration, an
// unreachable collector, refused rules). Never shows typed text or captures.
const FACTS = [
  ['enrolled', 'Enrolled'], ['agent_id', 'Agent id'], ['station', 'Station'],
  ['user', 'User'], ['collector', 'Collector'], ['fingerprint', 'Certificate SHA-256'],
  ['rules_version', 'Rules version'], ['shadow_version', 'Candidate (shadow) rules'],
  ['exemptions', 'Exemptions in force'], ['notice_version', 'Monitoring notice version'],
  ['notice_acks_waiting', 'Notice acknowledgements waiting to send'],
  ['queued', 'Alerts waiting to send'], ['last_seq', 'Events numbered'],
  ['repeats_pending', 'Repeats to fold into alerts'], ['set_aside', 'Alerts refused'],
  ['dropped', 'Alerts dropped (queue full)'], ['subscribed', 'Receiving rules'],
  ['rekeyed_from', 'Re-keyed from (a copied profile)'],
];

function render(status) {
  const state = document.getElementById('state');
  state.replaceChildren();
  const problems = status?.problems ?? ['The extension has not started yet.'];
  for (const text of problems) {
    const div = document.createElement('div');
    div.className = 'problem';
    div.textContent = text;
    state.append(div);
  }
  if (!problems.length) {
    const div = document.createElement('div');
    div.className = status.enrolled ? 'ok' : 'problem';
    div.textContent = status.enrolled
      ? 'Working: enrolled, sending alerts and receiving rules.'
      : 'Not enrolled yet: waiting for the managed configuration or the collector.';
    state.append(div);
  }
  const facts = document.getElementById('facts');
  facts.replaceChildren();
  for (const [key, label] of FACTS) {
    const dt = document.createElement('dt');
    dt.textContent = label;
    const dd = document.createElement('dd');
    dd.textContent = String(status?.[key] ?? '');
    facts.append(dt, dd);
  }
}

chrome.storage.local.get('status').then(({ status }) => render(status));
chrome.storage.onChanged.addListener((changes, area) => {
  if (area === 'local' && changes.status) render(changes.status.newValue);
});
