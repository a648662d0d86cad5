// check.mjs - the deployment files (Dockerfile, deploy/k8s/*, deploy/compose.yaml,
// deploy/gptqd.service) checked against each other and against the real
// daemon, on a machine with neither Docker nor Kubernetes.  Run by
// tests/deploy_check.sh, which installs the npm package `yaml` first.
//
// Static: every file parses; the Dockerfile is multi-stage on Debian
// bookworm, builds with deploy/install-deps.sh, runs as the non-root user it
// creates, has one VOLUME holding the database and data directory, EXPOSEs
// the port it listens on and a HEALTHCHECK on /healthz; its runtime stage's
// packages provide every shared library build/gptqd needs (dpkg and the
// packages' dependencies, as apt would install them).  The Deployment's
// probes hit /healthz and /readyz on the port gptqd listens on, it has
// resource requests and limits with the memory budget below the limit, its
// claim, Secret keys, labels, image and user match the PVC, the example
// Secret, the Service, kustomization.yaml and the Dockerfile.  Compose and the
// systemd unit likewise.  Every GPTQD_* variable any of them sets is one
// `gptqd --help` lists.
//
// Live: build/gptqd is started with each file's environment (paths moved
// into a temporary directory, the port onto a free one, the Secret's example
// values); the probes' paths answer 200, /v1 wants the token when one is set,
// the Dockerfile's and compose's health-check commands pass while gptqd runs
// and fail once it has stopped, and SIGTERM stops it cleanly.  The
// Backup section of deploy/README.md: its sqlite3 commands, as written, run
// against a live gptqd's database; each snapshot passes integrity_check with
// the live schema version and the job, and gptqd starts on the restored copy.
//
// Environment: YAML_MODULE (the yaml package's directory), GPTQD_BIN.
// Prints "[deploy] NAME ok" or "[deploy] NAME FAIL: why" per check.
import { spawn, spawnSync, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const require = createRequire(import.meta.url);
const YAML = require(process.env.YAML_MODULE);
const gptqd = process.env.GPTQD_BIN;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'deploy-check.'));

let failures = 0;
async function check(name, fn) {
  try {
    await fn();
    console.log(`[deploy] ${name} ok`);
  } catch (e) {
    failures++;
    console.log(`[deploy] ${name} FAIL: ${e.message}`);
  }
}
function assert(cond, msg) {
  if (!cond) throw new Error(msg);
}
const read = (p) => fs.readFileSync(path.join(root, p), 'utf8');

// ---- the files ----
function parseDockerfile(text) {
  const out = [];
  let cur = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line.startsWith('#') || (line === '' && cur === '')) continue;
    if (line.endsWith('\\')) {
      cur += line.slice(0, -1) + ' ';
      continue;
    }
    cur += line;
    if (cur.trim()) {
      const m = cur.trim().match(/^(\w+)\s+([\s\S]*)$/);
      assert(m, `Dockerfile: cannot read the instruction "${cur.slice(0, 60)}"`);
      out.push({ op: m[1].toUpperCase(), args: m[2].trim() });
    }
    cur = '';
  }
  const stages = [];
  for (const ins of out) {
    if (ins.op === 'FROM') stages.push({ from: ins.args, ins: [] });
    else {
      assert(stages.length, `Dockerfile: ${ins.op} before any FROM`);
      stages[stages.length - 1].ins.push(ins);
    }
  }
  return stages;
}
// ENV K=V K2="V 2" ... (the key=value form)
function parseEnv(args) {
  const env = {};
  const re = /(\w+)=("([^"]*)"|\S*)/g;
  let m;
  while ((m = re.exec(args))) env[m[1]] = m[3] !== undefined ? m[3] : m[2];
  return env;
}
function loadYaml(p) {
  const docs = YAML.parseAllDocuments(read(p));
  for (const d of docs) assert(!d.errors.length, `${p}: ${d.errors[0]?.message}`);
  return docs.map((d) => d.toJS());
}
// "12G", "16Gi", "16g" -> bytes
function bytes(s) {
  const m = String(s).match(/^(\d+(?:\.\d+)?)\s*([KMGT]?)(i?)[bB]?$/i);
  assert(m, `cannot read the size "${s}"`);
  return Number(m[1]) * 1024 ** ' KMGT'.indexOf(m[2].toUpperCase() || ' ');
}
// is path p dir itself or inside it
const under = (p, dir) => typeof p === 'string' && (p === dir || p.startsWith(dir.replace(/\/$/, '') + '/'));
const listenPort = (listen) => Number(String(listen).split(':').pop());

