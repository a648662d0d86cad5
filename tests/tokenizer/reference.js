#!/usr/bin/env node
/*
 * reference.js - what the Hugging Face tokenizers library (its official
 * Node binding, npm tokenizers@0.23.2) makes of every line of a corpus:
 *
 *   node tests/tokenizer/reference.js [--plain-decoded] CORPUS TOKENIZER_JSON OUT
 *
 * CORPUS is JSONL: each non-empty line a {"text": ...} object or a bare
 * JSON string.  OUT gets one JSON line per corpus line:
 *
 *   {"ids": [...],          encode(text, addSpecialTokens: true)
 *    "ids_plain": [...],    encode(text, addSpecialTokens: false)
 *    "decoded": "...",      decode(ids, skipSpecialTokens: false)
 *    "decoded_skip": "..."} decode(ids, skipSpecialTokens: true)
 *
 * --plain-decoded adds "decoded_plain": decode(ids_plain, false), which is
 * what `gptq tokenize --no-special --decode` prints (tokenizer_diff.sh).
 *
 * The binding is found as `require('tokenizers')` (set NODE_PATH to the
 * node_modules that tests/tokenizer/npm-setup.sh prints), or else in the
 * repository's build/npm/node_modules.
 */
'use strict';

const fs = require('fs');
const path = require('path');

function loadBinding() {
    try {
        return require('tokenizers');
    } catch (err) {
        const local = path.join(__dirname, '..', '..', 'build', 'npm', 'node_modules', 'tokenizers');
        try {
            return require(local);
        } catch (err2) {
            throw new Error('cannot load the tokenizers binding (run tests/tokenizer/npm-setup.sh and set ' +
                'NODE_PATH to the path it prints): ' + err.message);
        }
    }
}

/* The texts of a JSONL corpus, in order; blank lines are skipped. */
function readCorpus(file) {
    const texts = [];
    const lines = fs.readFileSync(file, 'utf8').split('\n');
    lines.forEach((line, i) => {
        if (!line.trim())
            return;
        const v = JSON.parse(line);
        const text = typeof v === 'string' ? v : v && v.text;
        if (typeof text !== 'string')
            throw new Error(`${file}:${i + 1}: want a JSON string or an object with a "text" string`);
        texts.push(text);
    });
    return texts;
}

async function main() {
    const args = process.argv.slice(2);
    const plainDecoded = args[0] === '--plain-decoded';
    if (plainDecoded)
        args.shift();
    if (args.length !== 3) {
        process.stderr.write('usage: node reference.js [--plain-decoded] CORPUS TOKENIZER_JSON OUT\n');
        process.exit(2);
    }
    const [corpus, tokJson, outPath] = args;
    const { Tokenizer } = loadBinding();
    const tok = Tokenizer.fromFile(tokJson);
    const texts = readCorpus(corpus);
    const out = [];
    for (const text of texts) {
        const ids = (await tok.encode(text, null, { addSpecialTokens: true })).getIds();
        const idsPlain = (await tok.encode(text, null, { addSpecialTokens: false })).getIds();
        const rec = {
            ids: Array.from(ids),
            ids_plain: Array.from(idsPlain),
            decoded: await tok.decode(Array.from(ids), false),
            decoded_skip: await tok.decode(Array.from(ids), true),
        };
        if (plainDecoded)
            rec.decoded_plain = await tok.decode(Array.from(idsPlain), false);
        out.push(JSON.stringify(rec));
    }
    fs.writeFileSync(outPath, out.length ? out.join('\n') + '\n' : '');
}

main().catch((err) => {
    process.stderr.write(`reference.js: ${err.message}\n`);
    process.exit(1);
});
