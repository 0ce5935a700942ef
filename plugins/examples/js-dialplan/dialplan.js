// An example tenant dial plan in JavaScript, for the `pbx:plugin/dialplan`
// world (see ../../../wit/pbx-plugin.wit). Build it with ./build.sh.
//
// - A dialled number that is one of the tenant's extensions rings it for 25 s.
// - A dialled name of one of the tenant's ring groups rings that group.
// - `9` followed by a number goes out the tenant's first trunk without the `9`
//   (403 when the tenant has no trunk).
// - Anything else is rejected with 404.
//
// WIT to JavaScript: records are objects with camelCase fields, enums are
// their WIT names as strings, variants are `{ tag, val }`, and an `option`
// result is the value or `undefined`.

import { extension, groupMembers, trunks } from 'pbx:plugin/directory@0.1.0';
import { write } from 'pbx:plugin/log@0.1.0';

const RING_SECS = 25;
const OUTSIDE_LINE = '9';

function reject(status, reason) {
  return { tag: 'reject', val: { status, reason } };
}

export function route(call) {
  const dialled = call.dialled.trim();

  const ext = extension(dialled);
  if (ext !== undefined) {
    return {
      tag: 'ring',
      val: {
        targets: [{ extension: ext.number, timeoutSecs: RING_SECS }],
        strategy: 'simultaneous',
      },
    };
  }

  if (groupMembers(dialled) !== undefined) {
    return { tag: 'ring-group', val: dialled };
  }

  const number = dialled.startsWith(OUTSIDE_LINE) ? dialled.slice(OUTSIDE_LINE.length) : '';
  if (/^\+?[0-9]+$/.test(number)) {
    const trunk = trunks()[0];
    if (trunk === undefined) {
      return reject(403, 'No Outbound Route');
    }
    return { tag: 'trunk', val: { trunk, number } };
  }

  write('info', `js-dialplan: no route for ${dialled}`);
  return reject(404, 'Not Found');
}