const known = new Set(execFileSync(gptqd, ['--help'], { encoding: 'utf8' }).match(/GPTQD_[A-Z_]+/g));
const knownHf = new Set(['HF_TOKEN', 'HF_ENDPOINT', 'HF_HOME', 'HF_HUB_CACHE', 'HF_HUB_OFFLINE', 'HF_TOKEN_PATH',
  'HF_HUB_ETAG_TIMEOUT', 'HF_HUB_DOWNLOAD_TIMEOUT', 'HF_HUB_DISABLE_SYMLINKS']);
function knownVars(where, names) {
  for (const n of names) {
    if (n.startsWith('GPTQD_')) assert(known.has(n), `${where} sets ${n}, which gptqd --help does not list`);
    else if (n.startsWith('HF_')) assert(knownHf.has(n), `${where} sets ${n}, which gptqd does not read`);
  }
}

// ---- running gptqd ----
function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
async function get(url, headers = {}) {
  try {
    const r = await fetch(url, { headers, signal: AbortSignal.timeout(5000) });
    await r.arrayBuffer();
    return r.status;
  } catch {
    return 0;
  }
}
// start(name, env): gptqd with exactly env (and PATH), its state under tmp
async function start(name, env) {
  const log = fs.openSync(path.join(tmp, `${name}.log`), 'w');
  const child = spawn(gptqd, [], { env: { PATH: process.env.PATH, ...env }, stdio: ['ignore', log, log] });
  let exited = null;
  child.on('exit', (code, sig) => (exited = { code, sig }));
  const base = `http://127.0.0.1:${listenPort(env.GPTQD_LISTEN)}`;
  for (let i = 0; i < 100 && !exited; i++) {
    if ((await get(`${base}/healthz`)) === 200) break;
    await sleep(100);
  }
  const tail = () => fs.readFileSync(path.join(tmp, `${name}.log`), 'utf8').split('\n').slice(-5).join(' | ');
  assert(!exited, `gptqd exited (${JSON.stringify(exited)}) with the ${name} environment: ${tail()}`);
  return {
    base,
    async stop() {
      child.kill('SIGTERM');
      for (let i = 0; i < 100 && !exited; i++) await sleep(100);
      if (!exited) child.kill('SIGKILL');
      assert(exited, `gptqd (${name}) did not stop within 10 s of SIGTERM`);
      assert(exited.code === 0, `gptqd (${name}) exited ${JSON.stringify(exited)} on SIGTERM: ${tail()}`);
    },
  };
}
// paths under the image's state directory move into tmp/NAME
function relocate(env, stateDir, name) {
  const out = {};
  const dir = path.join(tmp, name);
  fs.mkdirSync(dir, { recursive: true });
  for (const [k, v] of Object.entries(env)) {
    out[k] = under(v, stateDir) ? dir + v.slice(stateDir.length) : v;
  }
  return out;
}
const sh = (cmd, env) => spawnSync('/bin/sh', ['-c', cmd], { env: { PATH: process.env.PATH, ...env }, timeout: 15000 }).status;

// ---- Dockerfile ----
const stages = parseDockerfile(read('Dockerfile'));
const final = stages[stages.length - 1];
const finalOps = (op) => final.ins.filter((i) => i.op === op);
const dockerEnv = Object.assign({}, ...finalOps('ENV').map((i) => parseEnv(i.args)));
const dockerUser = (finalOps('USER').pop()?.args || '').split(':')[0];
const volume = (finalOps('VOLUME')[0]?.args || '').replace(/^\[?"?|"?\]?$/g, '');

