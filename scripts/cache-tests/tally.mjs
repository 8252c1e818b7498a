// Tallies cache-tests results: `node tally.mjs name=results.json ...` prints, for each cache,
// the tests passed and failed by kind (required, optimal, check), then the required tests that
// the first cache fails and another passes. With `--floor N`, exits 1 when the first cache
// passes fewer than N tests or fails a required test that another passes.
import fs from 'fs'
import tests from 'http-cache-tests/tests/index.mjs'
import surrogate from 'http-cache-tests/tests/surrogate-control.mjs'

tests.push(surrogate)
const byId = new Map()
for (const suite of tests) {
  for (const t of suite.tests) {
    if (t.browser_only) continue
    byId.set(t.id, { ...t, suite: suite.id })
  }
}

function outcome (results, id, seen = new Set()) {
  const test = byId.get(id)
  const r = results[id]
  if (r === undefined) return 'untested'
  for (const dep of test.depends_on || []) {
    if (seen.has(dep)) continue
    seen.add(dep)
    if (byId.has(dep) && outcome(results, dep, seen) !== 'pass') return 'dependency'
  }
  if (Array.isArray(r) && r[0] === 'Setup') return 'setup'
  return r === true ? 'pass' : 'fail'
}

const args = process.argv.slice(2)
let floor = null
const caches = []
for (let i = 0; i < args.length; i++) {
  if (args[i] === '--floor') {
    floor = Number(args[++i])
  } else {
    const [name, file] = args[i].split('=')
    caches.push({ name, results: JSON.parse(fs.readFileSync(file, 'utf8')) })
  }
}

const kinds = ['required', 'optimal', 'check']
console.log(`| cache | passed | required passed | optimal passed | check: yes | failed (required / optimal / check no) | setup or dependency fail |`)
console.log(`|---|---:|---:|---:|---:|---:|---:|`)
const totals = {}
for (const c of caches) {
  const n = { pass: {}, fail: {}, other: 0, all: 0 }
  for (const k of kinds) { n.pass[k] = 0; n.fail[k] = 0 }
  for (const [id, t] of byId) {
    const k = t.kind || 'required'
    const o = outcome(c.results, id)
    if (o === 'pass') n.pass[k]++
    else if (o === 'fail') n.fail[k]++
    else n.other++
    n.all++
  }
  const passed = kinds.reduce((s, k) => s + n.pass[k], 0)
  totals[c.name] = passed
  const total = byId.size
  console.log(`| ${c.name} | ${passed} of ${total} | ${n.pass.required} | ${n.pass.optimal} | ${n.pass.check} | ${n.fail.required} / ${n.fail.optimal} / ${n.fail.check} | ${n.other} |`)
}

const [first, ...peers] = caches
const worse = []
for (const [id, t] of byId) {
  if ((t.kind || 'required') !== 'required') continue
  if (outcome(first.results, id) === 'pass') continue
  const by = peers.filter(p => outcome(p.results, id) === 'pass').map(p => p.name)
  if (by.length > 0) worse.push(`${id} (${first.name}: ${JSON.stringify(first.results[id])}; passed by ${by.join(', ')})`)
}
console.log('')
console.log(`Required tests ${first.name} fails and a peer passes: ${worse.length}`)
for (const w of worse) console.log(`  ${w}`)

if (floor !== null) {
  let ok = true
  if (totals[first.name] < floor) {
    console.log(`FAIL: ${first.name} passed ${totals[first.name]} tests, under the floor of ${floor}`)
    ok = false
  }
  for (const p of peers) {
    if (totals[first.name] <= totals[p.name]) {
      console.log(`FAIL: ${first.name} passed ${totals[first.name]}, not more than ${p.name}'s ${totals[p.name]}`)
      ok = false
    }
  }
  if (worse.length > 0) ok = false
  process.exit(ok ? 0 : 1)
}
