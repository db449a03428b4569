// What the bundles take from undici (scripts/cores.mjs makes `import ... from
// 'undici'` of src/ resolve here): the same objects as undici's index.js exports, from the
// files it takes them from, without the rest that index.js loads and runs (fetch,
// WebSocket, cookies, the cache stores, the mocks; cookies' brand check reads
// globalThis.Headers, which loads Node's own copy of undici too). cores.mjs checks that
// every value src/ imports from undici is here, and is index.js's own.
'use strict'

const Dispatcher = require('undici/lib/dispatcher/dispatcher')

// as index.js does: request(), stream(), pipeline()... on every Agent and Pool
Object.assign(Dispatcher.prototype, require('undici/lib/api'))

module.exports = {
  Agent: require('undici/lib/dispatcher/agent'),
  Pool: require('undici/lib/dispatcher/pool'),
  buildConnector: require('undici/lib/core/connect'),
  errors: require('undici/lib/core/errors'),
  getGlobalDispatcher: require('undici/lib/global').getGlobalDispatcher,
}