await check('Dockerfile: multi-stage on bookworm, built with install-deps.sh', () => {
  assert(stages.length >= 2, `${stages.length} stage(s); a build and a runtime stage are expected`);
  for (const s of stages) assert(/^debian:bookworm(-slim)?\b/.test(s.from), `FROM ${s.from} is not Debian bookworm`);
  const build = stages.slice(0, -1).flatMap((s) => s.ins).filter((i) => i.op === 'RUN').map((i) => i.args).join('\n');
  assert(/deploy\/install-deps\.sh/.test(build), 'no build stage RUN uses deploy/install-deps.sh');
  assert(/make\b.*build\/gptqd/.test(build), 'no build stage RUN makes build/gptqd');
  const copies = finalOps('COPY').map((i) => i.args);
  assert(copies.some((c) => /--from=\S+.*build\/gptqd/.test(c)), 'the runtime stage does not copy build/gptqd from the build stage');
});
await check('Dockerfile: non-root user, one volume with the state, EXPOSE, HEALTHCHECK', () => {
  assert(dockerUser && dockerUser !== 'root' && dockerUser !== '0', `USER is "${dockerUser || '(none)'}"`);
  const run = finalOps('RUN').map((i) => i.args).join('\n');
  const uid = run.match(/useradd\b[^\n]*--uid\s+(\d+)/);
  assert(uid && uid[1] === dockerUser, `USER ${dockerUser} is not the uid the image's useradd creates (${uid?.[1]})`);
  assert(finalOps('VOLUME').length === 1, `${finalOps('VOLUME').length} VOLUME instructions; one is expected`);
  for (const k of ['GPTQD_DB', 'GPTQD_DATA_DIR']) {
    assert(under(dockerEnv[k], volume), `${k}=${dockerEnv[k]} is not inside the volume ${volume}`);
  }
  const expose = finalOps('EXPOSE').map((i) => Number(i.args.split('/')[0]));
  assert(expose.includes(listenPort(dockerEnv.GPTQD_LISTEN)), `EXPOSE ${expose} is not GPTQD_LISTEN's port (${dockerEnv.GPTQD_LISTEN})`);
  assert(/^0\.0\.0\.0:|^\[::\]:/.test(dockerEnv.GPTQD_LISTEN), `GPTQD_LISTEN=${dockerEnv.GPTQD_LISTEN} is not reachable from outside the container`);
  const hc = finalOps('HEALTHCHECK')[0]?.args || '';
  assert(/CMD .*\/healthz/.test(hc), 'no HEALTHCHECK on /healthz');
  knownVars('Dockerfile', Object.keys(dockerEnv));
});
await check('Dockerfile: the runtime packages provide every library gptqd links', () => {
  const install = finalOps('RUN').map((i) => i.args).find((a) => /apt-get install/.test(a));
  assert(install, 'the runtime stage installs no packages');
  const listed = install.split(/apt-get install/)[1].split('&&')[0].split(/\s+/).filter((w) => /^[a-z0-9][a-z0-9.+-]+$/.test(w));
  // what apt installs: the listed packages, the base image's required ones,
  // and everything they depend on (read from this machine's dpkg database)
  const status = execFileSync('dpkg-query', ['-W', '-f', '${Package}\t${Priority}\t${Essential}\t${Depends}, ${Pre-Depends}\n'], { encoding: 'utf8' });
  const deps = new Map();
  const base = [];
  for (const line of status.split('\n').filter(Boolean)) {
    const [pkg, prio, ess, dep] = line.split('\t');
    deps.set(pkg, dep.split(',').map((d) => d.split('|').map((a) => a.trim().split(/[\s:(]/)[0]).filter(Boolean)).filter((a) => a.length));
    if (prio === 'required' || ess === 'yes') base.push(pkg);
  }
  for (const p of listed) assert(deps.has(p), `the runtime package ${p} is not known to this machine's dpkg (misspelt?)`);
  const have = new Set();
  const pending = [...listed, ...base];
  while (pending.length) {
    const p = pending.pop();
    if (have.has(p)) continue;
    have.add(p);
    for (const alts of deps.get(p) || []) {
      const pick = alts.find((a) => deps.has(a));
      if (pick) pending.push(pick);
    }
  }
  const ldd = execFileSync('ldd', [gptqd], { encoding: 'utf8' });
  const missing = [];
  for (const m of ldd.matchAll(/=>\s+(\/\S+)/g)) {
    if (/\/lib(asan|ubsan|lsan|tsan)\.so/.test(m[1])) continue; // make asan's build only
    const real = fs.realpathSync(m[1]);
    let owner = null;
    for (const cand of [real, real.replace(/^\/usr/, ''), m[1]]) {
      const r = spawnSync('dpkg', ['-S', cand], { encoding: 'utf8' });
      if (r.status === 0) {
        owner = r.stdout.split(':')[0].split(',')[0].trim();
        break;
      }
    }
    assert(owner, `no package owns ${m[1]} (${real})`);
    if (!have.has(owner)) missing.push(`${path.basename(m[1])} (${owner})`);
  }
  assert(!missing.length, `the runtime stage lacks ${missing.join(', ')}`);
});
await check('Dockerfile: gptqd runs with the image environment; HEALTHCHECK passes, then fails once stopped', async () => {
  const port = await freePort();
  const env = relocate({ ...dockerEnv, GPTQD_LISTEN: dockerEnv.GPTQD_LISTEN.replace(/\d+$/, String(port)) }, volume, 'docker');
  const d = await start('docker', env);
  const hc = finalOps('HEALTHCHECK')[0].args.replace(/^[\s\S]*?\bCMD\s+/, '');
  try {
    assert(sh(hc, env) === 0, `the HEALTHCHECK command failed against a running gptqd: ${hc}`);
    assert((await get(`${d.base}/readyz`)) === 200, '/readyz is not 200');
  } finally {
    await d.stop();
  }
  assert(sh(hc, env) !== 0, 'the HEALTHCHECK command passes with gptqd stopped');
});

// ---- Kubernetes ----
const k8s = {};
await check('k8s: every manifest parses; kustomization names files that exist', () => {
  for (const f of fs.readdirSync(path.join(root, 'deploy/k8s')).filter((f) => /\.ya?ml$/.test(f))) {
    k8s[f] = loadYaml(`deploy/k8s/${f}`);
  }
  const kz = k8s['kustomization.yaml']?.[0];
  assert(kz, 'no kustomization.yaml');
  for (const r of kz.resources) assert(k8s[r], `kustomization.yaml lists ${r}, which is not in deploy/k8s`);
  assert(!kz.resources.includes('secret.example.yaml'), 'kustomization.yaml applies the example Secret');
});
const byKind = (kind) => Object.values(k8s).flat().filter((d) => d && d.kind === kind);
await check('k8s: Deployment probes, resources, volume, Secret, Service and image agree', () => {
  const [dep] = byKind('Deployment');
  assert(dep, 'no Deployment');
  assert(dep.spec.replicas === 1 && dep.spec.strategy?.type === 'Recreate', 'one replica replaced with Recreate is expected (one SQLite database)');
  const pod = dep.spec.template.spec;
  const [c] = pod.containers;
  const env = Object.fromEntries(c.env.map((e) => [e.name, e]));
  knownVars('deployment.yaml', Object.keys(env));
  const port = listenPort(env.GPTQD_LISTEN.value);
  const ports = Object.fromEntries(c.ports.map((p) => [p.name, p.containerPort]));
  assert(Object.values(ports).includes(port), `no containerPort is GPTQD_LISTEN's port ${port}`);
  const probe = (name, wantPath) => {
    const p = c[name]?.httpGet;
    assert(p, `no ${name}`);
    assert(p.path === wantPath, `${name} is on ${p.path}, not ${wantPath}`);
    assert((ports[p.port] ?? p.port) === port, `${name}'s port ${p.port} is not the port gptqd listens on (${port})`);
  };
  probe('livenessProbe', '/healthz');
  probe('readinessProbe', '/readyz');
  const res = c.resources || {};
  for (const k of ['cpu', 'memory']) assert(res.requests?.[k], `no resources.requests.${k}`);
  assert(res.limits?.memory, 'no resources.limits.memory');
  assert(bytes(env.GPTQD_MEMORY_BUDGET.value) < bytes(res.limits.memory),
    `GPTQD_MEMORY_BUDGET ${env.GPTQD_MEMORY_BUDGET.value} is not below the memory limit ${res.limits.memory}`);
  const mount = c.volumeMounts.find((m) => under(env.GPTQD_DATA_DIR.value, m.mountPath));
  assert(mount, `GPTQD_DATA_DIR ${env.GPTQD_DATA_DIR.value} is on no volume mount`);
  assert(under(env.GPTQD_DB.value, mount.mountPath), 'GPTQD_DB is not on the data volume');
  const vol = pod.volumes.find((v) => v.name === mount.name);
  const [pvc] = byKind('PersistentVolumeClaim');
  assert(vol?.persistentVolumeClaim?.claimName === pvc?.metadata.name, `the data volume's claim is not the PVC ${pvc?.metadata.name}`);
  const [secret] = byKind('Secret');
  for (const e of c.env.filter((e) => e.valueFrom?.secretKeyRef)) {
    const r = e.valueFrom.secretKeyRef;
    assert(r.name === secret.metadata.name, `${e.name} reads the Secret ${r.name}, not ${secret.metadata.name}`);
    assert(r.optional || r.key in (secret.stringData || {}), `${e.name} needs the key ${r.key}, which the example Secret lacks`);
  }
  assert(env.GPTQD_TOKENS?.valueFrom?.secretKeyRef && !env.GPTQD_TOKENS.valueFrom.secretKeyRef.optional, 'GPTQD_TOKENS is not a required Secret key');
  const sc = pod.securityContext || {};
  assert(sc.runAsNonRoot && String(sc.runAsUser) === dockerUser, `runAsUser ${sc.runAsUser} is not the image's user ${dockerUser}`);
  const [svc] = byKind('Service');
  for (const [k, v] of Object.entries(svc.spec.selector)) {
    assert(dep.spec.template.metadata.labels[k] === v, `the Service selects ${k}=${v}, which the pod lacks`);
  }
  for (const p of svc.spec.ports) assert(p.targetPort in ports || Object.values(ports).includes(p.targetPort), `the Service's targetPort ${p.targetPort} is no container port`);
  const kz = k8s['kustomization.yaml'][0];
  assert(kz.images.some((i) => i.name === c.image.split(':')[0]), `kustomization.yaml's images do not name the container image ${c.image}`);
});
await check('k8s: gptqd runs with the Deployment environment; probes answer 200, /v1 wants the token', async () => {
  const [dep] = byKind('Deployment');
  const [c] = dep.spec.template.spec.containers;
  const [secret] = byKind('Secret');
  const env = {};
  for (const e of c.env) {
    if ('value' in e) env[e.name] = String(e.value);
    else if (secret.stringData[e.valueFrom.secretKeyRef.key] !== undefined) env[e.name] = secret.stringData[e.valueFrom.secretKeyRef.key];
  }
  const port = await freePort();
  env.GPTQD_LISTEN = env.GPTQD_LISTEN.replace(/\d+$/, String(port));
  env.HOME = '/var/lib/gptqd';
  const d = await start('k8s', relocate(env, c.volumeMounts[0].mountPath, 'k8s'));
  try {
    for (const p of ['startupProbe', 'livenessProbe', 'readinessProbe'].filter((p) => c[p])) {
      const st = await get(`${d.base}${c[p].httpGet.path}`);
      assert(st === 200, `${p} ${c[p].httpGet.path} answered ${st}`);
    }
    const token = env.GPTQD_TOKENS.split(',')[0];
    assert((await get(`${d.base}/v1/jobs`)) === 401, '/v1/jobs without the token is not 401');
    assert((await get(`${d.base}/v1/jobs`, { Authorization: `Bearer ${token}` })) === 200, "/v1/jobs with the Secret's token is not 200");
  } finally {
    await d.stop();
  }
});

// ---- Compose ----
await check('compose: parses; builds this Dockerfile; volume, health check and memory agree; gptqd runs with it', async () => {
  const [doc] = loadYaml('deploy/compose.yaml');
  const svc = doc.services?.gptqd;
  assert(svc, 'no service gptqd');
  const ctx = path.resolve(root, 'deploy', svc.build.context);
  assert(fs.existsSync(path.join(ctx, svc.build.dockerfile)), `the build ${svc.build.context}/${svc.build.dockerfile} does not exist`);
  // ${X:-default} and ${X:?message} as compose interpolates them
  const given = { GPTQD_TOKENS: 'compose-token' };
  const interp = (v) => String(v).replace(/\$\{(\w+)(?::([-?])([^}]*))?\}/g, (_, k, op, arg) => {
    if (k in given) return given[k];
    assert(op !== '?', `compose requires ${k}`);
    return op === '-' ? arg : '';
  });
  const env = Object.fromEntries(Object.entries(svc.environment).map(([k, v]) => [k, interp(v)]));
  knownVars('compose.yaml', Object.keys(env));
  const mounts = svc.volumes.map((v) => v.split(':'));
  const data = mounts.find(([, p]) => under(env.GPTQD_DATA_DIR, p));
  assert(data && data[0] in (doc.volumes || {}), `GPTQD_DATA_DIR ${env.GPTQD_DATA_DIR} is not on a named volume`);
  assert(under(env.GPTQD_DB, data[1]), 'GPTQD_DB is not on the data volume');
  assert(bytes(env.GPTQD_MEMORY_BUDGET) < bytes(interp(svc.mem_limit)), `GPTQD_MEMORY_BUDGET is not below mem_limit`);
  const lport = listenPort(env.GPTQD_LISTEN);
  assert(svc.ports.some((p) => Number(String(p).split(':').pop()) === lport), `no published port maps to ${lport}`);
  const test = svc.healthcheck?.test;
  assert(Array.isArray(test) && test[0] === 'CMD' && test.some((a) => /\/healthz$/.test(a)), 'no healthcheck CMD on /healthz');
  const url = test.find((a) => /^http:/.test(a));
  assert(listenPort(new URL(url).host) === lport, `the health check's ${url} is not GPTQD_LISTEN's port ${lport}`);
  const port = await freePort();
  env.GPTQD_LISTEN = env.GPTQD_LISTEN.replace(/\d+$/, String(port));
  const d = await start('compose', relocate(env, data[1], 'compose'));
  const argv = test.slice(1).map((a) => a.replace(url, url.replace(`:${lport}/`, `:${port}/`)));
  const hc = () => spawnSync(argv[0], argv.slice(1), { timeout: 15000 }).status;
  try {
    assert(hc() === 0, `the healthcheck command failed against a running gptqd`);
    assert((await get(`${d.base}/v1/jobs`, { Authorization: 'Bearer compose-token' })) === 200, '/v1/jobs with GPTQD_TOKENS is not 200');
  } finally {
    await d.stop();
  }
  assert(hc() !== 0, 'the healthcheck command passes with gptqd stopped');
});

