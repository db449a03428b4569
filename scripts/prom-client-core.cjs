// What the bundles take from prom-client (scripts/cores.mjs makes `import ... from
// 'prom-client'` of src/ resolve here): the same objects as its index.js exports, from the
// files it takes them from, without running what a cache does not use: the default metrics
// (collectDefaultMetrics, the origin's), whose CPU counter loads @opentelemetry/api, run only
// when first asked for; the Pushgateway, the Summary, the bucket helpers not at all.
// cores.mjs checks that every value src/ imports from prom-client is here, and is
// index.js's own.
'use strict'

module.exports = {
  Counter: require('prom-client/lib/counter'),
  Gauge: require('prom-client/lib/gauge'),
  Histogram: require('prom-client/lib/histogram'),
  Registry: require('prom-client/lib/registry'),
  AggregatorRegistry: require('prom-client/lib/cluster'),
  get collectDefaultMetrics() {
    return require('prom-client/lib/defaultMetrics')
  },
}
