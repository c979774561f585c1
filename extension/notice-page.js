// The notice page: the school's text as plain text, addresses in it made
// into links (never interpreted as markup), and the 'I understand' button
// that sends the acknowledgement through the service worker.
const LINK = /\bhttps?:\/\/[^\s<>"]+/g;

function paragraph(line) {
  const p = document.createElement('p');
  let at = 0;
  for (const m of line.matchAll(LINK)) {
    // Closing punctuation after an address belongs to the sentence.
    const url = m[0].replace(/[.,;:!?)\]']+$/, '');
    p.append(line.slice(at, m.index));
    const a = document.createElement('a');
    a.href = url;
    a.textContent = url;
    a.target = '_blank';
    a.rel = 'noopener';
    p.append(a);
    at = m.index + url.length;
  }
  p.append(line.slice(at));
  return p;
}

function render(notice) {
  const text = document.getElementById('text');
  const button = document.getElementById('ack');
  if (!notice) {
    text.replaceChildren(paragraph('There is no notice to acknowledge now.'));
    button.disabled = true;
    return;
  }
  text.replaceChildren(...notice.text.split('\n').filter((l) => l.trim()).map(paragraph));
  const concern = document.getElementById('concern');
  concern.hidden = !/^https?:\/\//.test(notice.concern_url);
  if (!concern.hidden) document.getElementById('concern-link').href = notice.concern_url;
  button.disabled = false;
  button.onclick = () => {
    button.disabled = true;
    chrome.runtime.sendMessage({ kind: 'notice-ack', version: notice.version, sha256: notice.sha256 })
      .catch(() => { button.disabled = false; });
  };
  button.focus();
}

chrome.storage.session.get('notice_due').then(({ notice_due: due }) => render(due));
chrome.storage.onChanged.addListener((changes, area) => {
  if (area === 'session' && changes.notice_due) render(changes.notice_due.newValue);
});
