// The only view shown while the daemon wants a token and none (or a wrong one) is set.

import { h } from '../lib/dom.js';

export function render(message, submit) {
  const input = h('input', { id: 'token', type: 'password', name: 'token', autocomplete: 'current-password', required: true, size: 40 });
  const msg = h('p', { class: 'error', role: 'alert' }, message || '');
  const form = h(
    'form',
    { class: 'login', 'aria-labelledby': 'login-title' },
    h('h1', { id: 'login-title', tabindex: '-1' }, 'Sign in'),
    h('p', { class: 'muted' }, 'This openclaw-trace daemon requires its access token (OCT_AUTH_TOKEN). It is kept in this tab only and sent as an Authorization header.'),
    h('label', { for: 'token' }, 'Token'),
    input,
    h('button', { type: 'submit' }, 'Sign in'),
    msg,
  );
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    msg.textContent = '';
    const err = await submit(input.value.trim());
    if (err) {
      msg.textContent = err;
      input.select();
    }
  });
  setTimeout(() => input.focus(), 0);
  return form;
}
