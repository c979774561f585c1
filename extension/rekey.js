// A copied browser profile (two browsers with one profile directory, or a
// restored backup) holds the same key and chain as the original: both
// would send as one agent. The collector refuses the second copy's event
// whose number the first already used (ALREADY_EXISTS with the event's seq),
// or asks for a re-key in a heartbeat reply when it sees the identity on two
// machines (ChromeOS, where the device id is known). The copy then makes a
// new key pair and exchanges its identity (Enrolment/Rekey, signed by both
// keys), and its queued events are moved to the new identity: numbered from
// 1, chained and signed again, so nothing it saw is lost.
import { call, toBase64, fromBase64 } from './engine.js';
import { unary } from './grpcweb.js';
import { identity, newKeyPair, sha256, sign } from './keys.js';
import * as store from './store.js';

/// Exchanges `enrolment`'s identity for a new one; returns the new
/// enrolment. Call it with the event chain held.
export async function rekey(enrolment, base, { reason, machineId, agentVersion }) {
  const old = await identity();
  const fresh = await newKeyPair();
  const timeMs = Date.now();
  const newKey = toBase64(fresh.publicRaw);
  const message = fromBase64(call('rekey_message', { agent_id: enrolment.agent_id, new_public_key: newKey, time_ms: timeMs }).bytes);
  // The re-key bytes carry their own domain prefix.
  const request = call('rekey_request', {
    agent_id: enrolment.agent_id,
    new_public_key: newKey,
    station: enrolment.station,
    machine_id: machineId,
    agent_version: agentVersion,
    time_ms: timeMs,
    reason,
    old_signature: toBase64(await sign('', message, old.privateKey)),
    new_signature: toBase64(await sign('', message, fresh.privateKey)),
  });
  const reply = call('enrol_response', {
    bytes: toBase64(await unary(base, 'tutela.v1.Enrolment/Rekey', fromBase64(request.bytes))),
  });
  const renewed = {
    ...enrolment,
    agent_id: reply.agent_id,
    group: reply.group,
    bundle_key: reply.bundle_public_key,
    rekeyed_from: enrolment.agent_id,
    rekey_reason: reason,
  };
  let prev = new Uint8Array(32);
  let seq = 0;
  const events = [];
  for (const e of await store.queued()) {
    seq += 1;
    const { body } = call('event_rebody', { body: e.body, agent_id: renewed.agent_id, seq, prev_hash: toBase64(prev) });
    const bytes = fromBase64(body);
    const signature = await sign('tutela-event-v2', bytes, fresh.privateKey);
    events.push({ ...e, seq, body, signature: toBase64(signature) });
    prev = await sha256(bytes);
  }
  await store.rekeyed(fresh, renewed, events, { seq, prev_hash: toBase64(prev) });
  return renewed;
}
