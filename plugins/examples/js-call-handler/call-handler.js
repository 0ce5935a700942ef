// An example call handler in JavaScript, for the `pbx:plugin/call-handler`
// world of version 0.2 (see ../../../wit/v0.2/pbx-plugin.wit). Build it with
// ./build.sh. It does what the Rust worked example does
// (../office-hours/src/lib.rs), so both guest languages prove the contract:
//
// - A call to one of the tenant's extensions rings it. Busy, no answer,
//   nobody registered or refused: the `sales` hunt group rings; still nobody:
//   the on-call mobile, out the tenant's first trunk. Then the call ends with
//   the outcome of that last attempt.
// - A call to any other number (the company's number) in business hours
//   (Monday to Friday, 09:00 to 17:00 in the tenant's time zone, not on one of
//   its holidays; storage keys `hours.open`, `hours.close` and
//   `hours.weekends` = `1` change that) rings the `sales` group, then the
//   mobile.
// - Out of hours it goes straight to the mobile, and the call record is
//   tagged `after-hours`.
//
// The mobile number is the tenant's storage key `forward.mobile`; without it
// (or without a trunk) the call ends after the group. The extension and the
// group ring for `ring.secs` seconds (storage; 20 when unset), the mobile for
// 30 s. The state carried between steps is the name of the attempt that rang
// (`extension`, `group`, `mobile`), as UTF-8 bytes.
//
// WIT to JavaScript: records are objects with camelCase fields, enums are
// their WIT names as strings, variants are `{ tag, val }`, an `option` is the
// value or `undefined`, and a `list<u8>` is a Uint8Array.

import { extension, groupMembers, trunks } from 'pbx:plugin/directory@0.1.0';
import { get } from 'pbx:plugin/storage@0.1.0';
import { holiday, now } from 'pbx:plugin/clock@0.2.0';

/** The hunt group that takes the company's calls. */
const GROUP = 'sales';
/** How long the extension and the group ring unless `ring.secs` says otherwise. */
const RING_SECS = 20;
/** How long the mobile rings. */
const MOBILE_SECS = 30;
/** How a dial attempt ended when the next one should ring. */
const NOBODY = new Set(['busy', 'no-answer', 'unavailable', 'rejected']);

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true });

/** `bytes` as text, or `undefined` (none, or not UTF-8). */
function utf8(bytes) {
  if (bytes === undefined) {
    return undefined;
  }
  try {
    return decoder.decode(bytes);
  } catch {
    return undefined;
  }
}

/** The value under `key` as text, or `undefined` (missing or not UTF-8). */
function text(key) {
  return utf8(get(key));
}

/** The value under `key` as a decimal number, or `undefined`. */
function number(key) {
  const value = text(key)?.trim();
  return value !== undefined && /^\+?[0-9]+$/.test(value) ? Number(value) : undefined;
}

function ringSecs() {
  const secs = number('ring.secs');
  return secs !== undefined && secs >= 1 && secs <= 600 ? secs : RING_SECS;
}

/** An hour (0 to 24) from storage, or `fallback`. */
function hour(key, fallback) {
  const h = number(key);
  return h !== undefined && h <= 24 ? h : fallback;
}

function inBusinessHours() {
  const local = now();
  const weekend = local.weekday === 'saturday' || local.weekday === 'sunday';
  const openWeekends = number('hours.weekends') === 1;
  return (
    (openWeekends || !weekend) &&
    local.hour >= hour('hours.open', 9) &&
    local.hour < hour('hours.close', 17) &&
    holiday() === undefined
  );
}

function step(actions, state) {
  return { actions, state: encoder.encode(state) };
}

function finish() {
  return step([{ tag: 'finish' }], '');
}

function ringExtension(ext) {
  return step(
    [
      {
        tag: 'ring',
        val: {
          targets: [{ extension: ext, timeoutSecs: ringSecs() }],
          strategy: 'simultaneous',
        },
      },
    ],
    'extension',
  );
}

function ringGroup() {
  if (groupMembers(GROUP) === undefined) {
    return toMobile([]);
  }
  return step([{ tag: 'ring-group', val: { name: GROUP, timeoutSecs: ringSecs() } }], 'group');
}

/** The mobile, after `first` (instant actions such as tags); the call ends
 * when there is no mobile number or no trunk. */
function toMobile(first) {
  const mobile = text('forward.mobile')?.trim();
  const trunk = trunks()[0];
  if (!mobile || trunk === undefined) {
    return step([...first, { tag: 'finish' }], '');
  }
  return step(
    [...first, { tag: 'dial-out', val: { trunk, number: mobile, timeoutSecs: MOBILE_SECS } }],
    'mobile',
  );
}

export function handle(call, state, event) {
  if (event.tag === 'call-started') {
    if (extension(call.dialled) !== undefined) {
      return ringExtension(call.dialled);
    }
    if (inBusinessHours()) {
      return ringGroup();
    }
    return toMobile([{ tag: 'tag', val: 'after-hours' }]);
  }
  if (event.tag === 'dial-ended' && NOBODY.has(event.val.tag)) {
    switch (utf8(state)) {
      case 'extension':
        return ringGroup();
      case 'group':
        return toMobile([]);
    }
  }
  return finish();
}
