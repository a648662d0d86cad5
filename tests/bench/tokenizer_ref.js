// tokenizer_ref.js - the same-run reference for bench_tokenizer: the
// Hugging Face tokenizers library (npm `tokenizers`, the official Node
// binding of the Rust crate) encoding the same texts the same way.
//
//   node tokenizer_ref.js TOKENIZER_JSON TEXTS_JSONL
//
// TEXTS_JSONL has one {"text": ...} object a line.  Prints one JSON line:
//   {"version", "load_seconds", "texts", "bytes", "tokens", "hash",
//    "passes", "seconds", "batch_seconds"}
// seconds is the best pass of the sequential loop: one encode() awaited at
// a time, add_special_tokens true, so each text pays the binding's async
// hop as a caller encoding text by text would.  batch_seconds is the best
// pass of one encodeBatch() over all texts, which with RAYON_NUM_THREADS=1
// and TOKENIZERS_PARALLELISM=false (the caller sets them) is the library's
// single-threaded encode without that per-call overhead.  Only the encode
// loops are timed.  hash is FNV-1a over the ids of every text (each text's
// ids, then its count), the same function bench_tokenizer computes, so the
// two can check that they produced the same ids.
// The tokenizers module is found through NODE_PATH.
'use strict';
const fs = require('fs');

function fnv(h, v) {
    return Math.imul((h ^ v) >>> 0, 16777619) >>> 0;
}

async function pass(tok, texts, batch) {
    const t0 = process.hrtime.bigint();
    let encs;
    if (batch) {
        encs = await tok.encodeBatch(texts, { addSpecialTokens: true });
    } else {
        encs = [];
        for (const s of texts)
            encs.push(await tok.encode(s, null, { addSpecialTokens: true }));
    }
    const secs = Number(process.hrtime.bigint() - t0) * 1e-9;
    return { secs, encs };
}

async function main() {
    const [file, textsPath] = process.argv.slice(2);
    if (!file || !textsPath)
        throw new Error('usage: node tokenizer_ref.js TOKENIZER_JSON TEXTS_JSONL');
    const { Tokenizer } = require('tokenizers');
    const version = require('tokenizers/package.json').version;
    const texts = fs.readFileSync(textsPath, 'utf8').split('\n').filter((l) => l.trim() !== '')
        .map((l) => JSON.parse(l).text);
    let bytes = 0;
    for (const s of texts)
        bytes += Buffer.byteLength(s, 'utf8');

    let t0 = process.hrtime.bigint();
    const tok = Tokenizer.fromFile(file);
    const loadSeconds = Number(process.hrtime.bigint() - t0) * 1e-9;

    // Same stopping rule as the C side: at least 3 passes and 0.3 s, at
    // most 4 s once one pass is done.
    let best = Infinity, passes = 0, elapsed = 0, encs = null;
    while ((passes < 3 || elapsed < 0.3) && !(passes >= 1 && elapsed > 4)) {
        const r = await pass(tok, texts, false);
        best = Math.min(best, r.secs);
        elapsed += r.secs;
        passes++;
        encs = r.encs;
    }
    let bestBatch = Infinity, bpasses = 0;
    elapsed = 0;
    while ((bpasses < 3 || elapsed < 0.3) && !(bpasses >= 1 && elapsed > 4)) {
        const r = await pass(tok, texts, true);
        bestBatch = Math.min(bestBatch, r.secs);
        elapsed += r.secs;
        bpasses++;
    }

    let h = 2166136261, tokens = 0;
    for (const enc of encs) {
        const ids = enc.getIds();
        for (const id of ids)
            h = fnv(h, id);
        h = fnv(h, ids.length);
        tokens += ids.length;
    }
    process.stdout.write(JSON.stringify({
        version, load_seconds: loadSeconds, texts: texts.length, bytes, tokens, hash: h,
        passes, seconds: best, batch_seconds: bestBatch,
    }) + '\n');
}

main().catch((err) => {
    process.stderr.write(`tokenizer_ref: ${err && err.message ? err.message : err}\n`);
    process.exit(1);
});