// ---- systemd ----
await check('systemd: the unit sets only known variables, its state directory holds the database', () => {
  const unit = read('deploy/gptqd.service');
  const env = {};
  for (const m of unit.matchAll(/^Environment=(.*)$/gm)) Object.assign(env, parseEnv(m[1]));
  knownVars('gptqd.service', Object.keys(env));
  const state = unit.match(/^StateDirectory=(\S+)/m)?.[1];
  assert(state, 'no StateDirectory=');
  for (const k of ['GPTQD_DB', 'GPTQD_DATA_DIR']) {
    assert(under(env[k], `/var/lib/${state}`), `${k}=${env[k]} is not under the state directory /var/lib/${state}`);
  }
  assert(/^NoNewPrivileges=yes/m.test(unit) && /^ProtectSystem=strict/m.test(unit), 'NoNewPrivileges=yes and ProtectSystem=strict are expected');
  assert(/^(User=|DynamicUser=yes)/m.test(unit), 'no dedicated user (User= or DynamicUser=yes)');
});

// ---- backup and restore, as deploy/README.md says ----
await check('backup: the README\'s sqlite3 commands snapshot a running gptqd; the restored copy starts with its jobs', async () => {
  const readme = read('deploy/README.md');
  const section = readme.split(/^## /m).find((x) => x.startsWith('Backup'));
  assert(section, 'deploy/README.md has no Backup section');
  const cmds = section.split('\n').filter((l) => /^    sqlite3 /.test(l)).map((l) => l.trim().replace(/\s+#.*$/, ''));
  assert(cmds.length >= 2, `the Backup section shows ${cmds.length} sqlite3 command(s); .backup and VACUUM INTO are expected`);
  assert(cmds.some((c) => c.includes('.backup')) && cmds.some((c) => c.includes('VACUUM INTO')), 'no .backup or no VACUUM INTO command');
  assert(spawnSync('sqlite3', ['-version']).status === 0, 'sqlite3 is not installed (deploy/install-deps.sh installs it)');
  const dir = path.join(tmp, 'bk');   // not "backup": the commands' /backup/ is replaced below
  fs.mkdirSync(path.join(dir, 'saved'), { recursive: true });
  const port = await freePort();
  const env = { GPTQD_LISTEN: `127.0.0.1:${port}`, GPTQD_DB: path.join(dir, 'live', 'gptqd.db'),
    GPTQD_DATA_DIR: path.join(dir, 'live'), HF_ENDPOINT: 'http://127.0.0.1:1', GPTQD_HUB_RETRIES: '0', HOME: dir };
  const d = await start('backup', env);
  let id;
  try {
    const r = await fetch(`${d.base}/v1/jobs`, { method: 'POST', headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ model: 'org/unreachable', calibration: { token_ids: [1, 2, 3] } }) });
    assert(r.status === 201, `POST /v1/jobs answered ${r.status}`);
    id = (await r.json()).id;
    for (let i = 0; i < 100; i++) {
      const j = await (await fetch(`${d.base}/v1/jobs/${id}`)).json();
      if (j.status === 'failed') break;
      await sleep(100);
    }
    // the commands as written, on this database, into dir/saved, while gptqd runs
    cmds.forEach((c, i) => {
      const cmd = c.replaceAll('/var/lib/gptqd/gptqd.db', env.GPTQD_DB).replace(/\/backup\/[^'"]*/, `${dir}/saved/${i}.db`);
      const r = spawnSync('/bin/sh', ['-c', cmd], { encoding: 'utf8', timeout: 30000 });
      assert(r.status === 0, `"${cmd}" failed: ${r.stderr}`);
    });
  } finally {
    await d.stop();
  }
  const live = execFileSync('sqlite3', [env.GPTQD_DB, 'PRAGMA user_version'], { encoding: 'utf8' }).trim();
  for (let i = 0; i < cmds.length; i++) {
    const f = `${dir}/saved/${i}.db`;
    const out = execFileSync('sqlite3', [f, 'PRAGMA integrity_check', 'PRAGMA user_version',
      `SELECT status FROM jobs WHERE id = '${id}'`], { encoding: 'utf8' }).trim().split('\n');
    assert(out[0] === 'ok', `${cmds[i]}: integrity_check says ${out[0]}`);
    assert(out[1] === live, `${cmds[i]}: schema ${out[1]}, the live database ${live}`);
    assert(out[2] === 'failed', `${cmds[i]}: the job is "${out[2]}" in the backup, not failed`);
  }
  // restore: the backup as gptqd.db of a fresh state directory
  const rdir = path.join(dir, 'restored');
  fs.mkdirSync(rdir);
  fs.copyFileSync(`${dir}/saved/${cmds.length - 1}.db`, path.join(rdir, 'gptqd.db'));
  const rport = await freePort();
  const r = await start('restored', { ...env, GPTQD_LISTEN: `127.0.0.1:${rport}`, GPTQD_DB: path.join(rdir, 'gptqd.db'), GPTQD_DATA_DIR: rdir });
  try {
    assert((await get(`${r.base}/readyz`)) === 200, 'the restored gptqd is not ready');
    const j = await (await fetch(`${r.base}/v1/jobs/${id}`)).json();
    assert(j.status === 'failed', `the restored gptqd says the job is ${j.status}`);
  } finally {
    await r.stop();
  }
});

fs.rmSync(tmp, { recursive: true, force: true });
process.exit(failures ? 1 : 0);
