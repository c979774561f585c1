// Typed text in the page, for the rules: what is typed into text inputs,
// text areas and content-editable elements, sent to the extension's service
// worker in small pieces and kept there only in memory. Nothing from password
// fields, and nothing at all from a page that shows a password field (a
// sign-in page).
(() => {
  const SEND_AFTER_MS = 500;
  const PAUSE_MS = 1500;
  const TEXT_INPUTS = new Set(['text', 'search', 'email', 'url', 'tel', '']);
  let text = '';
  let backspaces = 0;
  let sendTimer = 0;
  let pauseTimer = 0;

  function post(message) {
    try {
      chrome.runtime.sendMessage({ kind: 'typed', ...message }).catch(() => {});
    } catch {
      // The extension was reloaded: this page's script is orphaned.
    }
  }

  function isSecret(el) {
    const auto = (el.getAttribute?.('autocomplete') ?? '').toLowerCase();
    return (el instanceof HTMLInputElement && el.type === 'password')
      || /password|one-time-code|cc-/.test(auto);
  }

  function watched(el) {
    if (el instanceof HTMLInputElement) return TEXT_INPUTS.has(el.type) && !isSecret(el);
    if (el instanceof HTMLTextAreaElement) return !isSecret(el);
    return Boolean(el?.isContentEditable);
  }

  function signInPage() {
    return document.querySelector('input[type=password]') !== null;
  }

  function send() {
    sendTimer = 0;
    if (!text && !backspaces) return;
    post({ text, backspaces });
    text = '';
    backspaces = 0;
  }

  function pause() {
    pauseTimer = 0;
    send();
    post({ flush: true });
  }

  // The pupil leaves the tab or the page: what is pending goes now, since a
  // hidden page's timers may be held back.
  function leave() {
    if (!text && !backspaces && !pauseTimer) return;
    clearTimeout(sendTimer);
    clearTimeout(pauseTimer);
    pauseTimer = 0;
    pause();
  }
  document.addEventListener('visibilitychange', () => { if (document.hidden) leave(); });
  window.addEventListener('pagehide', leave);

  document.addEventListener('input', (event) => {
    const el = event.composedPath?.()[0] ?? event.target;
    if (!watched(el)) return;
    if (signInPage()) {
      text = '';
      backspaces = 0;
      post({ private: true });
      return;
    }
    switch (event.inputType) {
      case 'insertText':
      case 'insertReplacementText':
      case 'insertFromPaste':
      case 'insertFromDrop':
      case 'insertCompositionText':
        if (typeof event.data === 'string') {
          text += event.data;
        } else if (event.dataTransfer) {
          text += event.dataTransfer.getData('text/plain');
        }
        break;
      case 'insertLineBreak':
      case 'insertParagraph':
        text += '\n';
        break;
      case 'deleteContentBackward':
        if (text) text = text.slice(0, -1); else backspaces += 1;
        break;
      default:
        return;
    }
    if (!sendTimer) sendTimer = setTimeout(send, SEND_AFTER_MS);
    clearTimeout(pauseTimer);
    pauseTimer = setTimeout(pause, PAUSE_MS);
  }, true);
})();
