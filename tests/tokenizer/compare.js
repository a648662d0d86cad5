#!/usr/bin/env node
/*
 * compare.js - line-by-line comparison for tests/tokenizer_diff.sh:
 *
 *   node tests/tokenizer/compare.js NAME CORPUS REFERENCE OURS OURS_PLAIN
 *
 * REFERENCE is reference.js --plain-decoded output for CORPUS; OURS and
 * OURS_PLAIN are `gptq tokenize TOKENIZER --jsonl CORPUS --decode`, without
 * and with --no-special.  A line is identical when ids, ids_plain and both
 * decoded texts all match.  Prints "NAME: N of M identical" and the first
 * mismatches; exit status 0 when every line matches, 1 otherwise.
 */
'use strict';

const fs = require('fs');

const SHOW = 5;

function jsonLines(file) {
    const text = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '';
    return text.split('\n').filter((l) => l.trim()).map((l, i) => {
        try {
            return JSON.parse(l);
        } catch (err) {
            return { error: `${file}:${i + 1}: not JSON: ${l.slice(0, 80)}` };
        }
    });
}

function firstIdDiff(a, b) {
    let i = 0;
    while (i < a.length && i < b.length && a[i] === b[i])
        i++;
    return i === a.length && i === b.length ? -1 : i;
}

function firstStrDiff(a, b) {
    const x = Buffer.from(a, 'utf8'), y = Buffer.from(b, 'utf8');
    let i = 0;
    while (i < x.length && i < y.length && x[i] === y[i])
        i++;
    return i === x.length && i === y.length ? -1 : i;
}

function excerptIds(ids, at) {
    const from = Math.max(0, at - 3);
    return `${from ? '[... ' : '['}${ids.slice(from, from + 8).join(', ')}${from + 8 < ids.length ? ' ...]' : ']'} (${ids.length} ids)`;
}

function excerptStr(s, at) {
    const buf = Buffer.from(s, 'utf8');
    let from = Math.max(0, at - 16);
    while (from > 0 && (buf[from] & 0xc0) === 0x80)
        from--;
    let end = Math.min(buf.length, from + 60);
    while (end < buf.length && end > from && (buf[end] & 0xc0) === 0x80)
        end--;
    return JSON.stringify(buf.subarray(from, end).toString('utf8')) + (from ? ` (from byte ${from})` : '');
}

function main() {
    const [name, corpus, refFile, oursFile, plainFile] = process.argv.slice(2);
    if (!plainFile) {
        process.stderr.write('usage: node compare.js NAME CORPUS REFERENCE OURS OURS_PLAIN\n');
        process.exit(2);
    }
    const texts = jsonLines(corpus).map((v) => (typeof v === 'string' ? v : v.text));
    const ref = jsonLines(refFile), ours = jsonLines(oursFile), plain = jsonLines(plainFile);
    let identical = 0, shown = 0;
    for (let i = 0; i < texts.length; i++) {
        const want = ref[i], got = ours[i], gotPlain = plain[i];
        const problems = [];
        if (!want || want.error) {
            problems.push(want ? want.error : 'no reference line');
        } else {
            if (!got || got.error) {
                problems.push(got ? got.error : 'no output line from gptq tokenize');
            } else {
                const d = firstIdDiff(got.ids, want.ids);
                if (d >= 0)
                    problems.push(`ids differ at id ${d}: ours ${excerptIds(got.ids, d)} vs theirs ${excerptIds(want.ids, d)}`);
                const s = firstStrDiff(got.decoded, want.decoded);
                if (s >= 0)
                    problems.push(`decoded differ at byte ${s}: ours ${excerptStr(got.decoded, s)} vs theirs ${excerptStr(want.decoded, s)}`);
            }
            if (!gotPlain || gotPlain.error) {
                problems.push(gotPlain ? gotPlain.error : 'no output line from gptq tokenize --no-special');
            } else {
                const d = firstIdDiff(gotPlain.ids, want.ids_plain);
                if (d >= 0)
                    problems.push(`ids_plain differ at id ${d}: ours ${excerptIds(gotPlain.ids, d)} vs theirs ${excerptIds(want.ids_plain, d)}`);
                const s = firstStrDiff(gotPlain.decoded, want.decoded_plain);
                if (s >= 0)
                    problems.push(`decoded_plain differ at byte ${s}: ours ${excerptStr(gotPlain.decoded, s)} vs theirs ${excerptStr(want.decoded_plain, s)}`);
            }
        }
        if (!problems.length) {
            identical++;
            continue;
        }
        if (shown++ < SHOW) {
            console.log(`  ${name}: line ${i + 1} ${JSON.stringify(texts[i]).slice(0, 80)}`);
            for (const p of problems)
                console.log(`    ${p}`);
        }
    }
    if (ours.length > texts.length || plain.length > texts.length)
        console.log(`  ${name}: gptq tokenize printed more lines than the corpus has`);
    console.log(`  ${name}: ${identical} of ${texts.length} identical`);
    process.exit(identical === texts.length && ours.length === texts.length && plain.length === texts.length ? 0 : 1);
}

main();
